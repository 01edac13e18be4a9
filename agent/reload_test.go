package agent

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"strings"
	"testing"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
)

// TestChangedKeys names the top-level keys a reload changes, by their
// names in the file.
func TestChangedKeys(t *testing.T) {
	old := DefaultConfig()
	cur := DefaultConfig()
	cur.Listen = "127.0.0.1:1"
	cur.Cache.MaxSize = 1 << 20
	cur.LogLevel = "debug" // applied live, not reported
	if got := strings.Join(changedKeys(old, cur), ","); got != "listen,cache" {
		t.Fatalf("changed keys %q, want listen,cache", got)
	}
	if got := changedKeys(old, old); len(got) != 0 {
		t.Fatalf("unchanged config reports %v", got)
	}
}

// TestReloadTrust: a release signed by a key the agent does not trust is
// refused; a reload that adds the key to trust.publishers installs it,
// with no restart.
func TestReloadTrust(t *testing.T) {
	key := mustKey(t)
	cfg := testConfig(t, t.TempDir())
	ta := startAgent(t, cfg, key)
	hub := hubClient(t, ta.Agent)
	other := mustKey(t)
	m, wasm := readGuest(t, "hello")
	if _, err := deploy.Push(context.Background(), m, wasm, deploy.Options{Client: hub, Key: other}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refusal", func() bool { return len(ta.watcher.Refusals()) > 0 })
	if seq, _ := ta.Installed(m.Name); seq != 0 {
		t.Fatalf("untrusted release installed: %d", seq)
	}
	cfg.Trust.Publishers = []string{artifact.FormatPublicKey(other.Public().(ed25519.PublicKey))}
	if err := ta.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the release to install after the reload", func() bool { seq, _ := ta.Installed(m.Name); return seq > 0 })

	bad := cfg
	bad.Trust.Publishers = []string{"ed25519:nope"}
	if err := ta.Reload(bad); err == nil || !strings.Contains(err.Error(), "trust.publishers") {
		t.Fatalf("reload of a bad key: %v", err)
	}
}

// TestReloadReserve: a reload that raises store.min_free above the free
// space makes /readyz 503 with disk pressure; one that restores it makes
// it 200 again, with no restart.
func TestReloadReserve(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	ta := startAgent(t, cfg, mustKey(t))
	if ta.disk == nil {
		t.Skip("free space cannot be measured on this platform")
	}
	waitFor(t, "readyz 200", func() bool { code, _ := readyJSON(t, ta.Agent); return code == http.StatusOK })
	high := cfg
	high.Store.MinFree = 1 << 60
	if err := ta.Reload(high); err != nil {
		t.Fatal(err)
	}
	if code, rep := readyJSON(t, ta.Agent); code != http.StatusServiceUnavailable || !failed(rep, "disk", "store.min_free") {
		t.Fatalf("readyz after raising min_free: %d %+v", code, rep)
	}
	if err := ta.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "readyz 200 again", func() bool { code, _ := readyJSON(t, ta.Agent); return code == http.StatusOK })
}
