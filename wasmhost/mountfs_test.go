package wasmhost

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// secret is what lies outside every mount in these tests: a guest that
// gets to see it has escaped.
const secret = "outside the mount\n"

// escapeTree builds a directory tree whose mount, mount/, holds symbolic
// links pointing out of it, next to a file outside/secret.txt that the
// links lead to. It returns the mount and the secret file's path.
func escapeTree(t testing.TB) (mount, secretFile string) {
	t.Helper()
	dir := t.TempDir()
	mount = filepath.Join(dir, "mount")
	secretFile = filepath.Join(dir, "outside", "secret.txt")
	must(t, os.MkdirAll(filepath.Join(mount, "sub"), 0o755))
	must(t, os.MkdirAll(filepath.Dir(secretFile), 0o755))
	must(t, os.WriteFile(secretFile, []byte(secret), 0o644))
	must(t, os.WriteFile(filepath.Join(mount, "hello.txt"), []byte("inside\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(mount, "sub", "inner.txt"), []byte("inner\n"), 0o644))
	for link, target := range map[string]string{
		"inlink":       "sub/inner.txt",         // stays inside: allowed
		"subup":        "sub/../hello.txt",      // up, but still inside: allowed
		"uplink":       "../outside/secret.txt", // the cases
		"etclink":      "/etc",
		"abslink":      "/etc/hostname",
		"abssecret":    secretFile,
		"updir":        "..",
		"sub/deepup":   "../../outside/secret.txt",
		"sub/rootlink": "../",
		"loop":         "loop",
	} {
		must(t, os.Symlink(target, filepath.Join(mount, link)))
	}
	return mount, secretFile
}

// refused is the fsread guest's answer to a path that leaves its mount:
// EPERM, as wazero answers a lexical escape.
const refused = "error=63\n"

// TestMountRefusesEscapes is a security case: no path, ".." or symbolic
// link a guest names may reach outside its mount (issue: links to
// ../outside/secret.txt, /etc and /etc/hostname read the targets).
func TestMountRefusesEscapes(t *testing.T) {
	h := newHost(t)
	mount, _ := escapeTree(t)
	app, err := h.Load(context.Background(), AppConfig{
		Name: "fsread",
		Wasm: guest(t, "faults/fsread.wasm"),
		Dirs: map[string]string{"/data": mount},
	})
	must(t, err)
	t.Cleanup(func() { must(t, app.Close(context.Background())) })

	tests := []struct {
		name, op, path string
		want           string
	}{
		{"file in the mount", "read", "hello.txt", "ok\ninside\n"},
		{"link inside the mount", "read", "inlink", "ok\ninner\n"},
		{"link up and back inside", "read", "subup", "ok\ninside\n"},
		{"stat inside", "stat", "sub/inner.txt", "ok\n"},
		{"link to ../outside/secret.txt", "read", "uplink", refused},
		{"link two levels up", "read", "sub/deepup", refused},
		{"link to /etc, then a file in it", "read", "etclink/passwd", refused},
		{"link to /etc, listed", "list", "etclink", refused},
		{"link to /etc/hostname", "read", "abslink", refused},
		{"absolute link to the secret", "read", "abssecret", refused},
		{"link to the parent, then down", "read", "updir/outside/secret.txt", refused},
		{"link to the parent, listed", "list", "updir", refused},
		// wazero cleans the path lexically first, to sub/outside/...: ENOENT.
		{"link to the mount root, then up", "read", "sub/rootlink/../outside/secret.txt", "error=44\n"},
		{"stat through a link out", "stat", "uplink", refused},
		{"stat of /etc through a link", "stat", "etclink/passwd", refused},
		{"dot-dot in the path", "read", "../outside/secret.txt", refused},
		{"absolute path", "read", "/etc/passwd", refused},
		{"link loop", "read", "loop", "error=32\n"}, // ELOOP
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(app, httptest.NewRequest("GET", "/fs?"+tt.op+"&"+tt.path, nil), "/fs")
			equal(t, "status", w.Code, 200)
			body := w.Body.String()
			if strings.Contains(body, strings.TrimSpace(secret)) || strings.Contains(body, "root:") {
				t.Fatalf("guest read outside its mount: %q", body)
			}
			if body != tt.want {
				t.Fatalf("%s %s = %q, want %q", tt.op, tt.path, body, tt.want)
			}
		})
	}
	t.Run("listing the mount", func(t *testing.T) {
		w := serve(app, httptest.NewRequest("GET", "/fs?list&.", nil), "/fs")
		if body := w.Body.String(); !strings.HasPrefix(body, "ok\n") || !strings.Contains(body, "\nhello.txt\n") {
			t.Fatalf("list . = %q", body)
		}
	})
}

// FuzzMountPath tries guest paths, as wazero hands them to a mount,
// against a tree whose links point out of it: whatever the path, what
// the guest can open, stat or list must be inside the mount.
func FuzzMountPath(f *testing.F) {
	for _, p := range []string{
		".", "hello.txt", "inlink", "subup", "uplink", "sub/deepup", "etclink", "etclink/passwd",
		"abslink", "abssecret", "updir", "updir/outside/secret.txt", "sub/rootlink/../outside/secret.txt",
		"..", "../outside/secret.txt", "/etc/passwd", "//..//outside", "./sub/../..", "sub/", "loop", "\x00",
	} {
		f.Add(p)
	}
	mount, secretFile := escapeTree(f)
	mfs, root, err := openMount(mount)
	must(f, err)
	f.Cleanup(func() { root.Close() })
	// Nothing the guest reaches may be one of these.
	forbidden := map[uint64]string{}
	for _, p := range []string{secretFile, filepath.Dir(secretFile), filepath.Dir(mount), "/etc", "/etc/hostname", "/"} {
		if fi, err := os.Stat(p); err == nil && inode(fi) != 0 {
			forbidden[inode(fi)] = p
		}
	}
	check := func(t *testing.T, what string, ino uint64) {
		if p, ok := forbidden[ino]; ok && ino != 0 {
			t.Fatalf("%s reached %s, outside the mount", what, p)
		}
	}
	f.Fuzz(func(t *testing.T, p string) {
		if st, errno := mfs.Stat(p); errno == 0 {
			check(t, "Stat("+p+")", st.Ino)
		}
		if st, errno := mfs.Lstat(p); errno == 0 {
			check(t, "Lstat("+p+")", st.Ino)
		}
		file, errno := mfs.OpenFile(p, 0, 0)
		if errno != 0 {
			return
		}
		defer file.Close()
		st, errno := file.Stat()
		if errno != 0 {
			t.Fatalf("stat of opened %q: %v", p, errno)
		}
		check(t, "OpenFile("+p+")", st.Ino)
		if dir, _ := file.IsDir(); dir {
			entries, _ := file.Readdir(-1)
			for _, e := range entries {
				if e.Name == "outside" || e.Name == "secret.txt" || e.Name == "mount" {
					t.Fatalf("listing %q shows %s, outside the mount", p, e.Name)
				}
			}
			return
		}
		buf := make([]byte, 4096)
		n, _ := file.Read(buf)
		if strings.Contains(string(buf[:n]), strings.TrimSpace(secret)) {
			t.Fatalf("OpenFile(%q) read the secret", p)
		}
	})
}
