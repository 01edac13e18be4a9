package cache_test

import (
	"net/http"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
)

// TestHitForPass sends an uncacheable URL's clients straight to the
// origin once one response showed it cannot be stored: two clients at
// once must both reach the origin, which answers only when it holds two
// requests. Collapsing them would hold the second behind the first until
// the origin gave up waiting. After PassTTL, or once the origin sends a
// storable response, the cache tries again.
func TestHitForPass(t *testing.T) {
	clk := newClock()
	var cacheable, pairing atomic.Bool
	var inFlight, most atomic.Int64
	both := make(chan struct{})
	var bothOnce gosync.Once
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); cur > m && !most.CompareAndSwap(m, cur); m = most.Load() {
		}
		if pairing.Load() {
			if cur >= 2 {
				bothOnce.Do(func() { close(both) })
			}
			select {
			case <-both:
			case <-time.After(5 * time.Second):
			}
		}
		if cacheable.Load() {
			w.Header().Set("Cache-Control", "max-age=60")
		} else {
			w.Header().Set("Cache-Control", "private")
		}
		w.Write([]byte("per user"))
	})
	c, _ := newCache(t, clk, cache.Config{})
	h := c.Handler(o)

	if w := request(h, "GET", "/me", nil); contains(w.Header().Get("Cache-Status"), "hit-for-pass") {
		t.Fatalf("first request already passed: %q", w.Header().Get("Cache-Status"))
	}
	pairing.Store(true)
	var wg gosync.WaitGroup
	statuses := make([]string, 2)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = request(h, "GET", "/me", nil).Header().Get("Cache-Status")
		}()
	}
	wg.Wait()
	pairing.Store(false)
	if most.Load() < 2 {
		t.Errorf("the two clients reached the origin one after the other, not together (statuses %q)", statuses)
	}
	for _, s := range statuses {
		if !contains(s, "fwd=uri-miss; detail=hit-for-pass") {
			t.Errorf("Cache-Status = %q, want a hit-for-pass", s)
		}
	}

	// Past PassTTL the cache tries again: one request collapses as a miss.
	clk.Advance(cache.DefaultPassTTL)
	if s := request(h, "GET", "/me", nil).Header().Get("Cache-Status"); contains(s, "hit-for-pass") {
		t.Errorf("after PassTTL: Cache-Status = %q, want a plain miss", s)
	}

	// A storable response on a pass ends it: the next request fills and
	// the one after hits.
	cacheable.Store(true)
	for i, want := range []string{"hit-for-pass", "stored", "hit"} {
		if s := request(h, "GET", "/me", nil).Header().Get("Cache-Status"); !contains(s, want) {
			t.Errorf("request %d once cacheable: Cache-Status = %q, want %q", i, s, want)
		}
	}
}

// TestNoHitForPassOnOriginError keeps collapsing a URL whose origin fails
// on a miss: a 503 during an outage says nothing about the next response,
// and passing every client would send them all to a struggling origin.
func TestNoHitForPassOnOriginError(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	c, _ := newCache(t, clk, cache.Config{})
	h := c.Handler(o)
	for range 2 {
		w := request(h, "GET", "/busy", nil)
		if s := w.Header().Get("Cache-Status"); contains(s, "hit-for-pass") || w.Code != http.StatusServiceUnavailable {
			t.Fatalf("503 from the origin: %d, Cache-Status %q; want it passed on without hit-for-pass", w.Code, s)
		}
	}
}
