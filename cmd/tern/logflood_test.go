package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLogFloodBounded sends 10,000 requests to a guest that traps on every
// one: the agent logs a few `function failed` lines per second and then
// how many it suppressed, at most 100 lines in all, and those lines
// account for every failure.
func TestLogFloodBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	const requests = 10000
	dir := t.TempDir()
	bin := buildTern(t)
	data := filepath.Join(dir, "data")
	up := start(t, bin, "up", "--data", data, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--hub-listen", "127.0.0.1:0")
	base := up.await(t, `(https://localhost:\d+)`)
	client := tlsClient(t, data)

	app := filepath.Join(dir, "trap")
	os.MkdirAll(app, 0o755)
	copyFile(t, filepath.Join("..", "..", "guests", "faults", "trap.wasm"), filepath.Join(app, "trap.wasm"))
	os.WriteFile(filepath.Join(app, "tern.toml"), []byte("name = \"trap\"\nversion = \"1.0.0\"\nwasm = \"trap.wasm\"\n[[routes]]\npath = \"/trap\"\n"), 0o644)
	if code, text := runTern("deploy", "--data", data, app); code != 0 {
		t.Fatal(text)
	}
	status := func() int {
		resp, err := client.Get(base + "/trap")
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// The probe's own failures can fall into the first suppressed count
	// logged after this point, so the log may account for up to that many
	// more than the test's requests.
	probed := 0
	poll(t, 60*time.Second, func() bool {
		if status() == http.StatusInternalServerError {
			probed++
			return true
		}
		return false
	}, func() string { return fmt.Sprintf("trap app not serving 500s\n%s", up.logs) })
	before := len(up.logs.String())

	var sent, failed atomic.Int64
	var wg gosync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for sent.Add(1) <= requests {
				if status() == http.StatusInternalServerError {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() != requests {
		t.Fatalf("%d of %d requests failed with 500", failed.Load(), requests)
	}

	// The suppressed count of the last interval is logged when it ends.
	passed := regexp.MustCompile(`msg="function failed".*app=trap`)
	suppressed := regexp.MustCompile(`msg="repeated log lines suppressed" .*app=trap .*of="function failed" suppressed=(\d+)`)
	var flood []string
	accounted := 0
	poll(t, 10*time.Second, func() bool {
		flood = strings.Split(strings.TrimSpace(up.logs.String()[before:]), "\n")
		accounted = 0
		for _, line := range flood {
			if passed.MatchString(line) {
				accounted++
			} else if m := suppressed.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[1])
				accounted += n
			}
		}
		return accounted >= requests && accounted <= requests+probed
	}, func() string {
		return fmt.Sprintf("log accounts for %d of %d failures (+%d probes):\n%s", accounted, requests, probed, strings.Join(flood, "\n"))
	})
	if len(flood) > 100 {
		t.Fatalf("%d failing requests wrote %d log lines, want at most 100:\n%s", requests, len(flood), strings.Join(flood[:100], "\n"))
	}
	t.Logf("%d failing requests: %d log lines", requests, len(flood))
}

// tlsClient is an HTTPS client that trusts the local CA in a data dir.
func tlsClient(t *testing.T, data string) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(data, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		MaxIdleConnsPerHost: 16,
	}}
}
