package cache_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
)

func TestCollapsesConcurrentMisses(t *testing.T) {
	clk := newClock()
	release := make(chan struct{})
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		<-release // hold the first request until every client waits
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write(bytes.Repeat([]byte("x"), 3*cache.ChunkSize/2))
	})
	c, _ := newCache(t, clk, cache.Config{})
	srv := httptest.NewServer(c.Handler(o))
	defer srv.Close()

	const n = 100
	var wg gosync.WaitGroup
	errs := make(chan error, n)
	statuses := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := srv.Client().Get(srv.URL + "/big")
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || len(b) != 3*cache.ChunkSize/2 {
				errs <- fmt.Errorf("read %d bytes, err %v", len(b), err)
				return
			}
			statuses <- resp.Header.Get("Cache-Status")
		}()
	}
	// Let the requests arrive; they all find the one flight.
	deadline := time.Now().Add(5 * time.Second)
	for o.hits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// Requests arriving from now on find the flight (its body streams in
	// while stored) or, once committed, the entry: never the origin.
	close(release)
	wg.Wait()
	close(errs)
	close(statuses)
	for err := range errs {
		t.Error(err)
	}
	if h := o.hits.Load(); h != 1 {
		t.Fatalf("origin requests = %d, want 1", h)
	}
	collapsed := 0
	for s := range statuses {
		if strings.Contains(s, "collapsed") || strings.Contains(s, "hit") {
			collapsed++
		}
	}
	if collapsed != n-1 {
		t.Errorf("%d responses collapsed or hit, want %d", collapsed, n-1)
	}
}

func TestRestartKeepsEntries(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk, validating("max-age=60"))
	dir := t.TempDir()
	s := openStore(t, dir)
	c := storeCache(t, s, clk)
	big := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Surrogate-Key", "big")
		w.Write(pattern(5*cache.ChunkSize/2, 7))
	})
	request(c.Handler(o), "GET", "http://example.com/a", nil)
	request(c.Handler(big), "GET", "http://example.com/big", nil)
	c.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir)
	defer s.Close()
	c = storeCache(t, s, clk)
	if st := c.Stats(); st.Entries != 2 || st.Bytes != 1+5*cache.ChunkSize/2 {
		t.Fatalf("stats after reopen = %+v", st)
	}
	clk.Advance(10 * time.Second)
	w := request(c.Handler(o), "GET", "http://example.com/a", nil)
	if body(w) != "v" || w.Header().Get("Age") != "10" || !contains(w.Header().Get("Cache-Status"), "hit") || o.hits.Load() != 1 {
		t.Fatalf("after reopen: %q Age %s Cache-Status %q hits %d", body(w), w.Header().Get("Age"), w.Header().Get("Cache-Status"), o.hits.Load())
	}
	w = request(c.Handler(big), "GET", "http://example.com/big", map[string]string{"Range": "bytes=1048570-1048580"})
	if w.Code != 206 || body(w) != string(pattern(5*cache.ChunkSize/2, 7)[1048570:1048581]) {
		t.Fatalf("range across chunks after reopen: %d", w.Code)
	}
	// Still stale at the right time, and revalidation works.
	clk.Advance(51 * time.Second)
	w = request(c.Handler(o), "GET", "http://example.com/a", nil)
	if !contains(w.Header().Get("Cache-Status"), "fwd-status=304") || o.hits.Load() != 2 {
		t.Fatalf("revalidation after reopen: Cache-Status %q hits %d", w.Header().Get("Cache-Status"), o.hits.Load())
	}
	// Tags survive too.
	if res, err := c.Purge(cache.PurgeRequest{Tags: []string{"big"}}); err != nil || res.Purged != 1 {
		t.Fatalf("purge by tag after reopen = %+v, %v", res, err)
	}
	c.Wait()
}

// pattern returns n bytes that differ by offset, so misplaced chunks show.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i/251) ^ byte(i) ^ seed
	}
	return b
}

func TestPurge(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", `"e"`)
		if r.Header.Get("If-None-Match") == `"e"` {
			w.WriteHeader(304)
			return
		}
		switch {
		case strings.HasPrefix(r.URL.Path, "/img/"):
			w.Header().Set("Surrogate-Key", "images all")
		default:
			w.Header().Set("Cache-Tag", "pages, all")
		}
		fmt.Fprint(w, r.URL.Path)
	})
	urls := []string{"/img/a", "/img/b", "/page/1", "/page/2?x=1"}
	type want struct {
		purged int
		misses []string // paths that go to the origin next (full fetch or revalidation)
	}
	cases := []struct {
		name string
		req  cache.PurgeRequest
		want want
	}{
		{"url", cache.PurgeRequest{URLs: []string{"https://example.com/page/2?x=1"}}, want{1, []string{"/page/2?x=1"}}},
		{"url without scheme", cache.PurgeRequest{URLs: []string{"EXAMPLE.com/img/a"}}, want{1, []string{"/img/a"}}},
		{"prefix", cache.PurgeRequest{Prefixes: []string{"example.com/img/"}}, want{2, []string{"/img/a", "/img/b"}}},
		{"tag", cache.PurgeRequest{Tags: []string{"pages"}}, want{2, []string{"/page/1", "/page/2?x=1"}}},
		{"tag on all", cache.PurgeRequest{Tags: []string{"all"}}, want{4, urls}},
		{"soft tag", cache.PurgeRequest{Tags: []string{"images"}, Soft: true}, want{2, []string{"/img/a", "/img/b"}}},
		{"absent", cache.PurgeRequest{URLs: []string{"http://other.example/x"}, Tags: []string{"none"}}, want{0, nil}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newCache(t, clk, cache.Config{})
			h := c.Handler(o)
			for _, u := range urls {
				request(h, "GET", "http://example.com"+u, nil)
			}
			res, err := c.Purge(tc.req)
			if err != nil || res.Purged != tc.want.purged {
				t.Fatalf("Purge = %+v, %v; want %d", res, err, tc.want.purged)
			}
			miss := map[string]bool{}
			for _, u := range tc.want.misses {
				miss[u] = true
			}
			for _, u := range urls {
				before := o.hits.Load()
				w := request(h, "GET", "http://example.com"+u, nil)
				went := o.hits.Load() > before
				if went != miss[u] {
					t.Errorf("%s: went to origin = %v, want %v (Cache-Status %q)", u, went, miss[u], w.Header().Get("Cache-Status"))
				}
				if body(w) != strings.SplitN(u, "?", 2)[0] {
					t.Errorf("%s: body %q", u, body(w))
				}
				if tc.req.Soft && miss[u] && !contains(w.Header().Get("Cache-Status"), "fwd-status=304") {
					t.Errorf("%s: soft purge should revalidate, Cache-Status %q", u, w.Header().Get("Cache-Status"))
				}
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		c, _ := newCache(t, clk, cache.Config{})
		for _, req := range []cache.PurgeRequest{{Prefixes: []string{""}}, {Prefixes: []string{"https://"}}, {URLs: []string{"/no-host"}}, {URLs: []string{"http://%zz"}}} {
			if _, err := c.Purge(req); err == nil || !strings.Contains(err.Error(), "bad purge request") {
				t.Errorf("Purge(%+v) = %v, want ErrBadPurge", req, err)
			}
		}
	})
}

func TestSoftPurgedServesStaleWhenOriginDown(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk, fixed("Cache-Control", "max-age=600"))
	c, _ := newCache(t, clk, cache.Config{MaxStale: time.Hour})
	h := c.Handler(o)
	request(h, "GET", "http://example.com/a", nil)
	if _, err := c.Purge(cache.PurgeRequest{URLs: []string{"example.com/a"}, Soft: true}); err != nil {
		t.Fatal(err)
	}
	o.down.Store(true)
	w := request(h, "GET", "http://example.com/a", nil)
	if w.Code != 200 || body(w) != "body 1" || !contains(w.Header().Get("Cache-Status"), "detail=offline") {
		t.Fatalf("soft-purged while down: %d %q %q", w.Code, body(w), w.Header().Get("Cache-Status"))
	}
	o.down.Store(false)
	w = request(h, "GET", "http://example.com/a", nil)
	if body(w) != "body 2" {
		t.Fatalf("after origin returns: %q", body(w))
	}
}

func TestEvictionKeepsHotObjects(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write(make([]byte, 1000))
	})
	// Room for ten objects.
	c, _ := newCache(t, clk, cache.Config{MaxBytes: 10_000})
	h := c.Handler(o)
	for _, p := range []string{"/hot1", "/hot2", "/hot3"} {
		request(h, "GET", "http://example.com"+p, nil)
		request(h, "GET", "http://example.com"+p, nil) // second use: promoted
	}
	// A crawl of 50 cold objects passes through.
	for i := range 50 {
		request(h, "GET", fmt.Sprintf("http://example.com/cold%d", i), nil)
	}
	if st := c.Stats(); st.Bytes > 10_000 || st.Entries != 10 {
		t.Fatalf("stats = %+v, want within budget and full", st)
	}
	before := o.hits.Load()
	for _, p := range []string{"/hot1", "/hot2", "/hot3"} {
		if w := request(h, "GET", "http://example.com"+p, nil); !contains(w.Header().Get("Cache-Status"), "hit") {
			t.Errorf("%s evicted by a crawl: %q", p, w.Header().Get("Cache-Status"))
		}
	}
	if o.hits.Load() != before {
		t.Errorf("hot objects went to the origin")
	}
	// An object larger than the budget streams through but is not kept.
	big := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write(make([]byte, 20_000))
	})
	hb := c.Handler(big)
	if w := request(hb, "GET", "http://example.com/huge", nil); len(body(w)) != 20_000 {
		t.Fatal("huge object not served")
	}
	if st := c.Stats(); st.Bytes > 10_000 {
		t.Fatalf("over budget: %+v", st)
	}
}

func TestAdminHandler(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk, fixed("Cache-Control", "max-age=600", "Surrogate-Key", "k"))
	c, _ := newCache(t, clk, cache.Config{})
	request(c.Handler(o), "GET", "http://example.com/a", nil)
	c.Wait() // the entry is committed after the response
	if _, err := c.AdminHandler(""); err == nil {
		t.Fatal("empty token accepted")
	}
	admin, err := c.AdminHandler("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, method, auth, body string
		want                     int
		wantBody                 string
	}{
		{"no token", "POST", "", `{"tags":["k"]}`, 401, "unauthorized"},
		{"wrong token", "POST", "Bearer nope", `{"tags":["k"]}`, 401, "unauthorized"},
		{"unknown field", "POST", "Bearer s3cret", `{"tag":"k"}`, 400, "bad purge request"},
		{"empty prefix", "POST", "Bearer s3cret", `{"prefixes":[""]}`, 400, "empty prefix"},
		{"stats", "GET", "Bearer s3cret", "", 200, `"entries":1`},
		{"purge", "POST", "Bearer s3cret", `{"tags":["k"]}`, 200, `{"purged":1}`},
		{"method", "DELETE", "Bearer s3cret", "", 405, "method not allowed"},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(tc.method, "/cache", strings.NewReader(tc.body))
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		admin.ServeHTTP(w, r)
		if w.Code != tc.want || !strings.Contains(w.Body.String(), tc.wantBody) {
			t.Errorf("%s: %d %q, want %d containing %q", tc.name, w.Code, w.Body.String(), tc.want, tc.wantBody)
		}
	}
}

func TestNamespace(t *testing.T) {
	clk := newClock()
	c, _ := newCache(t, clk, cache.Config{})
	a, err := c.Namespace("app-a")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.Namespace("app-b")
	if _, err := c.Namespace("x/y"); err == nil {
		t.Fatal("namespace with / accepted")
	}
	resp := func(cc, body string) *http.Response {
		h := http.Header{}
		h.Set("Cache-Control", cc)
		h.Set("Cache-Tag", "fn")
		return &http.Response{StatusCode: 200, Header: h, ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body))}
	}
	if err := a.Store("k", resp("max-age=60", "hello")); err != nil {
		t.Fatal(err)
	}
	if err := a.Store("nostore", resp("no-store", "x")); err == nil || !strings.Contains(err.Error(), "not storable") {
		t.Fatalf("no-store stored: %v", err)
	}
	got, err := a.Lookup("k")
	if err != nil {
		t.Fatal(err)
	}
	bb, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if string(bb) != "hello" || got.StatusCode != 200 || got.Header.Get("Age") != "0" {
		t.Fatalf("lookup = %d %q Age %q", got.StatusCode, bb, got.Header.Get("Age"))
	}
	if _, err := b.Lookup("k"); err == nil {
		t.Fatal("app-b sees app-a's entry")
	}
	// Not reachable as a URL, reachable by tag.
	if res, _ := c.Purge(cache.PurgeRequest{Prefixes: []string{"app-a"}}); res.Purged != 0 {
		t.Fatal("prefix purge reached a namespace")
	}
	clk.Advance(61 * time.Second)
	if _, err := a.Lookup("k"); err == nil {
		t.Fatal("stale entry returned")
	}
	if err := a.Store("k", resp("max-age=60", "again")); err != nil {
		t.Fatal(err)
	}
	if res, _ := c.Purge(cache.PurgeRequest{Tags: []string{"fn"}}); res.Purged != 1 {
		t.Fatalf("purge by tag = %d", res.Purged)
	}
	if err := a.Delete("k"); err != nil {
		t.Fatal(err)
	}
}

func TestRunCollectsGarbageOnTicks(t *testing.T) {
	clk := newClock()
	ticks := make(chan time.Time)
	c, _ := newCache(t, clk, cache.Config{NewTicker: func(time.Duration) (<-chan time.Time, func()) { return ticks, func() {} }})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	ticks <- clk.Now()
	ticks <- clk.Now() // the second send proves the first GC returned
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// countingStorage counts chunk reads.
type countingStorage struct {
	cache.MemStorage
	reads atomic.Int64
}

func (s *countingStorage) ReadChunk(body string, idx int, buf []byte) ([]byte, error) {
	s.reads.Add(1)
	return s.MemStorage.ReadChunk(body, idx, buf)
}

func TestMemoryTier(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write(bytes.Repeat([]byte(r.URL.Path[1:2]), 1000))
	})
	cases := []struct {
		name      string
		memory    int64
		wantReads []int64 // storage reads of each hit; -1 for a miss
	}{
		// a filled, a hit from memory, b, c (a leaves the 2500 B tier),
		// a from storage then from memory again. A miss is answered from
		// the origin's bytes in memory, or from storage when the fill has
		// moved on by the time its client reads: not counted.
		{"budget of two objects", 2500, []int64{-1, 0, -1, -1, 1, 0}},
		{"disabled", -1, []int64{-1, 1, -1, -1, 1, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := &countingStorage{}
			c, err := cache.New(cache.Config{Storage: st, Now: clk.Now, MemoryBytes: tc.memory})
			if err != nil {
				t.Fatal(err)
			}
			h := c.Handler(o)
			for i, p := range []string{"/a", "/a", "/b", "/c", "/a", "/a"} {
				before := st.reads.Load()
				w := request(h, "GET", "http://example.com"+p, nil)
				if len(body(w)) != 1000 {
					t.Fatalf("request %d: %d bytes", i, len(body(w)))
				}
				c.Wait() // its fill committed, the tier updated
				if got := st.reads.Load() - before; tc.wantReads[i] >= 0 && got != tc.wantReads[i] {
					t.Errorf("request %d (%s): %d storage reads, want %d", i, p, got, tc.wantReads[i])
				}
			}
			c.Wait()
		})
	}
	if _, err := cache.New(cache.Config{Storage: &cache.MemStorage{}, MemoryObjectBytes: 2 * cache.ChunkSize}); err == nil {
		t.Fatal("memory object bytes above the chunk size accepted")
	}
}

// TestWholeBodyHits checks the headers and bodies of hits served whole
// (no range, no precondition): from the RAM tier, from storage (one chunk
// and several), for GET and HEAD, and that a purge reaches the RAM tier.
func TestWholeBodyHits(t *testing.T) {
	clk := newClock()
	sizes := map[string]int{"/small": 1000, "/big": 2*cache.ChunkSize + 123}
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		if r.URL.Query().Get("typed") != "" {
			w.Header().Set("Content-Type", "text/plain")
		} else {
			w.Header()["Content-Type"] = nil // sent without one
		}
		size := sizes[r.URL.Path]
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.Write(bytes.Repeat([]byte{'<'}, size)) // would sniff as text/html
	})
	for _, memory := range []int64{0, -1} {
		t.Run(fmt.Sprintf("memory=%d", memory), func(t *testing.T) {
			c, _ := newCache(t, clk, cache.Config{MemoryBytes: memory})
			h := c.Handler(o)
			for _, target := range []string{"/small", "/big", "/small?typed=1"} {
				request(h, "GET", "http://example.com"+target, nil) // fill
				path, _, _ := strings.Cut(target, "?")
				wantLen := fmt.Sprint(sizes[path])
				wantType := ""
				if strings.Contains(target, "typed") {
					wantType = "text/plain"
				}
				for _, method := range []string{"GET", "HEAD", "GET"} {
					w := request(h, method, "http://example.com"+target, nil)
					if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Cache-Status"), "tern; hit") {
						t.Fatalf("%s %s: %d %q", method, target, w.Code, w.Header().Get("Cache-Status"))
					}
					for k, v := range map[string]string{"Content-Length": wantLen, "Accept-Ranges": "bytes", "Content-Type": wantType} {
						if got := w.Header().Get(k); got != v {
							t.Errorf("%s %s: %s %q, want %q", method, target, k, got, v)
						}
					}
					wantBody := sizes[path]
					if method == "HEAD" {
						wantBody = 0
					}
					if b := body(w); len(b) != wantBody || strings.Trim(b, "<") != "" {
						t.Errorf("%s %s: body of %d bytes, want %d", method, target, len(b), wantBody)
					}
				}
			}
			before := o.hits.Load()
			if _, err := c.Purge(cache.PurgeRequest{URLs: []string{"example.com/small"}}); err != nil {
				t.Fatal(err)
			}
			if w := request(h, "GET", "http://example.com/small", nil); !strings.Contains(w.Header().Get("Cache-Status"), "fwd=uri-miss") || o.hits.Load() != before+1 {
				t.Errorf("after purge: %q, %d origin requests, want a miss", w.Header().Get("Cache-Status"), o.hits.Load()-before)
			}
		})
	}
}
