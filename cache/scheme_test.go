package cache_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
)

// forwardProto tells the origin the client's scheme, as origin.Origin
// does with X-Forwarded-Proto.
type forwardProto struct{ rt http.RoundTripper }

func (f forwardProto) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	r.Header.Set("X-Forwarded-Proto", proto)
	return f.rt.RoundTrip(r)
}

// redirectToHTTPS answers http requests with a cacheable redirect to
// https, and https requests with the page: an origin behind a CDN that
// enforces https itself.
func redirectToHTTPS(_ int64, w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "max-age=600")
	if r.Header.Get("X-Forwarded-Proto") != "https" {
		w.Header().Set("Location", "https://example.com/page")
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	io.WriteString(w, "page")
}

// TestSchemeIsPartOfTheKey checks that a response to an http request is
// never served to an https one, nor the other way round: a cached
// redirect to https served to https clients would send them round in a
// loop. One purge still covers both schemes, and a default port makes no
// difference.
func TestSchemeIsPartOfTheKey(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk, redirectToHTTPS)
	c, _ := newCache(t, clk, cache.Config{})
	h := c.Handler(forwardProto{o})

	check := func(target string, wantCode, wantHits int, wantStatus string) {
		t.Helper()
		w := request(h, "GET", target, nil)
		if w.Code != wantCode || !contains(w.Header().Get("Cache-Status"), wantStatus) {
			t.Errorf("GET %s: %d, Cache-Status %q; want %d, %q", target, w.Code, w.Header().Get("Cache-Status"), wantCode, wantStatus)
		}
		if got := o.hits.Load(); got != int64(wantHits) {
			t.Errorf("after GET %s: %d origin requests, want %d", target, got, wantHits)
		}
	}
	check("http://example.com/page", http.StatusMovedPermanently, 1, "stored")
	check("https://example.com/page", http.StatusOK, 2, "stored")
	check("http://example.com/page", http.StatusMovedPermanently, 2, "hit")
	check("https://example.com/page", http.StatusOK, 2, "hit")
	// A scheme's default port names the same resource (RFC 9110 §4.2.3).
	check("https://Example.com:443/page", http.StatusOK, 2, "hit")
	check("http://example.com:80/page", http.StatusMovedPermanently, 2, "hit")

	res, err := c.Purge(cache.PurgeRequest{URLs: []string{"https://example.com:443/page"}})
	if err != nil || res.Purged != 2 {
		t.Fatalf("purge of the URL: %+v, %v; want both schemes' entries purged", res, err)
	}
	check("https://example.com/page", http.StatusOK, 3, "stored")
	check("http://example.com/page", http.StatusMovedPermanently, 4, "stored")
}

// TestSchemesDoNotCollapse sends an http and an https miss for the same
// URL at once: each must reach the origin and get its own answer, not
// the other's.
func TestSchemesDoNotCollapse(t *testing.T) {
	clk := newClock()
	both := make(chan struct{})
	var arrived atomic.Int64
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == 2 {
			close(both)
		}
		select { // hold the first until the second arrives, if it does
		case <-both:
		case <-time.After(5 * time.Second):
		}
		redirectToHTTPS(n, w, r)
	})
	c, _ := newCache(t, clk, cache.Config{})
	h := c.Handler(forwardProto{o})
	plain, secure := async(h, "http://example.com/page"), async(h, "https://example.com/page")
	if w := await(t, "http", plain); w.Code != http.StatusMovedPermanently {
		t.Errorf("http: %d, want 301", w.Code)
	}
	if w := await(t, "https", secure); w.Code != http.StatusOK || body(w) != "page" {
		t.Errorf("https: %d %q, want 200 \"page\"", w.Code, body(w))
	}
	if got := o.hits.Load(); got != 2 {
		t.Errorf("%d origin requests, want one per scheme", got)
	}
}

// legacyStorage commits entries as versions that did not record the
// scheme did: keyed by the primary key alone, without the scheme in
// their metadata.
type legacyStorage struct{ cache.Storage }

func (s legacyStorage) Commit(e cache.Entry) error {
	var m map[string]any
	if err := json.Unmarshal(e.Meta, &m); err != nil {
		return err
	}
	delete(m, "sc")
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	e.Meta = b
	e.Key, _, _ = strings.Cut(e.Key, "\x00")
	return s.Storage.Commit(e)
}

// TestEntriesWithoutSchemeServeBoth checks that entries stored before
// the scheme was part of the key still serve after an upgrade, to either
// scheme: a gateway upgraded while cut off from its origin keeps its
// content.
func TestEntriesWithoutSchemeServeBoth(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk, func(_ int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "page")
	})
	s := openStore(t, t.TempDir())
	old, err := cache.New(cache.Config{Storage: legacyStorage{s.Cache()}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if w := request(old.Handler(forwardProto{o}), "GET", "http://example.com/page", nil); w.Code != http.StatusOK {
		t.Fatalf("store: %d", w.Code)
	}
	old.Wait()

	c := storeCache(t, s, clk)
	t.Cleanup(c.Wait)
	o.down.Store(true)
	h := c.Handler(forwardProto{o})
	for _, target := range []string{"https://example.com/page", "http://example.com/page"} {
		w := request(h, "GET", target, nil)
		if w.Code != http.StatusOK || body(w) != "page" || !contains(w.Header().Get("Cache-Status"), "hit") {
			t.Errorf("GET %s: %d %q, Cache-Status %q; want a hit", target, w.Code, body(w), w.Header().Get("Cache-Status"))
		}
	}
}
