package cache

import (
	"net/http"
	"testing"
	"time"
)

func TestParseCacheControl(t *testing.T) {
	type d = directives
	cases := []struct {
		in   []string
		want func(*d)
	}{
		{[]string{"max-age=60"}, func(d *d) { d.maxAge = 60 }},
		{[]string{"Max-Age=60, S-MAXAGE=10"}, func(d *d) { d.maxAge, d.sMaxAge = 60, 10 }},
		{[]string{`max-age="30"`}, func(d *d) { d.maxAge = 30 }},
		{[]string{"max-age=60, max-age=10"}, func(d *d) { d.maxAge = 60 }}, // first wins
		{[]string{"max-age=abc"}, func(d *d) { d.maxAge = 0 }},             // invalid: stale
		{[]string{"max-age=-1"}, func(d *d) { d.maxAge = 0 }},
		{[]string{"max-age=99999999999999999999"}, func(d *d) { d.maxAge = maxDelta }},
		{[]string{"no-store", "no-cache"}, func(d *d) { d.noStore, d.noCache = true, true }},
		{[]string{`no-cache="Set-Cookie, X-Foo", private`}, func(d *d) { d.noCacheFields, d.private = "Set-Cookie, X-Foo", true }},
		{[]string{`private="Set-Cookie", no-cache`}, func(d *d) { d.privateFields, d.noCache = "Set-Cookie", true }},
		{[]string{"public,must-revalidate ,proxy-revalidate, immutable"}, func(d *d) {
			d.public, d.mustRevalidate, d.proxyRevalidate, d.immutable = true, true, true, true
		}},
		{[]string{"stale-while-revalidate=30, stale-if-error=600"}, func(d *d) { d.staleWhileRevalidate, d.staleIfErr = 30, 600 }},
		{[]string{"max-stale, min-fresh=5, only-if-cached"}, func(d *d) { d.maxStale, d.minFresh, d.onlyIfCached = maxDelta, 5, true }},
		{[]string{"max-stale=7"}, func(d *d) { d.maxStale = 7 }},
		{[]string{`unknown-ext="a,b", max-age=5`}, func(d *d) { d.maxAge = 5 }},
		{[]string{"max-age=5 junk, no-store"}, func(d *d) { d.maxAge, d.noStore = 0, true }}, // bad value: stale
		{[]string{`max-age="5" junk, no-store`}, func(d *d) { d.noStore = true }},            // malformed element skipped
		{[]string{`max-age="5`}, func(d *d) {}},                                              // unterminated quote
		{[]string{",,, ,max-age=1,"}, func(d *d) { d.maxAge = 1 }},
		{[]string{"no store"}, func(d *d) {}},
		{[]string{""}, func(d *d) {}},
	}
	for _, tc := range cases {
		want := directives{maxAge: -1, sMaxAge: -1, staleWhileRevalidate: -1, staleIfErr: -1, maxStale: -1, minFresh: -1}
		tc.want(&want)
		if got := parseCacheControl(http.Header{"Cache-Control": tc.in}); got != want {
			t.Errorf("parse %q:\n got %+v\nwant %+v", tc.in, got, want)
		}
	}
}

// FuzzParseCacheControl checks that any header value parses without
// panicking, deterministically, to delta values in range.
func FuzzParseCacheControl(f *testing.F) {
	for _, s := range []string{
		"max-age=60", `no-cache="a, b", private`, "s-maxage=1, stale-while-revalidate=2", `x="\"`,
		"max-age=99999999999999999999", ",,=,", `a="b\`, "max-stale", "must-revalidate\t,\timmutable",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h := http.Header{"Cache-Control": {s}}
		d := parseCacheControl(h)
		if d != parseCacheControl(h) {
			t.Fatal("not deterministic")
		}
		for _, v := range []int64{d.maxAge, d.sMaxAge, d.staleWhileRevalidate, d.staleIfErr, d.maxStale, d.minFresh} {
			if v < -1 || v > maxDelta {
				t.Fatalf("delta %d out of range for %q", v, s)
			}
		}
		// The meta computed from it stays consistent.
		var m meta
		now := testTime
		m.freshness(h, targetFields, now, now, DefaultHeuristicMax)
		if m.Lifetime < 0 || m.InitialAge < 0 {
			t.Fatalf("negative lifetime %s or age %s for %q", m.Lifetime, m.InitialAge, s)
		}
	})
}

var testTime = mustTime("Sun, 01 Mar 2026 12:00:00 GMT")

func mustTime(s string) time.Time {
	t, err := http.ParseTime(s)
	if err != nil {
		panic(err)
	}
	return t
}

// FuzzParseTargeted checks that any targeted field value parses without
// panicking, deterministically, to delta values in range, and that an
// accepted one is marked targeted.
func FuzzParseTargeted(f *testing.F) {
	for _, s := range []string{"max-age=60", "no-store, s-maxage=1", `max-age="1"`, "max-age=1.5", "a=(1 2), private", "max-age=-1", "max-age=5;;", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseTargeted([]string{s})
		d2, ok2 := parseTargeted([]string{s})
		if d != d2 || ok != ok2 {
			t.Fatalf("parse %q not deterministic", s)
		}
		if !ok {
			return
		}
		if !d.targeted {
			t.Fatalf("parse %q: accepted but not marked targeted", s)
		}
		for _, v := range []int64{d.maxAge, d.sMaxAge, d.staleWhileRevalidate, d.staleIfErr} {
			if v < -1 || v > maxDelta {
				t.Fatalf("parse %q: delta %d out of range", s, v)
			}
		}
	})
}
