package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// startAdmin serves an admin listener on a loopback port; the test's end
// stops it.
func startAdmin(t *testing.T, reg prometheus.Gatherer, mount func(*Admin)) (base string) {
	t.Helper()
	a, err := NewAdmin("127.0.0.1:0", reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mount != nil {
		mount(a)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := recv(t, "admin Serve to return", done); err != nil {
			t.Errorf("admin Serve = %v", err)
		}
	})
	return "http://" + a.Addr().String()
}

func adminGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: wait}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestAdminMetrics drives requests over every protocol through Instrument
// and reads them back from the admin listener.
func TestAdminMetrics(t *testing.T) {
	checkGoroutines(t)
	reg := prometheus.NewRegistry()
	appOf := func(r *http.Request) string {
		if r.URL.Path == "/hello" {
			return "hello"
		}
		return ""
	}
	ts := startServer(t, Config{Handler: Instrument(reg, appOf, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hello" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "hi")
	}))})
	admin := startAdmin(t, reg, func(a *Admin) {
		a.Handle("GET /debug/extra", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "extra") }))
	})
	defer http.DefaultTransport.(*http.Transport).CloseIdleConnections()

	for _, c := range clients(t, ts.pool) {
		for _, path := range []string{"/hello", "/hello", "/missing"} {
			if _, _, err := c.get(ts.url + path); err != nil {
				t.Fatalf("%s %s: %v", c.name, path, err)
			}
		}
	}

	code, body := adminGet(t, admin+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, proto := range []string{"1.1", "2", "3"} {
		hasLines(t, body,
			`tern_requests_total{app="hello",code="200",proto="`+proto+`"} 2`,
			`tern_requests_total{app="none",code="404",proto="`+proto+`"} 1`)
	}
	hasLines(t, body, `tern_request_seconds_count{app="hello"} 6`)

	if code, body := adminGet(t, admin+"/healthz"); code != http.StatusOK || body != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := adminGet(t, admin+"/debug/extra"); code != http.StatusOK || body != "extra" {
		t.Errorf("mounted handler: %d %q", code, body)
	}
	if code, _ := adminGet(t, admin+"/nothing"); code != http.StatusNotFound {
		t.Errorf("unknown path: %d", code)
	}
}

func TestAdminErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewAdmin("9090", reg, nil); err == nil || err.Error() != `admin address "9090": address 9090: missing port in address` {
		t.Errorf("NewAdmin bad address = %v", err)
	}
	if _, err := NewAdmin("", nil, nil); err == nil || err.Error() != "admin: no metrics gatherer" {
		t.Errorf("NewAdmin nil gatherer = %v", err)
	}

	a, err := NewAdmin("127.0.0.1:0", reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	addr := a.Addr().String()
	b, err := NewAdmin(addr, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Listen(); err == nil || !strings.HasPrefix(err.Error(), "listen admin "+addr+": ") {
		t.Errorf("Listen on a taken port = %v, want an error naming %s", err, addr)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Listen(); err != nil {
		t.Errorf("Close did not release %s: %v", addr, err)
	}
	b.Close()
}

func TestAdminDefaultAddr(t *testing.T) {
	a, err := NewAdmin("", prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.addr != DefaultAdminAddr {
		t.Errorf("addr %q, want %q", a.addr, DefaultAdminAddr)
	}
}
