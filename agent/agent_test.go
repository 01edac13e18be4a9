package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
	ternsync "github.com/tern-edge/tern/sync"
)

// testAgent is a running agent with everything on loopback and free ports.
type testAgent struct {
	*Agent
	key    ed25519.PrivateKey
	client *http.Client
	cancel context.CancelFunc
	done   chan error
}

func testConfig(t *testing.T, data string) Config {
	cfg := DefaultConfig()
	cfg.Data = data
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin = "127.0.0.1:0"
	cfg.Hub.Listen = "127.0.0.1:0"
	// The race detector slows wazero's compiler twentyfold; the Go-built
	// guests would outlast the default compile timeout.
	cfg.Compile.Timeout = artifact.Duration(30 * time.Minute)
	return cfg
}

// startAgent starts an agent that trusts key and stops it when the test
// ends.
func startAgent(t *testing.T, cfg Config, key ed25519.PrivateKey) *testAgent {
	t.Helper()
	ta := startAgentWith(t, cfg, Options{ExtraTrusted: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}})
	ta.key = key
	return ta
}

// startAgentWith starts an agent with opts and stops it when the test ends.
func startAgentWith(t *testing.T, cfg Config, opts Options) *testAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if os.Getenv("TERN_TEST_LOG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("data", filepath.Base(cfg.Data))
	}
	a, err := New(ctx, cfg, opts)
	if err != nil {
		cancel()
		t.Fatalf("start agent: %v", err)
	}
	ta := &testAgent{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { ta.done <- a.Run(ctx, nil) }()
	t.Cleanup(ta.stop)
	ta.client = tlsClient(t, a.CAPath())
	return ta
}

func (ta *testAgent) stop() {
	if ta.cancel == nil {
		return
	}
	ta.cancel()
	ta.cancel = nil
	if err := <-ta.done; err != nil {
		panic(fmt.Sprintf("agent run: %v", err))
	}
}

func tlsClient(t *testing.T, caPath string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get fetches path and returns the status and body.
func (ta *testAgent) get(t *testing.T, path string) (int, string) {
	t.Helper()
	url := "https://" + strings.Replace(ta.Addr().String(), "127.0.0.1", "localhost", 1) + path
	resp, err := ta.client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// Generous: a loaded CI machine compiles modules slowly under -race.
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readGuest(t *testing.T, name string) (artifact.Manifest, []byte) {
	t.Helper()
	m, dir, err := artifact.LoadManifest(filepath.Join("..", "guests", name))
	if err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(filepath.Join(dir, m.Wasm))
	if err != nil {
		t.Fatal(err)
	}
	return m, wasm
}

func hubClient(t *testing.T, a *Agent) *ternsync.Client {
	t.Helper()
	c, err := ternsync.Connect(ternsync.ConnConfig{URL: a.HubURL(), Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func mustKey(t *testing.T) ed25519.PrivateKey {
	k, err := artifact.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func refused(a *Agent, reason string) float64 {
	n, err := testutil.GatherAndCount(a.reg, "tern_artifacts_total")
	if err != nil || n == 0 {
		return 0
	}
	mfs, _ := a.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "tern_artifacts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["result"] == "refused" && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// signRaw signs payload bytes as a release envelope, so tests can sign
// payloads that Sign would refuse to produce.
func signRaw(key ed25519.PrivateKey, payload []byte) []byte {
	env, _ := json.Marshal(map[string]string{
		"payload": base64.StdEncoding.EncodeToString(payload),
		"key_id":  artifact.KeyID(key.Public().(ed25519.PublicKey)),
		"sig":     base64.StdEncoding.EncodeToString(ed25519.Sign(key, append([]byte("tern-release-v1\n"), payload...))),
	})
	return env
}

// TestRefusedReleases publishes one bad release after another on top of a
// good one; each must be refused for its reason while the good version
// keeps serving.
func TestRefusedReleases(t *testing.T) {
	key := mustKey(t)
	cfg := testConfig(t, t.TempDir())
	cfg.MaxArtifact = 64 << 10
	ta := startAgent(t, cfg, key)
	hub := hubClient(t, ta.Agent)
	ctx := context.Background()

	m, wasm := readGuest(t, "hello")
	// Two deploys, so that a lower sequence than the installed one exists.
	var good deploy.Result
	for range 2 {
		var err error
		if good, err = deploy.Push(ctx, m, wasm, deploy.Options{Client: hub, Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "hello to serve", func() bool { code, _ := ta.get(t, "/hello"); return code == 200 })
	_, wantBody := ta.get(t, "/hello")

	other := mustKey(t)
	now := time.Now().UTC().Truncate(time.Second)
	release := func(seq uint64, b []byte) artifact.Release {
		return artifact.Release{App: m.Name, Sequence: seq, Digest: artifact.Digest(b), Size: int64(len(b)),
			Issued: now, Expires: now.Add(time.Hour), Manifest: m}
	}
	sign := func(r artifact.Release, k ed25519.PrivateKey) []byte {
		env, err := artifact.Sign(r, k)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	next := good.Release.Sequence + 1
	tampered := append([]byte(nil), wasm...)
	tampered[len(tampered)-1] ^= 0xff
	big := append(append([]byte(nil), wasm...), make([]byte, 70<<10)...)
	notWasm := []byte("#!/bin/sh\necho not a module\n")

	tests := []struct {
		name   string
		reason string
		// build returns the envelope and the bytes to store under the
		// release's digest (nil: store nothing new).
		build func() (env []byte, digest string, obj []byte)
	}{
		{"unsigned", "signature", func() ([]byte, string, []byte) {
			var e map[string]any
			json.Unmarshal(sign(release(next, wasm), key), &e)
			delete(e, "sig")
			env, _ := json.Marshal(e)
			return env, "", nil
		}},
		{"untrusted key", "untrusted_key", func() ([]byte, string, []byte) { return sign(release(next, wasm), other), "", nil }},
		{"tampered bytes", "digest", func() ([]byte, string, []byte) {
			r := release(next, tampered)
			r.Digest = artifact.Digest(tampered) // the signed digest...
			// ...but the hub serves other bytes of the same size under it.
			return sign(r, key), r.Digest, wasm
		}},
		{"equal sequence", "downgrade", func() ([]byte, string, []byte) {
			return sign(release(good.Release.Sequence, tampered), key), artifact.Digest(tampered), tampered
		}},
		{"lower sequence", "downgrade", func() ([]byte, string, []byte) {
			return sign(release(good.Release.Sequence-1, tampered), key), artifact.Digest(tampered), tampered
		}},
		{"expired", "expired", func() ([]byte, string, []byte) {
			r := release(next, wasm)
			r.Issued, r.Expires = now.Add(-2*time.Hour), now.Add(-time.Hour)
			return sign(r, key), "", nil
		}},
		{"over the size cap", "size", func() ([]byte, string, []byte) {
			r := release(next, big)
			return sign(r, key), r.Digest, big
		}},
		{"not wasm", "not_wasm", func() ([]byte, string, []byte) {
			r := release(next, notWasm)
			return sign(r, key), r.Digest, notWasm
		}},
		{"manifest with unknown keys", "malformed", func() ([]byte, string, []byte) {
			payload, _ := json.Marshal(release(next, wasm))
			payload = []byte(strings.Replace(string(payload), `"manifest":{`, `"manifest":{"bogus":true,`, 1))
			return signRaw(key, payload), "", nil
		}},
		{"release stored under another app's key", "malformed", func() ([]byte, string, []byte) {
			return sign(release(next, wasm), key), "", nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, digest, obj := tt.build()
			if obj != nil {
				// Bypass the client's skip-if-present check: the test wants
				// these exact bytes under this name.
				if err := hub.PutArtifact(ctx, digest, strings.NewReader(string(obj)), -1, nil); err != nil {
					t.Fatal(err)
				}
			}
			key := m.Name
			if tt.name == "release stored under another app's key" {
				key = "other"
			}
			_, rev, err := hub.Release(ctx, key)
			if err != nil && !errors.Is(err, ternsync.ErrNotFound) {
				t.Fatal(err)
			}
			before := refused(ta.Agent, tt.reason)
			if err := hub.PutRelease(ctx, key, env, rev); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "refusal "+tt.reason, func() bool { return refused(ta.Agent, tt.reason) > before })
			if seq, digest := ta.Installed(m.Name); seq != good.Release.Sequence || digest != good.Release.Digest {
				t.Fatalf("installed %d %s, want the good release %d %s", seq, digest, good.Release.Sequence, good.Release.Digest)
			}
			if code, body := ta.get(t, "/hello"); code != 200 || body != wantBody {
				t.Fatalf("after refusal /hello = %d %q, want 200 %q", code, body, wantBody)
			}
		})
	}
}

// TestServesFromStoreWithoutHub restarts an agent whose hub is gone: it
// must serve its last known good release from the store.
func TestServesFromStoreWithoutHub(t *testing.T) {
	key := mustKey(t)
	data := t.TempDir()
	ta := startAgent(t, testConfig(t, data), key)
	m, wasm := readGuest(t, "hello")
	if _, err := deploy.Push(context.Background(), m, wasm, deploy.Options{Client: hubClient(t, ta.Agent), Key: key}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "hello to serve", func() bool { code, _ := ta.get(t, "/hello"); return code == 200 })
	ta.stop()

	cfg := testConfig(t, data)
	cfg.Hub.URL = "nats://127.0.0.1:1" // nothing listens there
	ta2 := startAgent(t, cfg, key)
	code, body := ta2.get(t, "/hello")
	if code != 200 || !strings.Contains(body, "Hello") {
		t.Fatalf("restarted without hub: /hello = %d %q", code, body)
	}
}

// TestRollback deploys two modules under one app, rolls back, and checks
// the agent serves the first module again under a higher sequence.
func TestRollback(t *testing.T) {
	key := mustKey(t)
	ta := startAgent(t, testConfig(t, t.TempDir()), key)
	hub := hubClient(t, ta.Agent)
	ctx := context.Background()
	m, hello := readGuest(t, "hello")
	// A second small module: the Go echo guest compiles slowly under -race.
	echo, err := os.ReadFile(filepath.Join("..", "guests", "faults", "status.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	opts := deploy.Options{Client: hub, Key: key}
	if _, err := deploy.Push(ctx, m, hello, opts); err != nil {
		t.Fatal(err)
	}
	m2 := m
	m2.Version = "2.0.0"
	if _, err := deploy.Push(ctx, m2, echo, opts); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "version 2", func() bool { seq, _ := ta.Installed("hello"); return seq == 2 })
	res, err := deploy.Rollback(ctx, "hello", 0, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Release.Sequence != 3 || res.Release.Digest != artifact.Digest(hello) || res.Release.Manifest.Version != "1.0.0" {
		t.Fatalf("rollback release = %d %s %s", res.Release.Sequence, res.Release.Digest, res.Release.Manifest.Version)
	}
	waitFor(t, "rollback to be installed", func() bool { seq, _ := ta.Installed("hello"); return seq == 3 })
	if code, body := ta.get(t, "/hello"); code != 200 || !strings.Contains(body, "Hello") {
		t.Fatalf("after rollback /hello = %d %q", code, body)
	}
	if _, err := deploy.Rollback(ctx, "hello", 42, opts); !errors.Is(err, deploy.ErrNoPrevious) {
		t.Fatalf("rollback to unknown sequence: %v, want ErrNoPrevious", err)
	}
}

// TestKVCapability deploys the key-value guest with and without the grant:
// data persists across versions when granted, and calls fail when not.
func TestKVCapability(t *testing.T) {
	key := mustKey(t)
	ta := startAgent(t, testConfig(t, t.TempDir()), key)
	hub := hubClient(t, ta.Agent)
	wasm, err := os.ReadFile(filepath.Join("..", "guests", "caps", "kv.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := artifact.ParseManifest([]byte("name = \"kv\"\nversion = \"1.0.0\"\nwasm = \"kv.wasm\"\n[[routes]]\npath = \"/kv\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	push := func(m artifact.Manifest) uint64 {
		res, err := deploy.Push(ctx, m, wasm, deploy.Options{Client: hub, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "install", func() bool { seq, _ := ta.Installed("kv"); return seq == res.Release.Sequence })
		return res.Release.Sequence
	}
	push(m)
	if _, body := ta.get(t, "/kv?set&colour&blue"); body != "error=1\n" {
		t.Fatalf("set without the grant: %q, want error=1 (denied)", body)
	}
	m.Capabilities.KV = []string{"default"}
	m.Version = "1.1.0"
	push(m)
	if _, body := ta.get(t, "/kv?set&colour&blue"); body != "ok\n" {
		t.Fatalf("set with the grant: %q", body)
	}
	m.Version = "1.2.0"
	push(m)
	if _, body := ta.get(t, "/kv?get&colour"); body != "value=blue\n" {
		t.Fatalf("get after an upgrade: %q", body)
	}
}

// TestRouteHeaders deploys an app whose route adds response headers.
func TestRouteHeaders(t *testing.T) {
	key := mustKey(t)
	ta := startAgent(t, testConfig(t, t.TempDir()), key)
	m, hello := readGuest(t, "hello")
	m.Routes[0].Headers = map[string]string{"Strict-Transport-Security": "max-age=63072000"}
	if _, err := deploy.Push(context.Background(), m, hello, deploy.Options{Client: hubClient(t, ta.Agent), Key: key}); err != nil {
		t.Fatal(err)
	}
	url := "https://" + strings.Replace(ta.Addr().String(), "127.0.0.1", "localhost", 1) + "/hello"
	waitFor(t, "the header", func() bool {
		resp, err := ta.client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200 && resp.Header.Get("Strict-Transport-Security") == "max-age=63072000"
	})
}

// TestMountOutsideAllowedDirs is a security case: a mounted directory
// under allowed_dirs that is itself a symbolic link out of them must be
// refused (a lexical check passed it, and the guest read /etc/passwd),
// while one whose real path is under them serves, and the version
// installed before a refusal keeps serving.
func TestMountOutsideAllowedDirs(t *testing.T) {
	key := mustKey(t)
	base := t.TempDir()
	allowed := filepath.Join(base, "allowed")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(allowed, "data"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(allowed, "data", "hello.txt"), []byte("allowed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "hello.txt"), []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		filepath.Join(allowed, "etclink"): "/etc",
		filepath.Join(allowed, "outlink"): outside,
		filepath.Join(allowed, "uplink"):  "../outside",
		filepath.Join(allowed, "inlink"):  "data",
		filepath.Join(base, "alias"):      allowed, // allowed_dirs itself through a link
	}
	for link, target := range links {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(t, t.TempDir())
	cfg.AllowedDirs = []string{filepath.Join(base, "alias")}
	ta := startAgent(t, cfg, key)
	hub := hubClient(t, ta.Agent)
	wasm, err := os.ReadFile(filepath.Join("..", "guests", "faults", "fsprobe.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := artifact.ParseManifest([]byte("name = \"fs\"\nversion = \"1.0.0\"\nwasm = \"fsprobe.wasm\"\n[[routes]]\npath = \"/fs\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	push := func(host string) {
		t.Helper()
		m.Capabilities.Dirs = map[string]string{"/data": host}
		if _, err := deploy.Push(ctx, m, wasm, deploy.Options{Client: hub, Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	// A link inside allowed_dirs to a directory inside them serves.
	push(filepath.Join(allowed, "inlink"))
	waitFor(t, "fs to serve", func() bool { code, _ := ta.get(t, "/fs"); return code == 200 })
	if _, body := ta.get(t, "/fs"); body != "allowed\nwrite: denied\n" {
		t.Fatalf("/fs = %q", body)
	}
	good, _ := ta.Installed("fs")

	for _, tt := range []struct{ name, host string }{
		{"mount root linked to /etc", filepath.Join(allowed, "etclink")},
		{"mount root linked to a directory outside", filepath.Join(allowed, "outlink")},
		{"mount root linked up and out", filepath.Join(allowed, "uplink")},
		{"dot-dot out of allowed_dirs", filepath.Join(allowed, "..", "outside")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := refused(ta.Agent, "capability")
			push(tt.host)
			waitFor(t, "refusal", func() bool { return refused(ta.Agent, "capability") > before })
			if seq, _ := ta.Installed("fs"); seq != good {
				t.Fatalf("installed %d, want %d still", seq, good)
			}
			if _, body := ta.get(t, "/fs"); body != "allowed\nwrite: denied\n" {
				t.Fatalf("after refusal /fs = %q, want the previous version's answer", body)
			}
		})
	}
}
