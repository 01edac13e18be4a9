//go:build !windows

package localca

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFilePermissions: the CA key is readable by its owner only. POSIX
// permissions, so not on Windows.
func TestFilePermissions(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Ensure(dir, nil, now); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{KeyFile: 0o600, CertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %v, want %v", name, got, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want the two CA files", len(entries))
	}
}
