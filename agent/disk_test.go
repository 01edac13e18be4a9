package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tern-edge/tern/deploy"
)

// TestDiskReserveRefusesModules: below the free-space reserve a new
// release is refused before anything is written, with an error naming
// the data directory, /readyz reports the pressure, the previous version
// keeps serving, and the release installs by itself once space is back.
func TestDiskReserveRefusesModules(t *testing.T) {
	key := mustKey(t)
	ta := startAgent(t, testConfig(t, t.TempDir()), key)
	if ta.disk == nil {
		t.Skip("free space cannot be measured on this platform")
	}
	hub := hubClient(t, ta.Agent)
	ctx := context.Background()
	m, hello := readGuest(t, "hello")
	status, err := os.ReadFile(filepath.Join("..", "guests", "faults", "status.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	opts := deploy.Options{Client: hub, Key: key}
	if _, err := deploy.Push(ctx, m, hello, opts); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "version 1", func() bool { seq, _ := ta.Installed("hello"); return seq == 1 })

	// The agent's reserve above what its disk holds; the hub's unchanged.
	reserve := ta.disk.reserve.Swap(1 << 60)
	waitFor(t, "readyz to report disk pressure", func() bool {
		code, body := getAdmin(t, ta.Agent, "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "disk pressure: "+ta.cfg.Data)
	})
	m2 := m
	m2.Version = "2.0.0"
	if _, err := deploy.Push(ctx, m2, status, opts); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refusal", func() bool { return refused(ta.Agent, "disk_full") == 1 })
	rs := ta.watcher.Refusals()
	if len(rs) == 0 || !strings.Contains(rs[0].Error, "disk full: "+ta.cfg.Data+" has ") || !strings.Contains(rs[0].Error, "needs") {
		t.Fatalf("refusals = %+v, want one naming %s", rs, ta.cfg.Data)
	}
	if seq, _ := ta.Installed("hello"); seq != 1 {
		t.Fatalf("installed sequence %d on a full disk, want 1", seq)
	}
	if code, body := ta.get(t, "/hello"); code != 200 || !strings.Contains(body, "Hello") {
		t.Fatalf("/hello on a full disk = %d %q", code, body)
	}
	if _, err := os.Stat(filepath.Join(ta.cfg.Data, "store", "modules")); err == nil {
		entries, _ := os.ReadDir(filepath.Join(ta.cfg.Data, "store", "modules"))
		if len(entries) != 1 {
			t.Errorf("%d module files after a refused release, want 1", len(entries))
		}
	}

	// Space back: the release installs without another deploy.
	ta.disk.reserve.Store(reserve)
	waitFor(t, "version 2 once space is back", func() bool { seq, _ := ta.Installed("hello"); return seq == 2 })
	waitFor(t, "readyz ok", func() bool { code, _ := getAdmin(t, ta.Agent, "/readyz"); return code == http.StatusOK })
	if !errors.Is(ta.disk.admit(1<<62, "test"), ErrDiskFull) {
		t.Error("admit of 4 EiB did not report ErrDiskFull")
	}
}

func getAdmin(t *testing.T, a *Agent, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + a.AdminAddr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
