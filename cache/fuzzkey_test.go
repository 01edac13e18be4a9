package cache

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// FuzzFillRange checks that any Range and If-Range header asks a fill
// for a part inside its body, or for all of it, or is refused as
// unsatisfiable only when it starts past the end.
func FuzzFillRange(f *testing.F) {
	for _, s := range []string{"bytes=0-99", "bytes=-5", "bytes=5-", "bytes=9-3", "bytes=0-0,5-6", "bytes=-0",
		"bytes= 1 - 2", "bytes=99999999999999999999-", "items=0-1", "bytes=--1", "bytes=-9223372036854775808"} {
		f.Add(s, "", int64(100))
		f.Add(s, `"v1"`, int64(0))
	}
	f.Fuzz(func(t *testing.T, spec, ifRange string, length int64) {
		length = max(length, -1)
		m := &meta{Status: http.StatusOK, Header: http.Header{"Etag": {`"v1"`}}}
		fl := &fill{meta: m, length: length}
		r := httptest.NewRequest("GET", "http://example.com/x", nil)
		r.Header.Set("Range", spec)
		if ifRange != "" {
			r.Header.Set("If-Range", ifRange)
		}
		p, ok := partOfFill(r, fl)
		if !ok || p.whole {
			return
		}
		if p.unsatisfiable {
			if length < 0 {
				t.Fatalf("%q refused for a body of unknown length", spec)
			}
			return
		}
		if length < 0 || p.start < 0 || p.start > p.end || p.end >= length {
			t.Fatalf("%q on %d bytes gave part %d-%d", spec, length, p.start, p.end)
		}
	})
}

// FuzzCacheKey checks the normalization behind cache keys: any Vary and
// request header values give sorted, distinct, canonical field names, one
// value per name, and a key that starts with the primary key and that
// optional whitespace around commas does not change.
func FuzzCacheKey(f *testing.F) {
	f.Add("Accept-Encoding, accept-encoding,Cookie", "gzip, br", "example.com:443", "/a?b=c", true)
	f.Add(",, ,X-Y", "a ,b,,c", "Example.COM:80", "/", false)
	f.Add("", "", "", "", false)
	f.Fuzz(func(t *testing.T, vary, value, host, target string, tls bool) {
		names := varyNames(http.Header{"Vary": {vary}})
		if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
			t.Fatalf("Vary %q gave names %q: not sorted and distinct", vary, names)
		}
		req := http.Header{}
		for _, n := range names {
			if n == "" || n != http.CanonicalHeaderKey(n) {
				t.Fatalf("Vary %q gave name %q: not canonical", vary, n)
			}
			req.Add(n, value)
		}
		values := varyValues(req, names)
		if len(values) != len(names) {
			t.Fatalf("%d values for %d names", len(values), len(names))
		}
		spaced := http.Header{}
		for _, n := range names {
			spaced.Add(n, strings.ReplaceAll(value, ",", " , "))
		}
		if !slices.Equal(varyValues(spaced, names), values) {
			t.Fatalf("whitespace around commas in %q changed the values: %q vs %q", value, varyValues(spaced, names), values)
		}

		scheme := "http"
		if tls {
			scheme = "https"
		}
		primary := normalHost(host, scheme) + target
		key := storageKey(primary, scheme, names, values)
		if !strings.HasPrefix(key, primary) {
			t.Fatalf("key %q does not start with its primary key %q", key, primary)
		}
		if key != storageKey(primary, scheme, names, values) {
			t.Fatal("key not deterministic")
		}
		ascii := !strings.ContainsFunc(host, func(r rune) bool { return r >= 0x80 })
		if ascii && normalHost(strings.ToUpper(host), scheme) != normalHost(host, scheme) {
			t.Fatalf("host %q: case changes the key", host)
		}
	})
}
