package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestErrorsHideInternals asks a node for a route whose origin is down and
// for a function that traps: each answer says only what failed and a
// request id, in the body and a header, and the log line with that id
// holds the upstream address and dial error, or the trap.
func TestErrorsHideInternals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildTern(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // connection refused from now on
	_, port, _ := net.SplitHostPort(closed)

	data := filepath.Join(dir, "data")
	conf := filepath.Join(dir, "tern.toml")
	os.WriteFile(conf, fmt.Appendf(nil, `version = 1
data = %q
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
[hub]
listen = "127.0.0.1:0"
[[origins]]
name = "down"
path = "/o/"
upstreams = ["http://%s"]
`, data, closed), 0o644)
	up := start(t, bin, "up", "--config", conf)
	base := up.await(t, `(https://localhost:\d+)`)
	client := tlsClient(t, data)

	app := filepath.Join(dir, "trap")
	os.MkdirAll(app, 0o755)
	copyFile(t, filepath.Join("..", "..", "guests", "faults", "trap.wasm"), filepath.Join(app, "trap.wasm"))
	os.WriteFile(filepath.Join(app, "tern.toml"), []byte("name = \"trap\"\nversion = \"1.0.0\"\nwasm = \"trap.wasm\"\n[[routes]]\npath = \"/trap\"\n"), 0o644)
	if code, text := runTern("deploy", "--data", data, app); code != 0 {
		t.Fatal(text)
	}

	get := func(path string) (int, string, string) {
		resp, err := client.Get(base + path)
		if err != nil {
			return 0, "", ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Tern-Request-Id"), string(b)
	}
	for _, c := range []struct {
		path   string
		status int
		public string
		logged []string // what the log line with the id holds
	}{
		{"/o/page", http.StatusBadGateway, "upstream unavailable", []string{`msg="origin failed"`, "origin=down", closed, "connection refused"}},
		{"/trap", http.StatusInternalServerError, "Internal Server Error", []string{`msg="function failed"`, "app=trap", "site=", "reason=trap"}},
	} {
		var code int
		var id, body string
		poll(t, 60*time.Second, func() bool {
			code, id, body = get(c.path)
			return code == c.status
		}, func() string { return fmt.Sprintf("GET %s: %d %q, want %d\n%s", c.path, code, body, c.status, up.logs) })
		if id == "" || !strings.Contains(body, c.public) || !strings.Contains(body, id) {
			t.Errorf("GET %s: body %q, request id header %q: want %q and the id", c.path, body, id, c.public)
		}
		for _, leak := range []string{"127.0.0.1", port, "dial", "refused", "wasm", "trap", "unreachable"} {
			if strings.Contains(body, leak) {
				t.Errorf("GET %s: body %q shows the client %q", c.path, body, leak)
			}
		}
		if id == "" {
			continue
		}
		line := regexp.MustCompile(`(?m)^.*` + regexp.QuoteMeta(c.logged[0]) + `.*request_id=` + id + `.*$`)
		var found string
		poll(t, 10*time.Second, func() bool {
			found = line.FindString(up.logs.String())
			return found != ""
		}, func() string { return fmt.Sprintf("no log line with request_id=%s:\n%s", id, up.logs) })
		for _, want := range c.logged {
			if !strings.Contains(found, want) {
				t.Errorf("GET %s: log line %q lacks %q", c.path, found, want)
			}
		}
	}
}
