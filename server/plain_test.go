package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tern-edge/tern/routing"
)

func TestPlainRedirectsAndServes(t *testing.T) {
	checkGoroutines(t)
	tbl, err := routing.NewTable([]routing.Route{
		{Host: "secure.example", App: "s", RedirectHTTPS: true, Handler: http.NotFoundHandler()},
		{Host: "open.example", App: "o", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "plain "+r.Host)
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	router := &routing.Router{HTTPSPort: 8443}
	router.Swap(tbl)
	// What the ACME challenge handler does: answer its own path, pass the
	// rest on.
	challenge := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
				io.WriteString(w, "key-authorization")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	p, err := NewPlain(PlainConfig{Addr: "127.0.0.1:0", Handler: challenge(router)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: wait, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(host, path string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+p.Addr().String()+path, nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Location")
	}
	if code, body, _ := get("secure.example", "/.well-known/acme-challenge/tok"); code != 200 || body != "key-authorization" {
		t.Errorf("challenge on a redirecting host: %d %q", code, body)
	}
	if code, _, loc := get("secure.example", "/a?b=c"); code != 308 || loc != "https://secure.example:8443/a?b=c" {
		t.Errorf("redirect: %d %q", code, loc)
	}
	if code, body, _ := get("open.example", "/"); code != 200 || body != "plain open.example" {
		t.Errorf("plain route: %d %q", code, body)
	}
	if code, _, _ := get("nobody.example", "/"); code != 404 {
		t.Errorf("unrouted host: %d", code)
	}
	cancel()
	if err := recv(t, "Serve to return", done); err != nil {
		t.Fatal(err)
	}
	if err := p.Serve(context.Background()); err == nil {
		t.Error("a second Serve succeeded")
	}
}

func TestPlainCloseAndErrors(t *testing.T) {
	if _, err := NewPlain(PlainConfig{}); err == nil || err.Error() != "plain listener: no handler" {
		t.Errorf("no handler: %v", err)
	}
	if _, err := NewPlain(PlainConfig{Addr: "nope", Handler: http.NotFoundHandler()}); err == nil ||
		err.Error() != `plain listener address "nope": address nope: missing port in address` {
		t.Errorf("bad address: %v", err)
	}
	p, err := NewPlain(PlainConfig{Addr: "127.0.0.1:0", Handler: http.NotFoundHandler()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	addr := p.Addr().String()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	rebind(t, addr) // the port is free again
	if err := p.Serve(context.Background()); err == nil {
		t.Error("Serve after Close succeeded")
	}
}
