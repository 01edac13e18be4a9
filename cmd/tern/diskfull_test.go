package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tern-edge/tern/internal/testfs"
)

// TestDiskFull runs `tern up` with its data on a 48 MiB file system and
// fills it to 1.5 MiB free, under its 2 MiB reserve: a deploy is refused
// with an error naming the disk, a large cache miss still reaches the
// client whole (and is counted as a store failure), /readyz reports the
// pressure, small misses still answer, and the cache evicts; once space
// is back a deploy works without a restart, and after a restart every
// app and cache entry serves the same bytes.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	small := testfs.Small(t, 48<<20)
	dir := t.TempDir()
	bin := buildTern(t)

	const bigSize = 5<<20 + 512<<10
	big := make([]byte, bigSize)
	for i := range big {
		big[i] = byte(i ^ i>>13)
	}
	smallBody := func(path string) []byte { return bytes.Repeat([]byte(path), 1000/len(path)+1)[:1000] }
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		if r.URL.Path == "/o/big" {
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			w.Write(big)
			return
		}
		w.Write(smallBody(r.URL.Path))
	}))
	defer origin.Close()

	data := filepath.Join(small, "data")
	conf := filepath.Join(dir, "tern.toml")
	os.WriteFile(conf, fmt.Appendf(nil, `version = 1
data = %q
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
[hub]
listen = "127.0.0.1:0"
[store]
min_free = "2MiB"
[[origins]]
name = "site"
path = "/o/"
upstreams = [%q]
`, data, origin.URL), 0o644)
	up := func() (*process, string, string) {
		p := start(t, bin, "up", "--config", conf)
		addr := p.await(t, `component=http addr=(\S+)`)
		admin := p.await(t, `component=admin addr=(\S+)`)
		p.await(t, `(Tern is up)`)
		return p, addr, admin
	}
	p, addr, admin := up()

	caPEM, err := os.ReadFile(filepath.Join(data, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	h1 := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
	}}
	h2 := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, ForceAttemptHTTP2: true,
	}}
	client := h1
	get := func(base, path string) (int, http.Header, []byte) {
		t.Helper()
		req, err := http.NewRequest("GET", base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		// A host that outlives the listener's port: cache keys name it.
		req.Host = "cdn.example"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, p.logs)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: status %d, body cut after %d bytes: %v\n%s", path, resp.StatusCode, len(b), err, p.logs)
		}
		return resp.StatusCode, resp.Header, b
	}
	want := func(base, path string, body []byte, status string) {
		t.Helper()
		code, h, b := get(base, path)
		if code != 200 || !bytes.Equal(b, body) || !strings.Contains(h.Get("Cache-Status"), status) {
			t.Fatalf("GET %s: %d, %d bytes (want %d), Cache-Status %q (want %q)\n%s", path, code, len(b), len(body), h.Get("Cache-Status"), status, p.logs)
		}
	}
	public := "https://" + addr
	adminURL := "http://" + admin
	for i := range 10 {
		path := fmt.Sprintf("/o/before/%d", i)
		want(public, path, smallBody(path), "fwd=")
		want(public, path, smallBody(path), "hit")
	}

	// Full: 1.5 MiB free, under the 2 MiB reserve.
	filler := testfs.Fill(t, small, 1536<<10)
	code, out := runTern("deploy", "--data", data, filepath.Join("..", "..", "guests", "echo"))
	if code == 0 || !strings.Contains(out, "disk full") || !strings.Contains(out, filepath.Join(data, "hub")) ||
		!regexp.MustCompile(`[\d.]+ MiB free; [\d.]+ MiB needed above the reserve of 2\.0 MiB`).MatchString(out) {
		t.Fatalf("deploy on a full disk: exit %d\n%s", code, out)
	}
	want(public, "/o/big", big, "fwd=")
	client = h2 // the same over HTTP/2
	want(public, "/o/big", big, "fwd=")
	client = h1
	poll(t, 10*time.Second, func() bool { return metric(t, adminURL, "tern_cache_store_failures_total") >= 2 },
		func() string { return "no store failure counted\n" + p.logs.String() })
	poll(t, 10*time.Second, func() bool {
		code, body := readyz(t, adminURL)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "disk pressure")
	}, func() string { _, body := readyz(t, adminURL); return "readyz on a full disk: " + body })
	for i := range 10 {
		path := fmt.Sprintf("/o/during/%d", i)
		want(public, path, smallBody(path), "fwd=")
	}
	// No space at all: small misses still answer, stored or not.
	filler0 := testfs.Fill(t, small, 0)
	for i := range 10 {
		path := fmt.Sprintf("/o/full/%d", i)
		want(public, path, smallBody(path), "fwd=")
	}

	// Space back: deploys work again, without a restart.
	for _, f := range []string{filler0, filler} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, 10*time.Second, func() bool { code, _ := readyz(t, adminURL); return code == http.StatusOK },
		func() string { _, body := readyz(t, adminURL); return "readyz with space back: " + body })
	app := filepath.Join(dir, "app")
	os.MkdirAll(app, 0o755)
	copyFile(t, filepath.Join("..", "..", "guests", "hello", "hello.wasm"), filepath.Join(app, "hello.wasm"))
	os.WriteFile(filepath.Join(app, "tern.toml"), []byte("name = \"later\"\nversion = \"1.0.0\"\nwasm = \"hello.wasm\"\n[[routes]]\npath = \"/later\"\n"), 0o644)
	if code, out := runTern("deploy", "--data", data, app); code != 0 {
		t.Fatalf("deploy with space back: exit %d\n%s\n%s", code, out, p.logs)
	}
	poll(t, 60*time.Second, func() bool { code, _, _ := get(public, "/later"); return code == 200 },
		func() string { return "the app deployed with space back is not served\n" + p.logs.String() })
	want(public, "/o/big", big, "fwd=")
	want(public, "/o/big", big, "hit")
	for i := range 10 {
		path := fmt.Sprintf("/o/after/%d", i)
		want(public, path, smallBody(path), "fwd=")
		want(public, path, smallBody(path), "hit")
	}

	// Restarted on the same data: every app and entry as it was.
	p.cmd.Process.Signal(os.Interrupt)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("tern up exited with %v\n%s", err, p.logs)
	}
	first := p.logs
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the first run's log:\n%s", first)
		}
	})
	p, addr, _ = up()
	public = "https://" + addr
	if code, _, b := get(public, "/hello"); code != 200 || !strings.Contains(string(b), "Hello") {
		t.Fatalf("/hello after restart: %d %q", code, b)
	}
	if code, _, b := get(public, "/later"); code != 200 || !strings.Contains(string(b), "Hello") {
		t.Fatalf("/later after restart: %d %q\n%s", code, b, p.logs)
	}
	for i := range 10 {
		path := fmt.Sprintf("/o/after/%d", i)
		want(public, path, smallBody(path), "hit")
		// Evicted for the reserve, or still there: the same bytes.
		for _, dir := range []string{"before", "during", "full"} {
			path = fmt.Sprintf("/o/%s/%d", dir, i)
			want(public, path, smallBody(path), "")
		}
	}
	want(public, "/o/big", big, "hit")
}

// metric returns the value of an unlabelled metric on the admin listener,
// or -1 when it is not there.
func metric(t *testing.T, admin, name string) float64 {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	var v float64
	fmt.Sscan(string(m[1]), &v)
	return v
}

func readyz(t *testing.T, admin string) (int, string) {
	t.Helper()
	resp, err := http.Get(admin + "/readyz?verbose")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
