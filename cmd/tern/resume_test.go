package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// freeAddr returns a loopback address with a port free now, for a hub
// that must come back on the same address after a restart.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestFleetResumesAfterHubRestart drives a hub and a few agents through
// the binaries. Agents started together while a release is on the hub all
// serve it; after the hub is killed with SIGKILL and restarted, the first
// deploy reaches every agent about as fast as a deploy before the
// restart, instead of waiting for the leaf nodes' mirrors to notice, by
// themselves, that their source went away.
func TestFleetResumesAfterHubRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	// TERN_FLEET_AGENTS runs more agents, to measure (docs/BENCHMARKS.md).
	agents := 3
	if n, err := strconv.Atoi(os.Getenv("TERN_FLEET_AGENTS")); err == nil && n > 0 {
		agents = n
	}
	dir := t.TempDir()
	bin := buildTern(t)
	hubArgs := []string{"hub", "--data", filepath.Join(dir, "hub"), "--listen", freeAddr(t), "--leaf-listen", freeAddr(t), "--admin", "127.0.0.1:0", "--log-level", "debug"}
	hub := start(t, bin, hubArgs...)
	hubURL := hub.await(t, `tern deploy --hub (\S+)`)
	leafURL := hub.await(t, `tern agent --hub (\S+)`)

	key := filepath.Join(dir, "me.key")
	if code, text := runTern("keys", "gen", "--out", key); code != 0 {
		t.Fatal(text)
	}
	app := filepath.Join(dir, "app")
	os.MkdirAll(app, 0o755)
	copyFile(t, filepath.Join("..", "..", "guests", "hello", "hello.wasm"), filepath.Join(app, "hello.wasm"))
	deploy := func(version string) {
		t.Helper()
		os.WriteFile(filepath.Join(app, "tern.toml"), []byte("name = \"hello\"\nversion = \""+version+"\"\nwasm = \"hello.wasm\"\n[[routes]]\npath = \"/hello\"\n"), 0o644)
		if code, text := runTern("deploy", "--hub", hubURL, "--key", key, app); code != 0 {
			t.Fatal(text)
		}
	}
	deploy("1.0.0")

	// Agents started together, with the release already on the hub.
	procs := make([]*process, agents)
	for i := range procs {
		procs[i] = start(t, bin, "agent", "--data", filepath.Join(dir, fmt.Sprintf("agent%d", i)), "--hub", leafURL, "--trust", key+".pub",
			"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--site", fmt.Sprintf("gw%d", i), "--log-level", "debug")
	}
	// converge waits until every agent has installed (and so serves) the
	// given version, and says how long that took.
	converge := func(version string) time.Duration {
		t.Helper()
		began := time.Now()
		want := regexp.MustCompile(`"release installed" .*app=hello version=` + regexp.QuoteMeta(version) + " ")
		for _, p := range procs {
			poll(t, 90*time.Second, func() bool { return want.MatchString(p.logs.String()) },
				func() string { return fmt.Sprintf("agent never installed %s\n%s", version, p.logs) })
		}
		return time.Since(began)
	}
	t.Logf("agents started together: all serve the hub's release %v after start", converge("1.0.0"))

	// A steady deploy, then the same after a hub restart.
	began := time.Now()
	deploy("2.0.0")
	converge("2.0.0")
	steady := time.Since(began)
	hub.cmd.Process.Signal(syscall.SIGKILL)
	hub.cmd.Wait()
	hub = start(t, bin, hubArgs...)
	for range agents {
		hub.await(t, `(?i)(leafnode connection created)`)
	}
	began = time.Now()
	deploy("3.0.0")
	converge("3.0.0")
	after := time.Since(began)
	t.Logf("steady deploy %v; first deploy after the hub restart %v (%.1f×)", steady, after, float64(after)/float64(steady))
	if bound := 5 * max(steady, 500*time.Millisecond); after > bound {
		t.Errorf("first deploy after a hub restart took %v, more than 5× the steady deploy's %v (bound %v); an agent's log:\n%s", after, steady, bound, procs[0].logs)
	}
}
