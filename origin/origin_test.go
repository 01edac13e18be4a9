package origin_test

import (
	"context"
	"crypto/x509"
	"errors"
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
	"github.com/tern-edge/tern/origin"
	"github.com/tern-edge/tern/store"
)

// clock is an injected clock that tests advance by hand.
type clock struct {
	mu gosync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

// upstream is a test server that counts requests (health checks apart)
// and whose behaviour a test can switch.
type upstream struct {
	srv     *httptest.Server
	name    string
	hits    atomic.Int64
	health  atomic.Int64 // status for /healthz; 0 means 200
	status  atomic.Int64 // status for other paths; 0 means 200
	lastReq atomic.Pointer[http.Request]
	clk     *clock
}

func newUpstream(t *testing.T, name string, clk *clock, tls bool) *upstream {
	u := &upstream{name: name, clk: clk}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if s := u.health.Load(); s != 0 {
				w.WriteHeader(int(s))
			}
			return
		}
		n := u.hits.Add(1)
		u.lastReq.Store(r)
		w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("ETag", `"same"`)
		if r.Header.Get("If-None-Match") == `"same"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if s := u.status.Load(); s != 0 {
			w.WriteHeader(int(s))
		}
		fmt.Fprintf(w, "%s %s %d", name, r.URL.Path, n)
	})
	if tls {
		u.srv = httptest.NewTLSServer(h)
	} else {
		u.srv = httptest.NewServer(h)
	}
	t.Cleanup(u.srv.Close)
	return u
}

func newOrigin(t *testing.T, clk *clock, cfg origin.Config) *origin.Origin {
	t.Helper()
	cfg.Now = clk.Now
	o, err := origin.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.CloseIdleConnections)
	return o
}

func get(t *testing.T, rt http.RoundTripper, method, path string) (*http.Response, string, error) {
	t.Helper()
	r := httptest.NewRequest(method, "http://site.example"+path, nil)
	r.RequestURI = ""
	resp, err := rt.RoundTrip(r)
	if err != nil {
		return nil, "", err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), nil
}

func TestNewRejectsBadConfig(t *testing.T) {
	cases := []struct {
		cfg  origin.Config
		want string
	}{
		{origin.Config{}, "origin: no upstreams"},
		{origin.Config{Upstreams: []string{"ftp://x"}}, `origin upstream "ftp://x": want http(s)://host[:port][/path]`},
		{origin.Config{Upstreams: []string{"http://x?q=1"}}, `origin upstream "http://x?q=1": want http(s)://host[:port][/path]`},
		{origin.Config{Upstreams: []string{"http://x"}, Retries: -1}, "origin: negative retries or timeout"},
		{origin.Config{Upstreams: []string{"http://x"}, HostPolicy: 7}, "origin: unknown host policy 7"},
	}
	for _, tc := range cases {
		if _, err := origin.New(tc.cfg); err == nil || err.Error() != tc.want {
			t.Errorf("New(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestFailoverAndRetries(t *testing.T) {
	clk := newClock()
	a := newUpstream(t, "a", clk, false)
	b := newUpstream(t, "b", clk, false)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connection refused from now on

	t.Run("connection failure fails over and marks the upstream down", func(t *testing.T) {
		o := newOrigin(t, clk, origin.Config{Upstreams: []string{deadURL, a.srv.URL}, Retries: 1, HealthInterval: time.Minute})
		_, body, err := get(t, o, "GET", "/x")
		if err != nil || !strings.HasPrefix(body, "a /x") {
			t.Fatalf("got %q, %v", body, err)
		}
		if st := o.Status(); st[0].Healthy || !st[1].Healthy {
			t.Fatalf("status = %+v", st)
		}
		// Skipped while down; retried once the interval passes.
		clk.Advance(61 * time.Second)
		if st := o.Status(); !st[0].Healthy {
			t.Fatalf("passive mark did not expire: %+v", st)
		}
	})
	t.Run("no retries: error wraps ErrUnavailable", func(t *testing.T) {
		o := newOrigin(t, clk, origin.Config{Upstreams: []string{deadURL, a.srv.URL}})
		_, _, err := get(t, o, "GET", "/x")
		if !errors.Is(err, origin.ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("503 is retried for GET on the next upstream", func(t *testing.T) {
		a.status.Store(503)
		defer a.status.Store(0)
		o := newOrigin(t, clk, origin.Config{Upstreams: []string{a.srv.URL, b.srv.URL}, Retries: 1})
		resp, body, err := get(t, o, "GET", "/y")
		if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(body, "b /y") {
			t.Fatalf("got %v %q, %v", resp, body, err)
		}
	})
	t.Run("POST is never retried", func(t *testing.T) {
		a.status.Store(503)
		defer a.status.Store(0)
		before := b.hits.Load()
		o := newOrigin(t, clk, origin.Config{Upstreams: []string{a.srv.URL, b.srv.URL}, Retries: 3})
		resp, _, err := get(t, o, "POST", "/z")
		if err != nil || resp.StatusCode != 503 || b.hits.Load() != before {
			t.Fatalf("POST: %v, %v, b hits +%d", resp, err, b.hits.Load()-before)
		}
	})
	t.Run("the last 503 is returned when all fail", func(t *testing.T) {
		a.status.Store(503)
		b.status.Store(503)
		defer a.status.Store(0)
		defer b.status.Store(0)
		o := newOrigin(t, clk, origin.Config{Upstreams: []string{a.srv.URL, b.srv.URL}, Retries: 5})
		resp, _, err := get(t, o, "GET", "/w")
		if err != nil || resp.StatusCode != 503 {
			t.Fatalf("got %v, %v", resp, err)
		}
	})
}

func TestResponseTimeout(t *testing.T) {
	clk := newClock()
	release := make(chan struct{})
	defer close(release)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	b := newUpstream(t, "b", clk, false)
	o := newOrigin(t, clk, origin.Config{Upstreams: []string{slow.URL, b.srv.URL}, Retries: 1, ResponseTimeout: 50 * time.Millisecond})
	_, body, err := get(t, o, "GET", "/t")
	if err != nil || !strings.HasPrefix(body, "b /t") {
		t.Fatalf("got %q, %v", body, err)
	}
}

func TestHostPolicyAndPath(t *testing.T) {
	clk := newClock()
	a := newUpstream(t, "a", clk, false)
	cases := []struct {
		name     string
		cfg      origin.Config
		base     string
		wantHost string
		wantPath string
	}{
		{"preserve", origin.Config{}, "", "site.example", "/p"},
		{"rewrite to upstream", origin.Config{HostPolicy: origin.RewriteHost}, "", strings.TrimPrefix(a.srv.URL, "http://"), "/p"},
		{"rewrite to configured", origin.Config{HostPolicy: origin.RewriteHost, Host: "bucket.example"}, "", "bucket.example", "/p"},
		{"base path", origin.Config{}, "/base/", "site.example", "/base/p"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Upstreams = []string{a.srv.URL + tc.base}
			o := newOrigin(t, clk, cfg)
			if _, _, err := get(t, o, "GET", "/p?q=1"); err != nil {
				t.Fatal(err)
			}
			r := a.lastReq.Load()
			if r.Host != tc.wantHost || r.URL.Path != tc.wantPath || r.URL.RawQuery != "q=1" {
				t.Fatalf("upstream saw Host %q path %q query %q", r.Host, r.URL.Path, r.URL.RawQuery)
			}
			if r.Header.Get("X-Forwarded-Host") != "site.example" || r.Header.Get("X-Forwarded-Proto") != "http" || r.Header.Get("X-Forwarded-For") == "" {
				t.Fatalf("forwarding headers: %v", r.Header)
			}
		})
	}
}

func TestTLSWithCustomRoots(t *testing.T) {
	clk := newClock()
	a := newUpstream(t, "a", clk, true)
	o := newOrigin(t, clk, origin.Config{Upstreams: []string{a.srv.URL}})
	if _, _, err := get(t, o, "GET", "/s"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted upstream accepted: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.srv.Certificate())
	o = newOrigin(t, clk, origin.Config{Upstreams: []string{a.srv.URL}, RootCAs: roots, ServerName: "example.com"})
	if _, body, err := get(t, o, "GET", "/s"); err != nil || !strings.HasPrefix(body, "a /s") {
		t.Fatalf("got %q, %v", body, err)
	}
}

func TestActiveHealthChecks(t *testing.T) {
	clk := newClock()
	a := newUpstream(t, "a", clk, false)
	b := newUpstream(t, "b", clk, false)
	ticks := make(chan time.Time)
	o := newOrigin(t, clk, origin.Config{
		Upstreams:  []string{a.srv.URL, b.srv.URL},
		HealthPath: "/healthz",
		NewTicker:  func(time.Duration) (<-chan time.Time, func()) { return ticks, func() {} },
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- o.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// A tick is received only after the previous round of checks is
	// done, so two sends bracket one complete round.
	round := func() { ticks <- clk.Now(); ticks <- clk.Now() }
	round()
	if _, body, _ := get(t, o, "GET", "/h"); !strings.HasPrefix(body, "a") {
		t.Fatalf("healthy primary not used: %q", body)
	}
	a.health.Store(500)
	round()
	if st := o.Status(); st[0].Healthy || !st[1].Healthy {
		t.Fatalf("status after failed check = %+v", st)
	}
	before := a.hits.Load()
	if _, body, _ := get(t, o, "GET", "/h"); !strings.HasPrefix(body, "b") || a.hits.Load() != before {
		t.Fatalf("unhealthy primary tried: %q", body)
	}
	a.health.Store(0)
	round()
	if _, body, _ := get(t, o, "GET", "/h"); !strings.HasPrefix(body, "a") {
		t.Fatalf("recovered primary not used: %q", body)
	}
}

// TestThroughCacheOfflineAndRestart is the gateway story: the origin goes
// away, the cache keeps serving within policy, the origin returns and
// revalidation resumes; entries survive a restart of the store.
func TestThroughCacheOfflineAndRestart(t *testing.T) {
	clk := newClock()
	a := newUpstream(t, "a", clk, false)
	dir := t.TempDir()
	open := func() (*cache.Cache, *store.Store) {
		s, err := store.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := cache.New(cache.Config{Storage: s.Cache(), Now: clk.Now, MaxStale: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	c, s := open()
	o := newOrigin(t, clk, origin.Config{Upstreams: []string{a.srv.URL}})
	serve := func(h http.Handler) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "http://site.example/page", nil))
		c.Wait()
		return w
	}
	h := origin.Handler(c, o)
	if w := serve(h); w.Body.String() != "a /page 1" {
		t.Fatalf("first fetch: %q", w.Body.String())
	}

	a.srv.CloseClientConnections()
	a.srv.Listener.Close() // origin unreachable; in-flight state is gone
	clk.Advance(5 * time.Minute)
	w := serve(h)
	if w.Code != 200 || w.Body.String() != "a /page 1" || !strings.Contains(w.Header().Get("Cache-Status"), "detail=offline") {
		t.Fatalf("offline: %d %q %q", w.Code, w.Body.String(), w.Header().Get("Cache-Status"))
	}

	// Restart while the origin is still away.
	c.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c, s = open()
	defer func() { c.Wait(); s.Close() }()
	h = origin.Handler(c, o)
	clk.Advance(time.Minute)
	if w := serve(h); w.Code != 200 || w.Body.String() != "a /page 1" || w.Header().Get("Age") != "360" {
		t.Fatalf("offline after restart: %d %q Age %s", w.Code, w.Body.String(), w.Header().Get("Age"))
	}

	// The origin comes back on a new address; revalidation resumes.
	back := newUpstream(t, "a", clk, false)
	o = newOrigin(t, clk, origin.Config{Upstreams: []string{back.srv.URL}})
	h = origin.Handler(c, o)
	w = serve(h)
	if w.Body.String() != "a /page 1" || !strings.Contains(w.Header().Get("Cache-Status"), "fwd-status=304") || back.hits.Load() != 1 {
		t.Fatalf("after return: %q %q hits %d", w.Body.String(), w.Header().Get("Cache-Status"), back.hits.Load())
	}
	if w := serve(h); !strings.Contains(w.Header().Get("Cache-Status"), "hit") || back.hits.Load() != 1 {
		t.Fatalf("fresh again: %q", w.Header().Get("Cache-Status"))
	}
}
