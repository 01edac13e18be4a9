//go:build linux

package cache_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	gosync "sync"
	"testing"

	"github.com/tern-edge/tern/cache"
)

// bodyOf is the origin's body for path: different for every path and at
// every offset, so a body sent from the wrong file or offset shows.
func bodyOf(path string, size int) []byte { return pattern(size, path[len(path)-1]) }

// memfdCount counts the process's open cache-body memfds.
func memfdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if dst, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(dst, "/memfd:tern-cache-body") {
			n++
		}
	}
	return n
}

// TestSendfileHits serves RAM-tier hits of 100 KB through a real server:
// over plain HTTP/1.1 they go out with sendfile from a sealed memfd, over
// TLS from memory, and every body is right, also while purges and the
// tier's budget evict bodies with sends in flight. No memfd outlives the
// bodies.
func TestSendfileHits(t *testing.T) {
	const size = 100 << 10
	// Caches of earlier tests in this process may still hold memfds.
	base := memfdCount(t)
	clk := newClock()
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", fmt.Sprintf(`"%d"`, n))
		if r.URL.Path == "/small" {
			w.Write(bodyOf(r.URL.Path, 1000))
			return
		}
		w.Write(bodyOf(r.URL.Path, size))
	})
	// Room for two bodies with their copies, not for four.
	c, _ := newCache(t, clk, cache.Config{MemoryBytes: 5 * size})
	h := c.Handler(o)
	plain := httptest.NewServer(h)
	defer plain.Close()
	secure := httptest.NewTLSServer(h)
	defer secure.Close()

	get := func(client *http.Client, base, path string) ([]byte, string) {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Error(err)
			return nil, ""
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
		}
		return b, resp.Header.Get("Cache-Status")
	}
	check := func(path string, b []byte) {
		t.Helper()
		want := bodyOf(path, size)
		if path == "/small" {
			want = bodyOf(path, 1000)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("GET %s: wrong body of %d bytes", path, len(b))
		}
	}

	pc := plain.Client()
	for i := range 3 {
		b, status := get(pc, plain.URL, "/a")
		check("/a", b)
		if i > 0 && !strings.HasPrefix(status, "tern; hit") {
			t.Fatalf("GET /a #%d: %q, want a hit", i, status)
		}
	}
	st := c.Stats()
	if st.SendfileHits != 2 || st.SendfileBytes != 2*size {
		t.Errorf("after two plain hits: %d hits, %d bytes sent with sendfile; want 2, %d", st.SendfileHits, st.SendfileBytes, 2*size)
	}
	if st.MemoryBytes != 2*size {
		t.Errorf("RAM tier holds %d bytes, want the body and its copy, %d", st.MemoryBytes, 2*size)
	}
	get(pc, plain.URL, "/small")
	b, _ := get(pc, plain.URL, "/small")
	check("/small", b)
	sc := secure.Client()
	for range 2 {
		b, _ = get(sc, secure.URL, "/a")
		check("/a", b)
	}
	if got := c.Stats().SendfileHits; got != 2 {
		t.Errorf("a small body and a TLS hit sent with sendfile: %d hits, want 2", got)
	}

	// Concurrent hits while the budget and purges evict bodies.
	paths := []string{"/a", "/b", "/c", "/d", "/small"}
	var wg gosync.WaitGroup
	for g := range 8 {
		client := pc
		base := plain.URL
		if g == 0 {
			client, base = sc, secure.URL
		}
		wg.Go(func() {
			for i := range 40 {
				p := paths[(g+i)%len(paths)]
				b, _ := get(client, base, p)
				check(p, b)
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			if _, err := c.Purge(cache.PurgeRequest{URLs: []string{plain.URL + paths[i%4]}}); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if c.Stats().SendfileHits < 10 {
		t.Errorf("only %d hits sent with sendfile under load", c.Stats().SendfileHits)
	}
	for range 2 {
		b, _ := get(pc, plain.URL, "/a")
		check("/a", b)
	}
	if n := memfdCount(t); n == base {
		t.Error("no memfd open while a body sent with sendfile is in the RAM tier")
	}
	for _, p := range paths {
		if _, err := c.Purge(cache.PurgeRequest{URLs: []string{plain.URL + p, secure.URL + p}}); err != nil {
			t.Fatal(err)
		}
	}
	// A handler may still hold a file description after its client has
	// read the whole body; Close waits for every handler to return.
	plain.Close()
	secure.Close()
	if n := memfdCount(t) - base; n != 0 {
		t.Errorf("%d memfds open after every body was purged", n)
	}
	if c.Stats().MemoryBytes != 0 {
		t.Errorf("RAM tier holds %d bytes after every body was purged", c.Stats().MemoryBytes)
	}
}
