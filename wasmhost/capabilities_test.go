package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pongServer answers "pong" as text/plain and counts the requests it got
// and the X-From-Guest values it saw.
type pongServer struct {
	*httptest.Server
	hits      atomic.Int64
	fromGuest atomic.Value
}

func newPongServer(t *testing.T, h http.HandlerFunc) *pongServer {
	s := &pongServer{}
	s.fromGuest.Store("")
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.fromGuest.Store(r.Header.Get("X-From-Guest"))
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "pong")
	}))
	t.Cleanup(s.Close)
	return s
}

func TestOutboundHTTP(t *testing.T) {
	pong := newPongServer(t, nil)
	other := newPongServer(t, nil)
	redirect := newPongServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/stolen", http.StatusFound)
	})
	big := newPongServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, strings.Repeat("x", 2048))
	})
	slow := newPongServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	pongHost := strings.TrimPrefix(pong.URL, "http://")

	tests := []struct {
		name    string
		allowed []string
		limits  Limits
		target  string
		status  int
		body    string
		hits    *pongServer // must have been reached exactly once
		nohits  *pongServer // must not have been reached
	}{
		{
			name: "security: denied by default", target: pong.URL + "/ping",
			status: 200, body: "error=7\n", nohits: pong,
		},
		{
			name: "allowed url", allowed: []string{pong.URL}, target: pong.URL + "/ping",
			status: 200, body: "status=200\ncontent-type=text/plain\nbody=pong", hits: pong,
		},
		{
			name: "allowed bare host:port", allowed: []string{pongHost}, target: pong.URL + "/ping",
			status: 200, body: "status=200\ncontent-type=text/plain\nbody=pong", hits: pong,
		},
		{
			name: "allow-all", allowed: []string{"insecure:allow-all"}, target: pong.URL + "/ping",
			status: 200, body: "status=200\ncontent-type=text/plain\nbody=pong", hits: pong,
		},
		{
			name: "security: another port of an allowed host", allowed: []string{pong.URL}, target: other.URL + "/ping",
			status: 200, body: "error=7\n", nohits: other,
		},
		{
			name: "security: redirect out of the allowed hosts", allowed: []string{redirect.URL}, target: redirect.URL + "/go",
			status: 200, body: "error=7\n", nohits: other,
		},
		{
			name: "invalid url", allowed: []string{"insecure:allow-all"}, target: "not-a-url",
			status: 200, body: "error=10\n",
		},
		{
			name: "response over max_response", allowed: []string{big.URL}, limits: Limits{MaxResponseBytes: 1024},
			target: big.URL + "/", status: 200, body: "error=11\n",
		},
		{
			name: "bounded by the request deadline", allowed: []string{slow.URL}, limits: Limits{Timeout: 200 * time.Millisecond},
			target: slow.URL + "/", status: 504,
		},
	}
	h := newHost(t)
	wasm := guest(t, "caps/fetch.wasm")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range []*pongServer{tt.hits, tt.nohits} {
				if s != nil {
					s.hits.Store(0)
				}
			}
			app, err := h.Load(context.Background(), AppConfig{Name: "fetch", Wasm: wasm, Limits: tt.limits, AllowedHosts: tt.allowed})
			must(t, err)
			defer app.Close(context.Background())
			w := serve(app, httptest.NewRequest("GET", "/fetch?"+tt.target, nil), "/fetch")
			equal(t, "status", w.Code, tt.status)
			if tt.body != "" {
				equal(t, "body", w.Body.String(), tt.body)
			}
			if tt.hits != nil {
				equal(t, "requests reaching the server", tt.hits.hits.Load(), 1)
				equal(t, "X-From-Guest", tt.hits.fromGuest.Load().(string), "tern")
			}
			if tt.nohits != nil {
				equal(t, "requests reaching the server", tt.nohits.hits.Load(), 0)
			}
		})
	}
	if !logHas(h.log.String(), `"app":"fetch"`, "outbound request denied") {
		t.Errorf("no denial logged in:\n%s", h.log.String())
	}
}

func TestAllowList(t *testing.T) {
	tests := []struct {
		allowed []string
		url     string
		want    bool
	}{
		{nil, "https://example.com/", false},
		{[]string{"https://example.com"}, "https://example.com/a?b", true},
		{[]string{"https://example.com"}, "https://EXAMPLE.com:443/", true},
		{[]string{"https://example.com"}, "http://example.com/", false},
		{[]string{"https://example.com"}, "https://example.com:8443/", false},
		{[]string{"https://example.com"}, "https://api.example.com/", false},
		{[]string{"https://example.com"}, "https://example.com.evil.net/", false},
		{[]string{"https://example.com"}, "https://example.com@evil.net/", false},
		{[]string{"http://10.0.0.2:8080"}, "http://10.0.0.2:8080/x", true},
		{[]string{"http://10.0.0.2:8080"}, "http://10.0.0.2/x", false},
		{[]string{"example.com"}, "http://example.com/", true},
		{[]string{"example.com"}, "https://example.com/", true},
		{[]string{"example.com"}, "https://example.com:444/", false},
		{[]string{"example.com:444"}, "https://example.com:444/", true},
		{[]string{"[2001:db8::1]:8080"}, "http://[2001:db8::1]:8080/", true},
		{[]string{"insecure:allow-all"}, "http://anything.example:1/", true},
	}
	for _, tt := range tests {
		l, err := parseAllowedHosts("demo", tt.allowed)
		must(t, err)
		u, err := url.Parse(tt.url)
		must(t, err)
		if got := l.allows(u); got != tt.want {
			t.Errorf("%q allows %s = %v, want %v", tt.allowed, tt.url, got, tt.want)
		}
	}

	for _, bad := range []string{"", "ftp://example.com", "https://example.com/path", "https://user@example.com", "https://"} {
		if _, err := parseAllowedHosts("demo", []string{bad}); err == nil || !strings.HasPrefix(err.Error(), fmt.Sprintf("app demo: allowed host %q: ", bad)) {
			t.Errorf("parseAllowedHosts(%q) error = %v", bad, err)
		}
	}
}

func TestParseHeaderString(t *testing.T) {
	h, ok := parseHeaderString("a:1\nB: two\r\na:3\n\n")
	if !ok || h.Get("A") != "1" || h.Values("A")[1] != "3" || h.Get("B") != "two" {
		t.Fatalf("parseHeaderString = %v, %v", h, ok)
	}
	for _, bad := range []string{"no colon", "bad name:x", "x:\x01"} {
		if _, ok := parseHeaderString(bad); ok {
			t.Errorf("parseHeaderString(%q) accepted", bad)
		}
	}
}

// memKV is an in-memory KV, with an error to fail with on demand.
type memKV struct {
	mu   sync.Mutex
	m    map[[2]string][]byte
	fail error
}

func newMemKV() *memKV { return &memKV{m: make(map[[2]string][]byte)} }

func (s *memKV) Get(_ context.Context, ns, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	v, ok := s.m[[2]string{ns, key}]
	if !ok {
		return nil, fmt.Errorf("%s/%s: %w", ns, key, ErrKeyNotFound)
	}
	return v, nil
}

func (s *memKV) Set(_ context.Context, ns, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.m[[2]string{ns, key}] = value
	return nil
}

func (s *memKV) Delete(_ context.Context, ns, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	delete(s.m, [2]string{ns, key})
	return nil
}

var _ KV = (*memKV)(nil)

func TestKV(t *testing.T) {
	h := newHost(t)
	wasm := guest(t, "caps/kv.wasm")
	store := newMemKV()
	load := func(name string, kv KV) *App {
		t.Helper()
		app, err := h.Load(context.Background(), AppConfig{Name: name, Wasm: wasm, KV: kv})
		must(t, err)
		t.Cleanup(func() { app.Close(context.Background()) })
		return app
	}
	call := func(app *App, query string) string {
		t.Helper()
		w := serve(app, httptest.NewRequest("GET", "/kv?"+query, nil), "/kv")
		equal(t, "status", w.Code, 200)
		return w.Body.String()
	}

	denied := load("denied", nil)
	equal(t, "security: denied by default", call(denied, "get&greeting"), "error=1\n")
	equal(t, "set denied", call(denied, "set&greeting&hi"), "error=1\n")

	a := load("a", store)
	equal(t, "set", call(a, "set&greeting&hello"), "ok\n")
	equal(t, "get", call(a, "get&greeting"), "value=hello\n")
	equal(t, "get absent", call(a, "get&nothing"), "error=2\n")
	equal(t, "empty key", call(a, "get"), "error=5\n")

	b := load("b", store)
	equal(t, "security: another app's namespace", call(b, "get&greeting"), "error=2\n")
	equal(t, "same key, own value", call(b, "set&greeting&howdy"), "ok\n")
	equal(t, "a unchanged", call(a, "get&greeting"), "value=hello\n")

	a2 := load("a", store)
	equal(t, "a new version shares its app's namespace", call(a2, "get&greeting"), "value=hello\n")

	must(t, store.Set(context.Background(), "a", "big", []byte(strings.Repeat("x", 5000))))
	equal(t, "value over the guest's buffer", call(a, "get&big"), "error=4\n")

	equal(t, "delete", call(a, "delete&greeting"), "ok\n")
	equal(t, "get deleted", call(a, "get&greeting"), "error=2\n")
	equal(t, "delete absent", call(a, "delete&greeting"), "ok\n")

	store.mu.Lock()
	store.fail = errors.New("disk on fire")
	store.mu.Unlock()
	equal(t, "store failure", call(a, "get&greeting"), "error=7\n")
	if !logHas(h.log.String(), `"app":"a"`, "key-value store failed", "disk on fire") {
		t.Errorf("store failure not logged in:\n%s", h.log.String())
	}
}
