// Package testfs gives tests a small file system of their own, so that
// they can fill it up: a size-limited tmpfs, which needs root.
package testfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/tern-edge/tern/internal/disk"
)

// Small mounts a tmpfs of size bytes on a fresh directory and returns it;
// the mount goes at cleanup. Where no tmpfs can be mounted (not Linux,
// not root, no permission in this container) it skips the test with the
// reason.
func Small(t testing.TB, size int64) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("needs a small file system: tmpfs is Linux only, this is %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs a small file system: mounting a tmpfs takes root")
	}
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("needs a small file system: mount -t tmpfs failed (%v): %s", err, out)
	}
	// Registered after TempDir's cleanup, so it runs first: the mount goes
	// before the directory is removed.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Fill writes a file in dir that leaves about free bytes of its file
// system free, and returns its path; removing it gives the space back.
func Fill(t testing.TB, dir string, free int64) string {
	t.Helper()
	u, err := disk.Of(dir)
	if err != nil {
		t.Fatal(err)
	}
	avail := u.Free
	f, err := os.CreateTemp(dir, "filler")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for n := avail - free; n > 0; n -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), n)]); errors.Is(err, syscall.ENOSPC) {
			break // full already: what was asked, or near enough
		} else if err != nil {
			t.Fatalf("fill %s: %v", dir, err)
		}
	}
	return f.Name()
}
