package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNew scaffolds an app in each language, builds it with the command
// its tern.toml names, and checks it as deploy would.
func TestNew(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module with the language's toolchain; skipped with -short")
	}
	for _, tc := range []struct{ lang, tool string }{{"go", "go"}, {"wat", "wat2wasm"}} {
		t.Run(tc.lang, func(t *testing.T) {
			if _, err := exec.LookPath(tc.tool); err != nil {
				t.Skipf("%s is not installed on this machine", tc.tool)
			}
			dir := filepath.Join(t.TempDir(), "app")
			if code, text := runTern("new", "--lang", tc.lang, "--dir", dir, "demo-"+tc.lang); code != 0 || !strings.Contains(text, "tern deploy .") {
				t.Fatalf("tern new: %d %s", code, text)
			}
			toml, err := os.ReadFile(filepath.Join(dir, "tern.toml"))
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(toml), "\n")
			build, ok := strings.CutPrefix(first, "# build: ")
			if !ok {
				t.Fatalf("tern.toml does not start with its build line: %q", first)
			}
			cmd := exec.Command("sh", "-c", build)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", build, err, out)
			}
			if code, text := runTern("check", dir); code != 0 || !strings.Contains(text, "app demo-"+tc.lang+" 0.1.0: ok") {
				t.Fatalf("check: %d %s", code, text)
			}
			if code, text := runTern("new", "--lang", tc.lang, "--dir", dir, "demo"); code != 1 || !strings.Contains(text, "exists") {
				t.Fatalf("tern new over an existing directory: %d %s", code, text)
			}
		})
	}
	if code, text := runTern("new", "--lang", "cobol", "x"); code != 1 || !strings.Contains(text, "want go or wat") {
		t.Fatalf("unknown language: %d %s", code, text)
	}
	if code, text := runTern("new", "Bad_Name"); code != 1 || !strings.Contains(text, "lower-case") {
		t.Fatalf("bad name: %d %s", code, text)
	}
}
