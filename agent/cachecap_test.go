package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
)

// TestCacheCapability deploys the caps/cache guest: denied until the
// manifest grants the cache, then a response it stores comes back from
// the agent's cache, and another app cannot see it under the same key.
func TestCacheCapability(t *testing.T) {
	key := mustKey(t)
	ta := startAgent(t, testConfig(t, t.TempDir()), key)
	hub := hubClient(t, ta.Agent)
	wasm, err := os.ReadFile(filepath.Join("..", "guests", "caps", "cache.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	push := func(name, path, version string, grant bool) {
		t.Helper()
		m := artifact.Manifest{Name: name, Version: version, Wasm: "cache.wasm", Routes: []artifact.Route{{Path: path}}}
		m.Capabilities.Cache = grant
		res, err := deploy.Push(ctx, m, wasm, deploy.Options{Client: hub, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "install of "+name, func() bool { seq, _ := ta.Installed(name); return seq == res.Release.Sequence })
	}
	push("edge", "/c", "1.0.0", false)
	if _, body := ta.get(t, "/c?put&page&hello"); body != "error=1\n" {
		t.Fatalf("put without the grant: %q, want error=1 (denied)", body)
	}
	push("edge", "/c", "1.1.0", true)
	if _, body := ta.get(t, "/c?put&page&hello"); body != "ok\n" {
		t.Fatalf("put with the grant: %q", body)
	}
	if _, body := ta.get(t, "/c?small&page"); body != "error=4 len=5\n" {
		t.Fatalf("get into a small buffer: %q", body)
	}
	if _, body := ta.get(t, "/c?putnostore&secret&x"); body != "error=7\n" {
		t.Fatalf("put of a no-store response: %q, want error=7", body)
	}
	push("other", "/o", "1.0.0", true)
	if _, body := ta.get(t, "/o?get&page"); body != "error=2\n" {
		t.Fatalf("security: another app read edge's entry: %q", body)
	}
	_, body := ta.get(t, "/c?get&page")
	if want := "value=hello\n"; len(body) < len(want) || body[:len(want)] != want {
		t.Fatalf("get: %q", body)
	}
	if _, body := ta.get(t, "/c?delete&page"); body != "ok\n" {
		t.Fatalf("delete: %q", body)
	}
	if _, body := ta.get(t, "/c?get&page"); body != "error=2\n" {
		t.Fatalf("get after delete: %q", body)
	}
}
