package routing

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRouteOptions(t *testing.T) {
	// Spelled as a manifest might: the table canonicalises the names.
	hsts := http.Header{"strict-transport-security": {"max-age=63072000"}, "X-Frame-Options": {"DENY"}}
	tbl, err := NewTable([]Route{
		{Host: "red.example", App: "red", Handler: named("red"), RedirectHTTPS: true, Headers: hsts},
		{Host: "api.example", App: "api", Handler: named("api"), Scheme: SchemeHTTPS},
		{Host: "plain.example", App: "plain", Handler: named("plain"), Scheme: SchemeHTTP},
		{Host: "early.example", App: "early", Handler: named("early"), EarlyData: true},
		{Host: "any.example", App: "any", Handler: named("any")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var router Router
	router.Swap(tbl)
	router.HTTPSPort = 8443

	established := &tls.ConnectionState{HandshakeComplete: true}
	early := &tls.ConnectionState{HandshakeComplete: false}
	tests := []struct {
		name     string
		method   string
		url      string
		tls      *tls.ConnectionState
		code     int
		body     string
		location string
		header   string // Strict-Transport-Security
	}{
		{"plain request redirected", "POST", "http://red.example:8080/a/b?c=d", nil, 308, "", "https://red.example:8443/a/b?c=d", ""},
		{"redirecting route over https adds headers", "GET", "https://red.example/", established, 200, "red", "", "max-age=63072000"},
		{"https-only route refuses plain", "GET", "http://api.example/x", nil, 403, "this route is served over https only\n", "", ""},
		{"https-only route over https", "GET", "https://api.example/x", established, 200, "api", "", ""},
		{"http-only route refuses https", "GET", "https://plain.example/", established, 403, "this route is served over http only\n", "", ""},
		{"http-only route over http", "GET", "http://plain.example/", nil, 200, "plain", "", ""},
		{"any scheme over http", "GET", "http://any.example/", nil, 200, "any", "", ""},
		{"early data refused by default", "GET", "https://any.example/", early, 425, "request not accepted in early data\n", "", ""},
		{"early data GET on an opted-in route", "GET", "https://early.example/", early, 200, "early", "", ""},
		{"early data HEAD on an opted-in route", "HEAD", "https://early.example/", early, 200, "", "", ""},
		{"early data POST refused even when opted in", "POST", "https://early.example/", early, 425, "request not accepted in early data\n", "", ""},
		{"after the handshake POST is fine", "POST", "https://early.example/", established, 200, "early", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.url, nil)
			req.TLS = tt.tls
			rec := httptest.NewRecorder()
			router.ServeHTTP(rec, req)
			if rec.Code != tt.code {
				t.Fatalf("code = %d, want %d (body %q)", rec.Code, tt.code, rec.Body.String())
			}
			if tt.method != "HEAD" && tt.location == "" && rec.Body.String() != tt.body {
				t.Errorf("body = %q, want %q", rec.Body.String(), tt.body)
			}
			if got := rec.Header().Get("Location"); got != tt.location {
				t.Errorf("Location = %q, want %q", got, tt.location)
			}
			if got := rec.Header().Get("Strict-Transport-Security"); got != tt.header {
				t.Errorf("Strict-Transport-Security = %q, want %q", got, tt.header)
			}
		})
	}
}

func TestRedirectDefaultPortAndIPv6(t *testing.T) {
	tbl, err := NewTable([]Route{{App: "a", Handler: named("a"), RedirectHTTPS: true}})
	if err != nil {
		t.Fatal(err)
	}
	var router Router
	router.Swap(tbl)
	for host, want := range map[string]string{
		"example.com":    "https://example.com/p",
		"example.com:80": "https://example.com/p",
		"[::1]:80":       "https://[::1]/p",
	} {
		req := httptest.NewRequest("GET", "http://x/p", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		router.ServeHTTP(rec, req)
		if got := rec.Header().Get("Location"); got != want {
			t.Errorf("Host %q: Location = %q, want %q", host, got, want)
		}
	}
}

func TestHandlerMayAppendToRouteHeaders(t *testing.T) {
	h := http.Header{"Vary": {"Accept"}}
	tbl, err := NewTable([]Route{{App: "a", Headers: h, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Add("Vary", "Cookie")
	})}})
	if err != nil {
		t.Fatal(err)
	}
	var router Router
	router.Swap(tbl)
	for range 2 {
		rec := httptest.NewRecorder()
		router.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if got := rec.Header().Values("Vary"); len(got) != 2 {
			t.Fatalf("Vary = %q, want [Accept Cookie]", got)
		}
	}
	if len(h["Vary"]) != 1 {
		t.Fatalf("a handler changed the route's headers: %q", h["Vary"])
	}
}

func TestRouteOptionErrors(t *testing.T) {
	tests := []struct {
		name  string
		route Route
		want  string
	}{
		{"unknown scheme", Route{App: "a", Host: "h.example", Scheme: "ftp"}, `app a: route h.example/: scheme "ftp": want "http", "https" or empty`},
		{"redirect to https on an http-only route", Route{App: "a", Path: "/x", RedirectHTTPS: true, Scheme: SchemeHTTP}, `app a: route /x: redirect_https contradicts scheme "http"`},
		{"header name with a space", Route{App: "a", Headers: http.Header{"X Bad": {"1"}}}, `app a: route /: header name "X Bad" is not a token`},
		{"header splitting", Route{App: "a", Headers: http.Header{"X-A": {"1\r\nSet-Cookie: x"}}}, `app a: route /: header X-A: value contains CR, LF or NUL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTable([]Route{tt.route})
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestClaimsHost(t *testing.T) {
	tbl, err := NewTable([]Route{
		{App: "any"},
		{Host: "shop.example", Path: "/cart", App: "shop"},
		{Host: "*.apps.example", App: "wild"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"shop.example":        true, // any path counts
		"SHOP.example.":       true,
		"a.apps.example":      true,
		"a.b.apps.example":    true,
		"apps.example":        false, // a wildcard does not cover its own apex
		"other.example":       false, // only the any-host route matches: no certificate
		"":                    false,
		"shop.example:443":    true,
		"xshop.example":       false,
		"a.apps.example.evil": false,
	} {
		if got := tbl.ClaimsHost(host); got != want {
			t.Errorf("ClaimsHost(%q) = %v, want %v", host, got, want)
		}
	}
	var router Router
	if router.ClaimsHost("shop.example") {
		t.Error("a router without a table claims a host")
	}
	router.Swap(tbl)
	if !router.ClaimsHost("shop.example") {
		t.Error("router does not claim its table's host")
	}
}

func TestWildcardConflictsAndPrecedence(t *testing.T) {
	if _, err := NewTable([]Route{{Host: "*.Example.com", App: "x"}, {Host: "*.example.com", Path: "/", App: "y"}}); err == nil ||
		err.Error() != `route conflict: apps x and y both claim host "*.example.com" path "/"` {
		t.Fatalf("two apps on one wildcard: %v", err)
	}
	// An exact host under another app's wildcard is not a conflict: the
	// exact host wins for its name, and only for it.
	tbl, err := NewTable([]Route{
		{Host: "*.example.com", App: "wild", Handler: named("wild")},
		{Host: "a.example.com", Path: "/api", App: "exact", Handler: named("exact")},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ host, path, want string }{
		{"a.example.com", "/api/x", "exact"},
		{"a.example.com", "/", "wild"}, // the exact host has no route for "/": fall back to the wildcard
		{"b.example.com", "/api", "wild"},
	} {
		if r, ok := tbl.Match(tt.host, tt.path); !ok || r.App != tt.want {
			t.Errorf("Match(%q, %q) = %q, %v; want %q", tt.host, tt.path, r.App, ok, tt.want)
		}
	}
}
