package cache_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
)

// step is one request in an RFC 9111 scenario, after advancing the clock.
type step struct {
	advance time.Duration
	down    bool // the origin is unreachable for this step
	method  string
	target  string
	hdr     map[string]string

	wantStatus int
	wantHits   int64  // origin requests so far, after the step (and its background work)
	wantCS     string // substring of Cache-Status
	wantBody   string // "" skips the check
	wantHdr    map[string]string
}

type rfcCase struct {
	name   string
	cfg    cache.Config
	origin func(n int64, w http.ResponseWriter, r *http.Request)
	steps  []step
}

// fixed serves the same body with the given headers.
func fixed(hdr ...string) func(int64, http.ResponseWriter, *http.Request) {
	return func(n int64, w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		fmt.Fprintf(w, "body %d", n)
	}
}

// validating serves "v" with an ETag and Last-Modified, answers matching
// conditionals with 304 and stamps X-Seen with the hit number.
func validating(cc string) func(int64, http.ResponseWriter, *http.Request) {
	return func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", cc)
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("X-Seen", fmt.Sprint(n))
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Last-Modified", "Sun, 01 Mar 2026 10:00:00 GMT")
		w.Write([]byte("v"))
	}
}

func TestRFC9111(t *testing.T) {
	const lm2h = "Sun, 01 Mar 2026 10:00:00 GMT" // 2h before the clock's start
	cases := []rfcCase{
		{name: "max-age fresh then stale refetch", origin: fixed("Cache-Control", "max-age=60"), steps: []step{
			{wantStatus: 200, wantHits: 1, wantCS: "fwd=uri-miss; fwd-status=200; stored", wantBody: "body 1"},
			{advance: 30 * time.Second, wantStatus: 200, wantHits: 1, wantCS: "hit; ttl=30", wantBody: "body 1", wantHdr: map[string]string{"Age": "30"}},
			{advance: 31 * time.Second, wantStatus: 200, wantHits: 2, wantCS: "fwd=stale", wantBody: "body 2"},
		}},
		{name: "s-maxage overrides max-age", origin: fixed("Cache-Control", "max-age=10, s-maxage=100"), steps: []step{
			{wantHits: 1}, {advance: 50 * time.Second, wantHits: 1, wantCS: "hit"}, {advance: 51 * time.Second, wantHits: 2},
		}},
		{name: "no-store is never stored", origin: fixed("Cache-Control", "no-store, max-age=60"), steps: []step{
			{wantHits: 1, wantCS: "detail=no-store"}, {wantHits: 2, wantBody: "body 2"},
		}},
		{name: "private is not stored by a shared cache", origin: fixed("Cache-Control", "private, max-age=60"), steps: []step{
			{wantHits: 1, wantCS: "detail=private"}, {wantHits: 2},
		}},
		{name: "no-cache revalidates every use", origin: validating("no-cache"), steps: []step{
			{wantHits: 1, wantBody: "v"},
			{wantHits: 2, wantBody: "v", wantCS: "fwd=stale; fwd-status=304", wantHdr: map[string]string{"X-Seen": "2"}},
		}},
		{name: "must-revalidate forbids stale when the origin is down", cfg: cache.Config{MaxStale: time.Hour},
			origin: fixed("Cache-Control", "max-age=10, must-revalidate, stale-if-error=600"), steps: []step{
				{wantHits: 1}, {advance: 20 * time.Second, down: true, wantStatus: 504, wantHits: 1},
			}},
		{name: "proxy-revalidate forbids stale when the origin is down", cfg: cache.Config{MaxStale: time.Hour},
			origin: fixed("Cache-Control", "max-age=10, proxy-revalidate"), steps: []step{
				{wantHits: 1}, {advance: 20 * time.Second, down: true, wantStatus: 504, wantHits: 1},
			}},
		{name: "s-maxage implies proxy-revalidate for the offline policy", cfg: cache.Config{MaxStale: time.Hour},
			origin: fixed("Cache-Control", "s-maxage=10"), steps: []step{
				{wantHits: 1}, {advance: 20 * time.Second, down: true, wantStatus: 504, wantHits: 1},
			}},
		{name: "immutable fresh hit ignores client reload", origin: fixed("Cache-Control", "max-age=60, immutable"), steps: []step{
			{wantHits: 1}, {hdr: map[string]string{"Cache-Control": "no-cache"}, wantHits: 1, wantCS: "hit"},
		}},
		{name: "Expires relative to Date", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			d, _ := http.ParseTime(w.Header().Get("Date"))
			w.Header().Set("Expires", d.Add(100*time.Second).Format(http.TimeFormat))
			fmt.Fprintf(w, "body %d", n)
		}, steps: []step{
			{wantHits: 1}, {advance: 99 * time.Second, wantHits: 1, wantCS: "hit; ttl=1"}, {advance: 2 * time.Second, wantHits: 2},
		}},
		{name: "invalid Expires is already expired", origin: fixed("Expires", "0"), steps: []step{
			{wantHits: 1}, {wantHits: 2},
		}},
		{name: "Age from upstream shortens freshness", origin: fixed("Cache-Control", "max-age=60", "Age", "50"), steps: []step{
			{wantHits: 1, wantHdr: map[string]string{"Age": "50"}}, {advance: 9 * time.Second, wantHits: 1, wantHdr: map[string]string{"Age": "59"}},
			{advance: 2 * time.Second, wantHits: 2},
		}},
		{name: "heuristic freshness is 10% of Last-Modified age", origin: fixed("Last-Modified", lm2h), steps: []step{
			// Date - Last-Modified = 2h, so 12 minutes fresh.
			{wantHits: 1}, {advance: 11 * time.Minute, wantHits: 1, wantCS: "hit"}, {advance: 2 * time.Minute, wantHits: 2},
		}},
		{name: "heuristic freshness is capped", cfg: cache.Config{HeuristicMax: time.Minute}, origin: fixed("Last-Modified", lm2h), steps: []step{
			{wantHits: 1}, {advance: 59 * time.Second, wantHits: 1}, {advance: 2 * time.Second, wantHits: 2},
		}},
		{name: "invalid max-age is stale", origin: fixed("Cache-Control", "max-age=abc"), steps: []step{
			{wantHits: 1}, {wantHits: 2},
		}},
		{name: "ETag revalidation: 304 updates stored headers", origin: validating("max-age=10"), steps: []step{
			{wantHits: 1, wantHdr: map[string]string{"X-Seen": "1"}},
			{advance: 11 * time.Second, wantHits: 2, wantBody: "v", wantCS: "fwd-status=304", wantHdr: map[string]string{"X-Seen": "2", "Age": "0"}},
			{advance: 5 * time.Second, wantHits: 2, wantCS: "hit", wantHdr: map[string]string{"X-Seen": "2", "Age": "5"}},
		}},
		{name: "Last-Modified revalidation with If-Modified-Since", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=10")
			w.Header().Set("Last-Modified", lm2h)
			if r.Header.Get("If-Modified-Since") == lm2h {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Write([]byte("lm"))
		}, steps: []step{
			{wantHits: 1}, {advance: 11 * time.Second, wantHits: 2, wantBody: "lm", wantCS: "fwd-status=304"},
		}},
		{name: "Vary selects variants", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Vary", "Accept-Encoding")
			fmt.Fprintf(w, "%s %d", r.Header.Get("Accept-Encoding"), n)
		}, steps: []step{
			{hdr: map[string]string{"Accept-Encoding": "gzip"}, wantHits: 1, wantBody: "gzip 1"},
			{hdr: map[string]string{"Accept-Encoding": "gzip"}, wantHits: 1, wantBody: "gzip 1", wantCS: "hit"},
			{hdr: map[string]string{"Accept-Encoding": "br"}, wantHits: 2, wantBody: "br 2", wantCS: "fwd=vary-miss"},
			{hdr: map[string]string{"Accept-Encoding": "gzip"}, wantHits: 2, wantBody: "gzip 1"},
			{hdr: map[string]string{"Accept-Encoding": "br"}, wantHits: 2, wantBody: "br 2"},
		}},
		{name: "Vary * is never stored", origin: fixed("Cache-Control", "max-age=60", "Vary", "*"), steps: []step{
			{wantHits: 1}, {wantHits: 2},
		}},
		{name: "stale-while-revalidate serves stale and refreshes behind", origin: fixed("Cache-Control", "max-age=10, stale-while-revalidate=30"), steps: []step{
			{wantHits: 1, wantBody: "body 1"},
			{advance: 15 * time.Second, wantHits: 2, wantBody: "body 1", wantCS: "detail=stale-while-revalidate"},
			{wantHits: 2, wantBody: "body 2", wantCS: "hit"},
			{advance: 50 * time.Second, wantHits: 3, wantBody: "body 3", wantCS: "fwd=stale"},
		}},
		{name: "stale-if-error serves stale on 500 within its window", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			if n > 1 {
				http.Error(w, "boom", 500)
				return
			}
			w.Header().Set("Cache-Control", "max-age=10, stale-if-error=60")
			w.Write([]byte("good"))
		}, steps: []step{
			{wantHits: 1},
			{advance: 20 * time.Second, wantHits: 2, wantStatus: 200, wantBody: "good", wantCS: "detail=stale-if-error"},
			{advance: 60 * time.Second, wantHits: 3, wantStatus: 500},
		}},
		{name: "stale-if-error serves stale when unreachable", origin: fixed("Cache-Control", "max-age=10, stale-if-error=60"), steps: []step{
			{wantHits: 1}, {advance: 20 * time.Second, down: true, wantHits: 1, wantBody: "body 1", wantCS: "detail=stale-if-error"},
		}},
		{name: "offline policy serves stale while unreachable, up to MaxStale", cfg: cache.Config{MaxStale: time.Hour},
			origin: fixed("Cache-Control", "max-age=10"), steps: []step{
				{wantHits: 1},
				{advance: 30 * time.Minute, down: true, wantHits: 1, wantBody: "body 1", wantCS: "detail=offline"},
				{advance: 31 * time.Minute, down: true, wantStatus: 504, wantHits: 1},
				{wantHits: 2, wantBody: "body 2"},
			}},
		{name: "offline policy covers 503 from the origin", cfg: cache.Config{MaxStale: time.Hour}, origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			if n > 1 {
				http.Error(w, "maintenance", 503)
				return
			}
			w.Header().Set("Cache-Control", "max-age=10")
			w.Write([]byte("good"))
		}, steps: []step{
			{wantHits: 1}, {advance: time.Minute, wantHits: 2, wantBody: "good", wantCS: "fwd-status=503; detail=offline"},
		}},
		{name: "no offline policy: 504 when unreachable", origin: fixed("Cache-Control", "max-age=10"), steps: []step{
			{wantHits: 1}, {advance: time.Minute, down: true, wantStatus: 504, wantHits: 1},
		}},
		{name: "authorized request not stored without permission", origin: fixed("Cache-Control", "max-age=60"), steps: []step{
			{hdr: map[string]string{"Authorization": "Bearer x"}, wantHits: 1, wantCS: "detail=authorization"},
			{hdr: map[string]string{"Authorization": "Bearer x"}, wantHits: 2},
		}},
		{name: "authorized request stored when public", origin: fixed("Cache-Control", "public, max-age=60"), steps: []step{
			{hdr: map[string]string{"Authorization": "Bearer x"}, wantHits: 1}, {wantHits: 1, wantCS: "hit"},
		}},
		{name: "Set-Cookie is stored with the response", origin: fixed("Cache-Control", "max-age=60", "Set-Cookie", "id=1"), steps: []step{
			{wantHits: 1}, {wantHits: 1, wantCS: "hit", wantHdr: map[string]string{"Set-Cookie": "id=1"}},
		}},
		{name: "unsafe method invalidates target and Location", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=600")
			if r.Method == http.MethodPost {
				w.Header().Set("Location", "/other")
				w.WriteHeader(201)
			}
			fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, n)
		}, steps: []step{
			{target: "/a", wantHits: 1}, {target: "/other", wantHits: 2}, {target: "/a", wantHits: 2},
			{method: "POST", target: "/a", wantStatus: 201, wantHits: 3, wantCS: "fwd=method"},
			{target: "/a", wantHits: 4, wantBody: "GET /a 4"}, {target: "/other", wantHits: 5},
		}},
		{name: "failed unsafe method does not invalidate", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=600")
			if r.Method == http.MethodDelete {
				w.WriteHeader(403)
			}
		}, steps: []step{
			{wantHits: 1}, {method: "DELETE", wantStatus: 403, wantHits: 2}, {wantHits: 2, wantCS: "hit"},
		}},
		{name: "only-if-cached miss is 504", origin: fixed("Cache-Control", "max-age=60"), steps: []step{
			{hdr: map[string]string{"Cache-Control": "only-if-cached"}, wantStatus: 504, wantHits: 0},
		}},
		{name: "request no-store bypasses", origin: fixed("Cache-Control", "max-age=60"), steps: []step{
			{hdr: map[string]string{"Cache-Control": "no-store"}, wantHits: 1, wantCS: "fwd=request"}, {wantHits: 2},
		}},
		{name: "client conditional answered from cache", origin: validating("max-age=60"), steps: []step{
			{wantHits: 1}, {hdr: map[string]string{"If-None-Match": `"v1"`}, wantStatus: 304, wantHits: 1},
		}},
		{name: "range from cache: 206 and 416", origin: fixed("Cache-Control", "max-age=60"), steps: []step{
			{wantHits: 1},
			{hdr: map[string]string{"Range": "bytes=2-4"}, wantStatus: 206, wantBody: "dy ", wantHits: 1, wantHdr: map[string]string{"Content-Range": "bytes 2-4/6"}},
			{hdr: map[string]string{"Range": "bytes=100-"}, wantStatus: 416, wantHits: 1},
		}},
		{name: "HEAD from a stored GET", origin: fixed("Cache-Control", "max-age=60"), steps: []step{
			{wantHits: 1}, {method: "HEAD", wantHits: 1, wantBody: "", wantCS: "hit", wantHdr: map[string]string{"Content-Length": "6"}},
		}},
		{name: "404 with max-age is stored", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			http.NotFound(w, r)
		}, steps: []step{
			{wantStatus: 404, wantHits: 1}, {wantStatus: 404, wantHits: 1, wantCS: "hit"},
		}},
		{name: "500 without explicit freshness is not stored", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
		}, steps: []step{
			{wantStatus: 500, wantHits: 1, wantCS: "detail=status-500"}, {wantStatus: 500, wantHits: 2},
		}},
	}
	runRFC(t, cases)
}

// runRFC runs each case against a fresh cache and origin on the test
// clock, checking every step.
func runRFC(t *testing.T, cases []rfcCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk, tc.origin)
			c, _ := newCache(t, clk, tc.cfg)
			h := c.Handler(o)
			for i, s := range tc.steps {
				clk.Advance(s.advance)
				o.down.Store(s.down)
				method, target := s.method, s.target
				if method == "" {
					method = "GET"
				}
				if target == "" {
					target = "/x"
				}
				w := request(h, method, "http://example.com"+target, s.hdr)
				c.Wait()
				got := body(w)
				cs := w.Header().Get("Cache-Status")
				if want := s.wantStatus; want == 0 && w.Code != 200 || want != 0 && w.Code != want {
					t.Errorf("step %d: status %d, want %d (Cache-Status %q, body %q)", i, w.Code, s.wantStatus, cs, got)
				}
				if n := o.hits.Load(); n != s.wantHits {
					t.Errorf("step %d: origin hits %d, want %d (Cache-Status %q)", i, n, s.wantHits, cs)
				}
				if !contains(cs, s.wantCS) {
					t.Errorf("step %d: Cache-Status %q, want it to contain %q", i, cs, s.wantCS)
				}
				if s.wantBody != "" && got != s.wantBody {
					t.Errorf("step %d: body %q, want %q", i, got, s.wantBody)
				}
				for k, v := range s.wantHdr {
					if g := w.Header().Get(k); g != v {
						t.Errorf("step %d: %s = %q, want %q", i, k, g, v)
					}
				}
			}
		})
	}
}
