package wasmhost

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"syscall"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"
)

// mountFS is one read-only directory mount, served through an os.Root so
// that no path, ".." or symbolic link the guest names resolves outside
// the directory.
//
// wazero's own directory mount joins the guest's path to the host
// directory and lets the kernel follow links from there: a link inside
// the mount to ../secret or /etc read the target. os.Root resolves every
// component itself, relative to the directory it holds open, and refuses
// what would leave it; a link whose target stays inside still works.
// Writes are refused by wazero's read-only wrapper (see newMount).
type mountFS struct {
	experimentalsys.UnimplementedFS
	root  *os.Root
	files sysfs.AdaptFS // opens files through root; see rootFiles
}

var _ experimentalsys.FS = (*mountFS)(nil)

// openMount opens host as a read-only mount. The caller closes the root
// once no instance can use the mount.
func openMount(host string) (experimentalsys.FS, *os.Root, error) {
	root, err := os.OpenRoot(host)
	if err != nil {
		return nil, nil, err
	}
	m := &mountFS{root: root, files: sysfs.AdaptFS{FS: rootFiles{root}}}
	return &sysfs.ReadFS{FS: m}, root, nil
}

// String names the mount in wazero's messages.
func (m *mountFS) String() string { return m.root.Name() }

// OpenFile implements experimentalsys.FS. Flags that write are refused
// before this by the read-only wrapper.
func (m *mountFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	name := rootPath(p)
	if flag&experimentalsys.O_NOFOLLOW != 0 {
		// The guest asked not to follow a final link (WASI's lookupflags
		// without symlink_follow): refuse one, as open(2) does.
		if fi, err := m.root.Lstat(name); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, experimentalsys.ELOOP
		}
	}
	f, errno := m.files.OpenFile(name, flag, perm)
	if errno != 0 {
		return nil, errno
	}
	if flag&experimentalsys.O_DIRECTORY != 0 {
		if dir, errno := f.IsDir(); errno != 0 || !dir {
			_ = f.Close()
			if errno == 0 {
				errno = experimentalsys.ENOTDIR
			}
			return nil, errno
		}
	}
	return f, 0
}

// Stat implements experimentalsys.FS.
func (m *mountFS) Stat(p string) (sys.Stat_t, experimentalsys.Errno) {
	fi, err := m.root.Stat(rootPath(p))
	if err != nil {
		return sys.Stat_t{}, rootErrno(err)
	}
	return sys.NewStat_t(fi), 0
}

// Lstat implements experimentalsys.FS.
func (m *mountFS) Lstat(p string) (sys.Stat_t, experimentalsys.Errno) {
	fi, err := m.root.Lstat(rootPath(p))
	if err != nil {
		return sys.Stat_t{}, rootErrno(err)
	}
	return sys.NewStat_t(fi), 0
}

// Readlink implements experimentalsys.FS. A link's text is data of the
// mount, whatever it points at; following it is what os.Root guards.
func (m *mountFS) Readlink(p string) (string, experimentalsys.Errno) {
	target, err := m.root.Readlink(rootPath(p))
	if err != nil {
		return "", rootErrno(err)
	}
	return target, 0
}

// rootFiles is the fs.FS that wazero's file adapter opens files with: it
// opens them through the root, and reports a refused escape as a
// permission error.
type rootFiles struct{ root *os.Root }

func (r rootFiles) Open(name string) (fs.File, error) {
	f, err := r.root.Open(name)
	if err != nil {
		// wazero's adapter maps an Errno inside a PathError back as is.
		return nil, &fs.PathError{Op: "open", Path: name, Err: rootErrno(err)}
	}
	return f, nil
}

// rootPath turns a path wazero passes a mount (relative to it, perhaps
// with a leading or trailing slash) into one os.Root accepts.
func rootPath(p string) string {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	if p == "" {
		return "."
	}
	return path.Clean(p)
}

// rootErrno maps an error of os.Root to the errno the guest sees. os.Root
// reports a path that would leave it (through "..", an absolute link or
// a link out) with an error of its own, not a system errno: that is
// EPERM, as wazero answers a lexical escape.
func rootErrno(err error) experimentalsys.Errno {
	var errno syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.As(err, &errno), errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrInvalid),
		errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrClosed):
		return experimentalsys.UnwrapOSError(err)
	default:
		return experimentalsys.EPERM
	}
}
