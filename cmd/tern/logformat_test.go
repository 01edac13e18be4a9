package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogFormatJSON runs `tern up --log-format json` with an origin that
// is down: every log line is one JSON object, and the line about the
// failed origin names the site, the origin and the id the client was
// given.
func TestLogFormatJSON(t *testing.T) {
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
	ln.Close()
	data := filepath.Join(dir, "data")
	conf := filepath.Join(dir, "tern.toml")
	os.WriteFile(conf, fmt.Appendf(nil, "version = 1\ndata = %q\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nsite = \"pop-1\"\n"+
		"[hub]\nlisten = \"127.0.0.1:0\"\n[[origins]]\nname = \"down\"\npath = \"/o/\"\nupstreams = [\"http://%s\"]\n", data, closed), 0o644)
	up := start(t, bin, "up", "--config", conf, "--log-format", "json")
	base := up.await(t, `(https://localhost:\d+)`)
	client := tlsClient(t, data)

	var id string
	poll(t, 30*time.Second, func() bool {
		resp, err := client.Get(base + "/o/x")
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		id = resp.Header.Get("Tern-Request-Id")
		return resp.StatusCode == http.StatusBadGateway
	}, func() string { return "no 502 from the down origin\n" + up.logs.String() })

	var failed map[string]any
	poll(t, 10*time.Second, func() bool {
		for _, line := range strings.Split(strings.TrimSpace(up.logs.String()), "\n") {
			var rec map[string]any
			if !strings.HasPrefix(line, "{") {
				continue // the banner, on stdout
			}
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line is not JSON: %v\n%s", err, line)
			}
			if rec["msg"] == "origin failed" && rec["request_id"] == id {
				failed = rec
			}
		}
		return failed != nil
	}, func() string { return fmt.Sprintf("no origin failed line with request_id %s:\n%s", id, up.logs) })
	for k, want := range map[string]string{"site": "pop-1", "origin": "down", "level": "WARN"} {
		if failed[k] != want {
			t.Errorf("origin failed line: %s = %v, want %q (%v)", k, failed[k], want, failed)
		}
	}
	if !strings.Contains(fmt.Sprint(failed["err"]), closed) {
		t.Errorf("origin failed line: err %v does not name the upstream %s", failed["err"], closed)
	}
	// Lines before the first request are JSON as well: the front door's.
	if !strings.Contains(up.logs.String(), `"component":"http"`) {
		t.Errorf("no JSON line from the listener:\n%s", up.logs)
	}
}
