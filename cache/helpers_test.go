package cache_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
	"github.com/tern-edge/tern/store"
)

// clock is an injected clock that tests advance by hand.
type clock struct {
	mu gosync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

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

// origin is a test origin that counts requests, stamps Date from the
// injected clock, and can be taken down (connection refused-like errors).
type origin struct {
	t     *testing.T
	clk   *clock
	srv   *httptest.Server
	hits  atomic.Int64
	down  atomic.Bool
	serve atomic.Pointer[func(n int64, w http.ResponseWriter, r *http.Request)]
	rt    http.RoundTripper
}

var errDown = errors.New("origin down")

func newOrigin(t *testing.T, clk *clock, serve func(n int64, w http.ResponseWriter, r *http.Request)) *origin {
	o := &origin{t: t, clk: clk}
	o.serve.Store(&serve)
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := o.hits.Add(1)
		w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat))
		(*o.serve.Load())(n, w, r)
	}))
	t.Cleanup(o.srv.Close)
	o.rt = o.srv.Client().Transport
	return o
}

// RoundTrip sends r to the test server, keeping r.Host as the Host header.
func (o *origin) RoundTrip(r *http.Request) (*http.Response, error) {
	if o.down.Load() {
		return nil, errDown
	}
	u, _ := url.Parse(o.srv.URL)
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host = u.Scheme, u.Host
	return o.rt.RoundTrip(r2)
}

// openStore opens a badger store in dir, closed at cleanup.
func openStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newCache returns a cache over a fresh badger store, with the clock
// injected; it waits for background work and closes the store at cleanup.
func newCache(t testing.TB, clk *clock, cfg cache.Config) (*cache.Cache, *store.Store) {
	t.Helper()
	s := openStore(t, t.TempDir())
	cfg.Storage = s.Cache()
	if clk != nil {
		cfg.Now = clk.Now
	}
	c, err := cache.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Wait()
		s.Close()
	})
	return c, s
}

// get runs one request through h and returns the recorded response.
func request(h http.Handler, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func body(w *httptest.ResponseRecorder) string {
	b, _ := io.ReadAll(w.Result().Body)
	return string(b)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// fetch GETs url with client, with host as the Host header unless it is
// empty, and returns the response, its whole body, and the error of the
// request or of reading the body.
func fetch(client *http.Client, url, host string) (*http.Response, []byte, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, nil, err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// storeCache opens a cache over s with the clock injected, as an agent
// does on start: rebuilding its index from what s holds.
func storeCache(t testing.TB, s *store.Store, clk *clock) *cache.Cache {
	t.Helper()
	c, err := cache.New(cache.Config{Storage: s.Cache(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
