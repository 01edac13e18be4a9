package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// TestEndToEnd builds the tern binary and drives it as a user would:
// `tern up`, `tern deploy` of a guest, then requests over HTTP/1.1, HTTP/2
// and HTTP/3.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildTern(t)
	data := filepath.Join(dir, "data")

	up := exec.Command(bin, "up", "--data", data, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--hub-listen", "127.0.0.1:0")
	stdout, err := up.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	up.Stderr = logs
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	defer func() {
		up.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("tern up exited with %v\n%s", err, logs)
			}
		case <-time.After(20 * time.Second):
			up.Process.Kill()
			t.Errorf("tern up did not stop on SIGINT\n%s", logs)
		}
	}()

	// The banner names the URL to try.
	base := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`https://localhost:\d+`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindString(sc.Text()); m != "" {
				select {
				case base <- m:
				default:
				}
			}
		}
	}()
	var url string
	select {
	case url = <-base:
	case err := <-exited:
		t.Fatalf("tern up exited early: %v\n%s", err, logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("no banner from tern up\n%s", logs)
	}

	caPEM, err := os.ReadFile(filepath.Join(data, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
	}}
	h2 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true,
	}}
	h3tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer h3tr.Close()
	h3 := &http.Client{Timeout: 10 * time.Second, Transport: h3tr}

	// The sample app serves as soon as the banner shows.
	resp, body := do(t, h1, "GET", url+"/hello", "")
	if resp.StatusCode != 200 || !strings.Contains(body, "Hello") {
		t.Fatalf("sample /hello = %d %q", resp.StatusCode, body)
	}

	// Deploy the echo guest with no flags but --data, as a newcomer would.
	var out strings.Builder
	code := run(context.Background(), []string{"deploy", "--data", data, filepath.Join("..", "..", "guests", "echo")}, &out, &out)
	if code != 0 {
		t.Fatalf("tern deploy: exit %d\n%s", code, out.String())
	}
	// deploy returns once the agent serves the release, so the banner's
	// "tern deploy ./guests/echo && curl …/echo" works as written.
	if !strings.Contains(out.String(), "serving on 1 of 1 live agents") {
		t.Fatalf("tern deploy did not report the agent serving:\n%s", out.String())
	}
	if resp, body := do(t, h1, "GET", url+"/echo", ""); resp.StatusCode != 200 {
		t.Fatalf("echo not served when deploy returned: %d %s\n%s", resp.StatusCode, body, logs)
	}

	for _, tc := range []struct {
		name   string
		client *http.Client
		proto  int
	}{{"HTTP/1.1", h1, 1}, {"HTTP/2", h2, 2}, {"HTTP/3", h3, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, tc.client, "POST", url+"/echo/a/b?x=1&y=two", "ping")
			if resp.ProtoMajor != tc.proto {
				t.Fatalf("proto %s, want major %d", resp.Proto, tc.proto)
			}
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("echo body %q: %v", body, err)
			}
			for k, want := range map[string]string{"method": "POST", "body": "ping", "script_name": "/echo", "path_info": "/a/b", "query": "x=1&y=two"} {
				if got[k] != want {
					t.Errorf("echo %s = %v, want %q (body %s)", k, got[k], want, body)
				}
			}
			if tc.proto < 3 {
				if alt := resp.Header.Get("Alt-Svc"); !strings.HasPrefix(alt, `h3=":`) {
					t.Errorf("Alt-Svc = %q, want h3", alt)
				}
			}
		})
	}

	// tern apps lists both apps.
	out.Reset()
	if code := run(context.Background(), []string{"apps", "--data", data}, &out, &out); code != 0 {
		t.Fatalf("tern apps: exit %d\n%s", code, out.String())
	}
	for _, want := range []string{"hello", "echo", "sha256:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tern apps output lacks %q:\n%s", want, out.String())
		}
	}

	// tern apps --history verifies each release the hub keeps.
	if code, text := runTern("apps", "--data", data, "--history", "hello"); code != 0 || !strings.Contains(text, "verified") || strings.Contains(text, "UNVERIFIED") {
		t.Fatalf("tern apps --history: %d %s", code, text)
	}

	// tern status shows this agent, fresh, serving both apps; heartbeats
	// are periodic, so the first may predate the deploy.
	var status string
	poll(t, 60*time.Second, func() bool {
		out.Reset()
		if code := run(context.Background(), []string{"status", "--data", data}, &out, &out); code != 0 {
			t.Fatalf("tern status: exit %d\n%s", code, out.String())
		}
		status = out.String()
		return strings.Contains(status, " ok ") && strings.Contains(status, "hello@1.0.0#1") && strings.Contains(status, "echo@")
	}, func() string { return "tern status never showed the agent with both apps:\n" + status })

	// A root key signs the fleet's publisher list.
	keys := t.TempDir()
	for _, k := range []string{"root.key", "pub.key"} {
		if code, text := runTern("keys", "gen", "--out", filepath.Join(keys, k)); code != 0 {
			t.Fatalf("keys gen: %s", text)
		}
	}
	if code, text := runTern("trust", "set", "--data", data, "--root", filepath.Join(keys, "root.key"), "--add", filepath.Join(keys, "pub.key.pub")); code != 0 || !strings.Contains(text, "publisher list 1: 1 keys") {
		t.Fatalf("trust set: %d %s", code, text)
	}
	// The next routine re-sign builds on the hub's list, the one it
	// recorded beside the root key; without that record it refuses until
	// told to start over.
	if code, text := runTern("trust", "set", "--data", data, "--root", filepath.Join(keys, "root.key")); code != 0 || !strings.Contains(text, "publisher list 2: 1 keys") {
		t.Fatalf("trust set again: %d %s", code, text)
	}
	if err := os.Remove(filepath.Join(keys, "root.key.list")); err != nil {
		t.Fatal(err)
	}
	if code, text := runTern("trust", "set", "--data", data, "--root", filepath.Join(keys, "root.key")); code != 1 || !strings.Contains(text, "nothing records which that was") || !strings.Contains(text, "--reset") {
		t.Fatalf("trust set without a record: %d %s", code, text)
	}
	if code, text := runTern("trust", "set", "--data", data, "--root", filepath.Join(keys, "root.key"), "--reset", "--add", filepath.Join(keys, "pub.key.pub")); code != 0 || !strings.Contains(text, "publisher list 3: 1 keys") || !strings.Contains(text, "warning: --reset") {
		t.Fatalf("trust set --reset: %d %s", code, text)
	}
	if code, text := runTern("trust", "show", "--data", data, "--root", filepath.Join(keys, "root.key.pub")); code != 0 || !strings.Contains(text, "signed by root") {
		t.Fatalf("trust show: %d %s", code, text)
	}
	if code, text := runTern("trust", "show", "--data", data, "--root", filepath.Join(keys, "pub.key.pub")); code != 1 || !strings.Contains(text, "not a trusted root") {
		t.Fatalf("trust show against the wrong root: %d %s", code, text)
	}

	// A fleet-wide purge is acknowledged by the one agent.
	if code, text := runTern("purge", "--data", data, "--tag", "news"); code != 0 || !strings.Contains(text, "acknowledged by 1 of 1") {
		t.Fatalf("purge: %d %s", code, text)
	}
}

func do(t *testing.T, c *http.Client, method, url, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}
