package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRun drives each mode against an in-process HTTPS server for a moment,
// so that the generator keeps working as its dependencies move. HTTP/3 is
// left to the benchmark script: httptest has no QUIC listener.
func TestRun(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	for _, proto := range []string{"h2", "handshake"} {
		var out bytes.Buffer
		if err := run([]string{"-proto", proto, "-c", "4", "-conns", "2", "-d", "100ms", srv.URL + "/"}, &out); err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if !strings.Contains(out.String(), "proto="+proto) || !strings.Contains(out.String(), "errors=0") {
			t.Errorf("%s: %s", proto, out.String())
		}
	}
	if err := run([]string{"-proto", "h9", "https://x/"}, new(bytes.Buffer)); err == nil || err.Error() != `-proto "h9": want h2, h3 or handshake` {
		t.Errorf("unknown protocol: %v", err)
	}
}
