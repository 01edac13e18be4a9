package cache_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
)

// accountPage answers with the page of whoever the cookie names, with the
// headers given: an origin that forgot to mark its per-user pages private.
func accountPage(hdr ...string) func(n int64, w http.ResponseWriter, r *http.Request) {
	return func(n int64, w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		who := "nobody"
		if c, err := r.Cookie("user"); err == nil {
			who = c.Value
		}
		w.Write([]byte("account page of " + who))
	}
}

// TestCredentialedResponseNeverHeuristicallyShared: a response with only
// Last-Modified, to a request with Cookie or Authorization, must not be
// served to the next client from heuristic freshness.
func TestCredentialedResponseNeverHeuristicallyShared(t *testing.T) {
	for _, cred := range []map[string]string{
		{"Cookie": "user=alice"},
		{"Authorization": "Bearer alice", "Cookie": "user=alice"},
	} {
		clk := newClock()
		lastMod := clk.Now().Add(-240 * time.Hour).UTC().Format(http.TimeFormat)
		o := newOrigin(t, clk, accountPage("Last-Modified", lastMod))
		c, _ := newCache(t, clk, cache.Config{})
		h := c.Handler(o)
		if got := body(request(h, "GET", "http://example.com/account", cred)); got != "account page of alice" {
			t.Fatalf("alice: %q", got)
		}
		c.Wait() // the fill is committed
		clk.Advance(time.Minute)
		w := request(h, "GET", "http://example.com/account", nil)
		if got := body(w); got != "account page of nobody" {
			t.Errorf("with %v stored, another client got %q (%s)", cred, got, w.Header().Get("Cache-Status"))
		}
	}
}

// TestCredentialedResponseNeverServedOffline: a response to a request with
// a cookie, stored with explicit freshness but not marked shareable, is
// not served stale under max_stale while the origin is down.
func TestCredentialedResponseNeverServedOffline(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk, accountPage("Cache-Control", "max-age=60"))
	c, _ := newCache(t, clk, cache.Config{MaxStale: 24 * time.Hour})
	h := c.Handler(o)
	request(h, "GET", "http://example.com/account", map[string]string{"Cookie": "user=alice"})
	c.Wait() // the fill is committed
	clk.Advance(time.Hour)
	o.down.Store(true)
	w := request(h, "GET", "http://example.com/account", nil)
	if got := body(w); w.Code < 500 || contains(got, "alice") {
		t.Errorf("origin down: %d %q (%s), want an error and not alice's page", w.Code, got, w.Header().Get("Cache-Status"))
	}
}

// TestCredentialedSharingRules: what the origin marks shareable is shared,
// and ShareCredentialed keeps RFC 9111's rules alone.
func TestCredentialedSharingRules(t *testing.T) {
	for _, c := range []struct {
		name   string
		hdr    []string
		cfg    cache.HandlerConfig
		maxSt  time.Duration
		down   bool
		shared bool
	}{
		{name: "public", hdr: []string{"Cache-Control", "public, max-age=600"}, shared: true},
		{name: "s-maxage", hdr: []string{"Cache-Control", "s-maxage=600"}, shared: true},
		{name: "public offline", hdr: []string{"Cache-Control", "public, max-age=60"}, maxSt: 24 * time.Hour, down: true, shared: true},
		{name: "max-age alone while fresh", hdr: []string{"Cache-Control", "max-age=600"}, shared: true},
		{name: "heuristic with ShareCredentialed", hdr: []string{"Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"}, cfg: cache.HandlerConfig{ShareCredentialed: true}, shared: true},
		{name: "offline with ShareCredentialed", hdr: []string{"Cache-Control", "max-age=60"}, cfg: cache.HandlerConfig{ShareCredentialed: true}, maxSt: 24 * time.Hour, down: true, shared: true},
		{name: "heuristic", hdr: []string{"Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"}},
		{name: "no headers", hdr: nil, maxSt: 24 * time.Hour, down: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk, accountPage(c.hdr...))
			cc, _ := newCache(t, clk, cache.Config{MaxStale: c.maxSt})
			h := cc.HandlerWith(o, c.cfg)
			request(h, "GET", "http://example.com/account", map[string]string{"Cookie": "user=alice"})
			cc.Wait() // the fill is committed
			if c.down {
				clk.Advance(time.Hour)
				o.down.Store(true)
			} else {
				clk.Advance(time.Second)
			}
			w := request(h, "GET", "http://example.com/account", nil)
			if shared := body(w) == "account page of alice"; shared != c.shared {
				t.Errorf("shared %v (%d %q, %s), want %v", shared, w.Code, body(w), w.Header().Get("Cache-Status"), c.shared)
			}
		})
	}
}
