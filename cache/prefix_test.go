package cache

import (
	"fmt"
	"strings"
	"testing"
)

// prefixIndex returns an index of n entries spread over hosts hosts.
func prefixIndex(n, hosts int) *index {
	x := newIndex(0, 0, 0)
	for i := range n {
		p := fmt.Sprintf("host%d.example.com/img/%d", i%hosts, i)
		x.add(&item{key: p, body: p, size: 1, meta: &meta{Primary: p}})
	}
	return x
}

// TestWithPrefix checks that a prefix selects exactly the entries whose
// primary key starts with it, whether it ends inside a host name, at its
// end, or in the path, also after removals.
func TestWithPrefix(t *testing.T) {
	x := prefixIndex(1000, 20)
	check := func(prefix string, some bool) {
		t.Helper()
		got := 0
		for _, it := range x.withPrefix(prefix) {
			if !strings.HasPrefix(it.meta.Primary, prefix) {
				t.Errorf("prefix %q selected %q", prefix, it.meta.Primary)
			}
			got++
		}
		want := 0
		for p := range x.byPrimary {
			if strings.HasPrefix(p, prefix) {
				want++
			}
		}
		if got != want || (want > 0) != some {
			t.Errorf("prefix %q selected %d entries, want %d", prefix, got, want)
		}
	}
	for _, tc := range []struct {
		prefix string
		some   bool
	}{
		{"host1", true},                    // host1 and host10..host19
		{"host1.example.com", true},        // one host, no path
		{"host1.example.com/", true},       // the same, with its root
		{"host1.example.com/img/1", true},  // part of one host's paths
		{"host10.example.com/img/1", true}, // a host whose name extends another's
		{"host", true},                     // every host
		{"host3.example.com/img/x", false}, // none of a host's paths
		{"nowhere.example.com/", false},    // no such host
	} {
		check(tc.prefix, tc.some)
	}
	// Removing every entry of a host removes its keys from the order.
	for p := range x.byPrimary {
		if strings.HasPrefix(p, "host3.") {
			for _, it := range x.byPrimary[p] {
				x.remove(it)
			}
		}
	}
	if x.primaries.Len() != len(x.byPrimary) {
		t.Errorf("%d ordered primary keys for %d primary keys", x.primaries.Len(), len(x.byPrimary))
	}
	check("host3.example.com/", false)
	check("host", true)
}

// BenchmarkPurgePrefixScan is the index's part of a purge by prefix,
// which holds the index's lock (every hit waits): one path of one host
// among a million entries, on 100 hosts and on one.
func BenchmarkPurgePrefixScan(b *testing.B) {
	for _, hosts := range []int{100, 1} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) {
			x := prefixIndex(1_000_000, hosts)
			prefix := fmt.Sprintf("host%d.example.com/img/12", hosts-1)
			for b.Loop() {
				if n := len(x.withPrefix(prefix)); n == 0 {
					b.Fatal("nothing selected")
				}
			}
		})
	}
}
