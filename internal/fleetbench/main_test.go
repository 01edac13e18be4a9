package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tern-edge/tern/wasmhost"
)

// TestBuildModule checks that padded modules have the asked size, differ
// by version, and serve their version's body.
func TestBuildModule(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("..", "..", "guests", "hello", "hello.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt, err := wasmhost.New(ctx, wasmhost.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	for _, tc := range []struct{ v, size, want int }{
		{1, 1 << 20, 1 << 20},
		{2, 1 << 20, 1 << 20},
		{3, 200, 200}, // one-byte LEB128 section size
		{4, 0, len(base) + 1 + 1 + 1 + len(sectionName) + 8}, // the version alone
	} {
		wasm, err := buildModule(base, tc.v, tc.size)
		if err != nil {
			t.Fatal(err)
		}
		if len(wasm) != tc.want {
			t.Errorf("v%d size %d: module is %d bytes, want %d", tc.v, tc.size, len(wasm), tc.want)
		}
		app, err := rt.Load(ctx, wasmhost.AppConfig{Name: "hello", Wasm: wasm})
		if err != nil {
			t.Fatalf("v%d: %v", tc.v, err)
		}
		rec := httptest.NewRecorder()
		app.Serve(rec, httptest.NewRequest("GET", "/hello", nil), "/hello")
		app.Close(ctx)
		if rec.Code != 200 || rec.Body.String() != bodyFor(tc.v) {
			t.Errorf("v%d: %d %q, want 200 %q", tc.v, rec.Code, rec.Body.String(), bodyFor(tc.v))
		}
	}
	a, _ := buildModule(base, 1, 4096)
	b, _ := buildModule(base, 2, 4096)
	if bytes.Equal(a[len(base):], b[len(base):]) {
		t.Error("two versions have the same padding")
	}
	if _, err := buildModule([]byte("\x00asm\x01\x00\x00\x00"), 1, 0); err == nil || !strings.Contains(err.Error(), "found it 0 times") {
		t.Errorf("module without the body: %v", err)
	}
}

func TestULEB128(t *testing.T) {
	for _, tc := range []struct {
		x    uint64
		want []byte
	}{
		{0, []byte{0}},
		{127, []byte{0x7f}},
		{128, []byte{0x80, 0x01}},
		{624485, []byte{0xe5, 0x8e, 0x26}},
	} {
		if got := uleb128(nil, tc.x); !bytes.Equal(got, tc.want) {
			t.Errorf("uleb128(%d) = % x, want % x", tc.x, got, tc.want)
		}
	}
}

func TestParseLogLine(t *testing.T) {
	kv := parseLogLine(`time=2026-01-02T03:04:05.678Z level=INFO msg="release installed" component=sync app=hello sequence=12 digest=sha256:ab`)
	want := map[string]string{"time": "2026-01-02T03:04:05.678Z", "level": "INFO", "msg": "release installed", "component": "sync", "app": "hello", "sequence": "12", "digest": "sha256:ab"}
	for k, v := range want {
		if kv[k] != v {
			t.Errorf("%s = %q, want %q", k, kv[k], v)
		}
	}
}

// TestSmoke runs the whole benchmark with three agents and one deploy: a
// hub process of a freshly built tern binary and three agents, as
// processes and inside the test's own process.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/tern and starts four processes; skipped with -short")
	}
	tern := filepath.Join(t.TempDir(), "tern")
	if out, err := exec.Command("go", "build", "-o", tern, "github.com/tern-edge/tern/cmd/tern").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name  string
		flags []string
		where string
	}{
		{"processes", nil, "one `tern agent` process each"},
		{"inproc", []string{"-inproc"}, "all in one process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, log bytes.Buffer
			code := run(context.Background(), append([]string{
				"-tern", tern, "-agents", "3", "-rounds", "1", "-purges", "3", "-module-size", "64KiB",
				"-idle-window", "500ms", "-cpu-window", "1s", "-settle", "200ms",
				"-guest", filepath.Join("..", "..", "guests", "hello"), "-data", t.TempDir(),
			}, tc.flags...), &out, &log)
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, log.String(), out.String())
			}
			for _, want := range []string{tc.where, "every agent serves", "acknowledgement by all 3 agents", "per agent", "3/3 heartbeats fresh"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("report lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}
