package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runTern(args ...string) (int, string) {
	var out strings.Builder
	code := run(context.Background(), args, &out, &out)
	return code, out.String()
}

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodConf := write("good.conf", "version = 1\nlisten = \"127.0.0.1:8443\"\n")
	badConf := write("bad.conf", "version = 1\nlisen = \":1\"\n")
	oldConf := write("old.conf", "version = 7\n")
	badCompression := write("compression.conf", "version = 1\n[hub]\ncompression = \"gzip\"\n")
	bigArtifacts := write("big.conf", "version = 1\nmax_artifact = \"2GiB\"\n")
	badApp := write("badapp/tern.toml", "name = \"x\"\nversion = \"1.0.0\"\nwasm = \"x.wasm\"\ncolour = \"red\"\n[[routes]]\npath = \"/x\"\n")
	noWasm := write("nowasm/tern.toml", "name = \"x\"\nversion = \"1.0.0\"\nwasm = \"x.wasm\"\n[[routes]]\npath = \"/x\"\n")
	write("notwasm/tern.toml", "name = \"x\"\nversion = \"1.0.0\"\nwasm = \"x.wasm\"\n[[routes]]\npath = \"/x\"\n")
	write("notwasm/x.wasm", "MZ not a module")
	badCron := write("badcron/tern.toml", "name = \"x\"\nversion = \"1.0.0\"\nwasm = \"x.wasm\"\n[[routes]]\npath = \"/x\"\n"+
		"[deferrable]\nmax_delay = \"12h\"\nexpected_runtime = \"1m\"\n[[deferrable.schedules]]\ncron = \"0 2 * * mon-fry\"\nwindow = \"6h\"\npath = \"/x\"\n")

	tests := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"no args", nil, 2, "Usage:"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"version", []string{"version"}, 0, "tern "},
		{"check good config", []string{"check", goodConf}, 0, "ok"},
		{"check config with unknown key", []string{"check", badConf}, 1, `unknown key "lisen"`},
		{"check config of another version", []string{"check", oldConf}, 1, "version = 7"},
		{"check config with too large modules", []string{"check", bigArtifacts}, 1, `max_artifact = 2GiB: must lie in (0, 1GiB]`},
		{"check config with unknown compression", []string{"check", badCompression}, 1, `hub.compression: leaf compression "gzip": want off, fast, better, best, auto or auto-fast`},
		{"hub with unknown compression", []string{"hub", "--data", filepath.Join(dir, "hub"), "--listen", "127.0.0.1:0", "--leaf-listen", "127.0.0.1:0", "--leaf-compression", "zip"}, 1, `leaf compression "zip"`},
		{"controller with too many replicas", []string{"controller", "--hub", "nats://127.0.0.1:1", "--replicas", "7"}, 1, "--replicas 7: want 1 to 5"},
		{"controller with an argument", []string{"controller", "--hub", "nats://127.0.0.1:1", "extra"}, 2, "Usage: tern controller"},
		{"check sample app", []string{"check", filepath.Join("..", "..", "guests", "hello")}, 0, "app hello 1.0.0: ok"},
		{"check origin app", []string{"check", filepath.Join("..", "..", "guests", "origin")}, 0, "app origin-example 1.0.0: ok (origin, 2 upstreams)"},
		{"check manifest with unknown key", []string{"check", badApp}, 1, `"colour"`},
		{"check manifest with a bad cron", []string{"check", badCron}, 1, `deferrable.schedules[0].cron: cron "0 2 * * mon-fry": day-of-week field "mon-fry": value "fry"`},
		{"check app without its module", []string{"check", filepath.Dir(noWasm)}, 1, "x.wasm"},
		{"check app whose module is not wasm", []string{"check", filepath.Join(dir, "notwasm")}, 1, "not"},
		{"keys gen needs --out", []string{"keys", "gen"}, 2, "--out is required"},
		{"deploy without a hub", []string{"deploy", "--data", filepath.Join(dir, "nothing"), "--key", filepath.Join(dir, "k"), filepath.Join("..", "..", "guests", "hello")}, 1, "k"},
		{"agent without a hub", []string{"agent", "--data", filepath.Join(dir, "agent")}, 1, "no hub"},
		{"--version", []string{"--version"}, 0, "tern "},
		{"flags after the app", []string{"rollback", "--data", filepath.Join(dir, "nothing"), "hello", "--key", filepath.Join(dir, "missing.key")}, 1, "missing.key"},
		{"help for a command", []string{"help", "deploy"}, 0, "-no-wait"},
		{"help for a subcommand", []string{"help", "carbon", "sim"}, 0, "Usage: tern carbon sim"},
		{"-h on a command", []string{"rollback", "-h"}, 0, "-to uint"},
		{"--help on a subcommand", []string{"trust", "set", "--help"}, 0, "-root"},
		{"check several files", []string{"check", goodConf, filepath.Join("..", "..", "guests", "hello")}, 0, "app hello 1.0.0: ok"},
		{"check several files, one bad", []string{"check", goodConf, badConf}, 1, "1 of 2 files are invalid"},
		{"check names the bad one", []string{"check", goodConf, badConf}, 1, badConf + `: config `},
		{"check --json", []string{"check", "--json", goodConf, badConf}, 1, `"kind": "config"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := runTern(tt.args...)
			if code != tt.code || !strings.Contains(out, tt.contains) {
				t.Fatalf("tern %v = %d\n%s\nwant exit %d and output containing %q", tt.args, code, out, tt.code, tt.contains)
			}
		})
	}
}

func TestKeysGen(t *testing.T) {
	out := filepath.Join(t.TempDir(), "me.key")
	code, text := runTern("keys", "gen", "--out", out)
	if code != 0 {
		t.Fatalf("keys gen: %d %s", code, text)
	}
	pub, err := os.ReadFile(out + ".pub")
	if err != nil || !strings.HasPrefix(string(pub), "ed25519:") {
		t.Fatalf("public key file: %q, %v", pub, err)
	}
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v, %v", st.Mode(), err)
	}
	if code, text := runTern("keys", "gen", "--out", out); code != 1 || !strings.Contains(text, "exists") {
		t.Fatalf("keys gen over an existing key: %d %s", code, text)
	}
}

// TestDataFoundInParent: "tern deploy ." inside an app directory finds
// the .tern of the tern up it runs under, as git finds .git.
func TestDataFoundInParent(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(root, "apps", "hello")
	for _, d := range []string{filepath.Join(root, ".tern"), app} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(app)
	h := hubFlags{data: defaultData}
	h.resolveData()
	if want := filepath.Join(root, ".tern"); h.data != want {
		t.Fatalf("data = %q, want %q", h.data, want)
	}
	// An explicit --data is taken as given.
	h = hubFlags{data: "elsewhere"}
	h.resolveData()
	if h.data != "elsewhere" {
		t.Fatalf("data = %q, want elsewhere", h.data)
	}
}
