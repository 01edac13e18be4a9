package cache_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
)

// TestRFC9213Targeted covers targeted cache control (RFC 9213): the first
// valid field of Tern-Cache-Control and CDN-Cache-Control replaces
// Cache-Control and Expires (§2.2), a field that is not a valid RFC 8941
// Dictionary of the right member types is ignored (§2.1), and neither is
// forwarded downstream.
func TestRFC9213Targeted(t *testing.T) {
	gone := map[string]string{"Cdn-Cache-Control": "", "Tern-Cache-Control": ""}
	runRFC(t, []rfcCase{
		{name: "§2.2 CDN-Cache-Control max-age overrides Cache-Control no-store", origin: lines("Cache-Control", "no-store", "CDN-Cache-Control", "max-age=60"), steps: []step{
			{wantHits: 1, wantHdr: gone}, {advance: 30 * time.Second, wantHits: 1, wantCS: "hit; ttl=30", wantHdr: gone}, {advance: 31 * time.Second, wantHits: 2},
		}},
		{name: "§2.2 CDN-Cache-Control no-store overrides Cache-Control max-age", origin: lines("Cache-Control", "max-age=60", "CDN-Cache-Control", "no-store"), steps: []step{
			{wantHits: 1, wantCS: "detail=no-store", wantHdr: gone}, {wantHits: 2},
		}},
		{name: "§2.2 CDN-Cache-Control private is not stored", origin: lines("Cache-Control", "max-age=60", "CDN-Cache-Control", "private"), steps: []step{
			{wantHits: 1}, {wantHits: 2},
		}},
		{name: "§2.2 CDN-Cache-Control voids Expires", origin: lines("Expires", "Mon, 02 Mar 2026 01:00:00 GMT", "CDN-Cache-Control", "must-revalidate"), steps: []step{
			{wantHits: 1}, {advance: time.Second, wantHits: 2},
		}},
		{name: "§2.2 CDN-Cache-Control s-maxage and must-revalidate", cfg: cache.Config{MaxStale: time.Hour}, origin: lines("Cache-Control", "max-age=600", "CDN-Cache-Control", "s-maxage=10, must-revalidate"), steps: []step{
			{wantHits: 1}, {advance: 5 * time.Second, wantHits: 1, wantCS: "hit"}, {advance: 10 * time.Second, down: true, wantStatus: 504, wantHits: 1},
		}},
		{name: "§2.2 CDN-Cache-Control stale-while-revalidate", origin: lines("Cache-Control", "no-cache", "CDN-Cache-Control", "max-age=10, stale-while-revalidate=30"), steps: []step{
			{wantHits: 1}, {advance: 15 * time.Second, wantHits: 2, wantBody: "body 1", wantCS: "detail=stale-while-revalidate"},
		}},
		{name: "§2.2 CDN-Cache-Control stale-if-error", origin: lines("CDN-Cache-Control", "max-age=10, stale-if-error=60"), steps: []step{
			{wantHits: 1}, {advance: 20 * time.Second, down: true, wantHits: 1, wantBody: "body 1", wantCS: "detail=stale-if-error"},
		}},
		{name: "§2.2 CDN-Cache-Control no-cache revalidates", origin: lines("Cache-Control", "max-age=60", "CDN-Cache-Control", "no-cache, max-age=60"), steps: []step{
			{wantHits: 1}, {wantHits: 2},
		}},
		{name: "§2.1 string max-age: field ignored, Cache-Control used", origin: lines("Cache-Control", "max-age=60", "CDN-Cache-Control", `max-age="1"`), steps: []step{
			{wantHits: 1}, {advance: 30 * time.Second, wantHits: 1, wantCS: "hit; ttl=30", wantHdr: gone},
		}},
		{name: "§2.1 decimal max-age: field ignored", origin: lines("Cache-Control", "max-age=60", "CDN-Cache-Control", "max-age=1.5"), steps: []step{
			{wantHits: 1}, {advance: 30 * time.Second, wantHits: 1, wantCS: "hit; ttl=30"},
		}},
		{name: "§2.1 not a Dictionary: field ignored", origin: lines("Cache-Control", "max-age=60", "CDN-Cache-Control", "max-age=5;;"), steps: []step{
			{wantHits: 1}, {advance: 30 * time.Second, wantHits: 1, wantCS: "hit; ttl=30"},
		}},
		{name: "§2.1 parameterized no-store=?0 is false", origin: lines("Cache-Control", "no-store", "CDN-Cache-Control", "no-store=?0, max-age=60"), steps: []step{
			{wantHits: 1}, {advance: time.Second, wantHits: 1, wantCS: "hit"},
		}},
		{name: "§2.2 Tern-Cache-Control ahead of CDN-Cache-Control", origin: lines("CDN-Cache-Control", "no-store", "Tern-Cache-Control", "max-age=60"), steps: []step{
			{wantHits: 1, wantHdr: gone}, {advance: time.Second, wantHits: 1, wantCS: "hit", wantHdr: gone},
		}},
		{name: "§2.1 invalid Tern-Cache-Control falls back to CDN-Cache-Control", origin: lines("Cache-Control", "max-age=60", "CDN-Cache-Control", "no-store", "Tern-Cache-Control", "max-age=abc"), steps: []step{
			{wantHits: 1, wantCS: "detail=no-store"}, {wantHits: 2},
		}},
	})
}

// TestTargetedFieldPerOrigin names an origin's own targeted field: it is
// obeyed ahead of CDN-Cache-Control and never forwarded, while the
// default Tern-Cache-Control is then an ordinary field for that origin.
func TestTargetedFieldPerOrigin(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("CDN-Cache-Control", "no-store")
		w.Header().Set("Tern-Cache-Control", "no-store")
		w.Header().Set("Acme-Cache-Control", "max-age=60")
		fmt.Fprintf(w, "body %d", n)
	})
	c, err := cache.New(cache.Config{Storage: &cache.MemStorage{}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Wait()
	h := c.HandlerWith(o, cache.HandlerConfig{TargetedField: "acme-cache-control"})
	for i := range 2 {
		rec := request(h, "GET", "http://example.com/x", nil)
		c.Wait()
		if i == 1 && !contains(rec.Header().Get("Cache-Status"), "hit") {
			t.Fatalf("request %d: Cache-Status %q, want a hit by Acme-Cache-Control's max-age", i, rec.Header().Get("Cache-Status"))
		}
		if v := rec.Header().Get("Acme-Cache-Control"); v != "" {
			t.Fatalf("request %d: Acme-Cache-Control %q forwarded downstream", i, v)
		}
		if v := rec.Header().Get("Tern-Cache-Control"); v != "no-store" {
			t.Fatalf("request %d: Tern-Cache-Control %q, want it passed on as an ordinary field", i, v)
		}
	}
	if n := o.hits.Load(); n != 1 {
		t.Fatalf("origin saw %d requests, want 1", n)
	}
}
