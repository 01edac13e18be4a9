package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
	"github.com/tern-edge/tern/internal/wasmgen"
)

// TestCompileBombsRefused publishes each compile bomb as a new version of
// a serving app: each is refused before compiling with its limit named,
// and the previous version keeps serving.
func TestCompileBombsRefused(t *testing.T) {
	key := mustKey(t)
	cfg := testConfig(t, t.TempDir())
	cfg.Compile.ModuleBytes = 2 * artifact.MiB
	ta := startAgent(t, cfg, key)
	opts := deploy.Options{Client: hubClient(t, ta.Agent), Key: key}
	ctx := context.Background()
	m, hello := readGuest(t, "hello")
	if _, err := deploy.Push(ctx, m, hello, opts); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "hello to serve", func() bool { code, _ := ta.get(t, "/hello"); return code == 200 })
	_, want := ta.get(t, "/hello")
	for i, tc := range []struct {
		name, limit string
		wasm        []byte
	}{
		{"1M-target br_table", "br_table_targets", wasmgen.BrTable(1_000_000)},
		{"100,000 nested blocks", "nesting", wasmgen.Nested(100_000)},
		{"3 MiB function", "module_bytes", wasmgen.LongBody(3 << 20)},
		{"1M locals", "locals", wasmgen.Locals(1_000_000)},
		{"200,000 data segments", "data_segments", wasmgen.DataSegments(200_000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := deploy.Push(ctx, m, tc.wasm, opts); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the refusal", func() bool { return refused(ta.Agent, "compile_limit") == float64(i+1) })
			r := ta.watcher.Refusals()[0]
			if !strings.Contains(r.Error, "refused before compiling") || !strings.Contains(r.Error, tc.limit+" ") ||
				!strings.Contains(r.Error, "(compile."+tc.limit+" in the agent's config)") {
				t.Fatalf("refusal %q does not name the limit %s", r.Error, tc.limit)
			}
			if code, body := ta.get(t, "/hello"); code != 200 || body != want {
				t.Fatalf("after the refusal /hello = %d %q, want the previous version", code, body)
			}
		})
	}
}

// TestInstallsDoNotWaitForOtherApps compiles a slow module (nesting
// allowed, so it compiles for seconds) and, meanwhile, installs another
// app's release and its rollback, then supersedes the slow release with
// a quick one. Neither waits for the slow compile.
func TestInstallsDoNotWaitForOtherApps(t *testing.T) {
	key := mustKey(t)
	cfg := testConfig(t, t.TempDir())
	cfg.Compile.Nesting = -1
	ta := startAgent(t, cfg, key)
	opts := deploy.Options{Client: hubClient(t, ta.Agent), Key: key}
	ctx := context.Background()
	m, hello := readGuest(t, "hello")
	status, err := os.ReadFile(filepath.Join("..", "guests", "faults", "status.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	install := func(what string, mf artifact.Manifest, wasm []byte, seq uint64) time.Duration {
		t.Helper()
		start := time.Now()
		if _, err := deploy.Push(ctx, mf, wasm, opts); err != nil {
			t.Fatal(err)
		}
		waitFor(t, what, func() bool { s, _ := ta.Installed(mf.Name); return s == seq })
		return time.Since(start)
	}
	alone := install("hello alone", m, hello, 1)

	slow := m
	slow.Name = "slow"
	slow.Routes = []artifact.Route{{Path: "/slow"}}
	if _, err := deploy.Push(ctx, slow, wasmgen.Nested(8000), opts); err != nil {
		t.Fatal(err)
	}
	m2 := m
	m2.Version = "2.0.0"
	during := install("hello v2 while slow compiles", m2, status, 2)
	if s, _ := ta.Installed("slow"); s != 0 {
		t.Fatalf("slow installed (sequence %d) before the other app's release: installs waited for it", s)
	}
	t.Logf("hello installed in %s alone, in %s while another app compiled: ratio %.1f", alone, during, float64(during)/float64(alone))
	if during > 20*alone {
		t.Fatalf("install took %s while another app compiled, %.0f times its %s alone", during, float64(during)/float64(alone), alone)
	}
	if _, err := deploy.Rollback(ctx, "hello", 0, opts); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rollback", func() bool { s, _ := ta.Installed("hello"); return s == 3 })
	if s, _ := ta.Installed("slow"); s != 0 {
		t.Fatalf("slow installed (sequence %d) before the other app's rollback", s)
	}

	// A release of the slow app supersedes its compiling one: it installs
	// without the slow one ever serving, and nothing counts as refused.
	slow.Version = "2.0.0"
	if _, err := deploy.Push(ctx, slow, hello, opts); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	waitFor(t, "the superseding release", func() bool { s, _ := ta.Installed("slow"); seen[s] = true; return s == 2 })
	if seen[1] {
		t.Fatal("the superseded release was installed first")
	}
	if rs := ta.watcher.Refusals(); len(rs) != 0 {
		t.Fatalf("refusals %+v, want none", rs)
	}
}

func TestCompileConfig(t *testing.T) {
	for _, tc := range []struct{ toml, err string }{
		{"", ""},
		{"nesting = 20000\nbr_table_targets = -1\ntimeout = \"30s\"\nmemory = \"512MiB\"\n", ""},
		{"module_bytes = \"64MiB\"\n", ""},
		{"module_bytes = \"65MiB\"\n", "compile.module_bytes = 65MiB: must lie in [0, max_artifact = 64MiB]"},
		{"nesting = -2\n", "compile.nesting = -2: want a count, 0 for the default or -1 for none"},
		{"timeout = \"-1s\"\n", "compile: function_bytes, memory and timeout must not be negative"},
		{"depth = 3\n", `unknown key "compile.depth"`},
	} {
		_, err := ParseConfig([]byte("version = 1\n[compile]\n" + tc.toml))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || err.Error() != tc.err) {
			t.Errorf("%q: err %v, want %q", tc.toml, err, tc.err)
		}
	}
	cfg, err := ParseConfig([]byte("version = 1\nmax_artifact = \"8MiB\"\n[compile]\nnesting = 20000\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Compile.wasmhost(cfg.MaxArtifact)
	if got.Scan.ModuleBytes != 8<<20 || got.Scan.Nesting != 20000 || got.Scan.BrTableTargets != 0 {
		t.Fatalf("wasmhost config %+v: want module_bytes from max_artifact, nesting 20000, the rest default", got)
	}
}
