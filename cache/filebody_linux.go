package cache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	gosync "sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// A fileBody is a copy of a RAM-tier body in a sealed memfd, for sending
// with sendfile(2): the kernel then hands the file's pages to the socket
// instead of copying the bytes out of the process, one of the two copies
// a 100 KB response costs over plain HTTP. The seals make the kernel
// refuse any change to the bytes, which is what makes handing its pages
// to the network safe: a send still in flight when the body is evicted
// reads the same bytes from its own descriptor.
//
// Go's sendfile path reads from the descriptor's file offset, so every
// send needs an open file description of its own: dup would share the
// offset. Open ones are kept for the next send (at most maxIdleFiles).
type fileBody struct {
	mu   gosync.Mutex
	fd   int        // the memfd; -1 once closed
	idle []*os.File // descriptions with offsets of their own, ready to send
}

// maxIdleFiles bounds the descriptions a fileBody keeps between sends:
// as many as the concurrent sends of one hot body, up to this, so that a
// burst of hits on it does not open and close one per hit (an open costs
// six syscalls: open, two fcntl, epoll_ctl, seek, close).
const maxIdleFiles = 64

// openFiles counts the memfds and descriptions of all fileBodies, which
// maxFiles bounds so that hot bodies cannot use up the descriptors the
// process needs for connections.
var (
	openFiles atomic.Int64
	maxFiles  = fileBudget()
)

// fileBudget is a quarter of the process's descriptor limit (which Go
// raises to the hard limit at start), at most 16384.
func fileBudget() int64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return int64(min(rl.Cur/4, 16384))
}

var errFileBudget = errors.New("descriptor budget for hot bodies used up")

func reserveFile() bool {
	if openFiles.Add(1) > maxFiles {
		openFiles.Add(-1)
		return false
	}
	return true
}

// newFileBody copies b into a sealed memfd.
func newFileBody(b []byte) (*fileBody, error) {
	if !reserveFile() {
		return nil, errFileBudget
	}
	fd, err := unix.MemfdCreate("tern-cache-body", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		openFiles.Add(-1)
		return nil, fmt.Errorf("memfd: %w", err)
	}
	fb := &fileBody{fd: fd}
	for off := 0; off < len(b); {
		n, err := unix.Write(fd, b[off:])
		if err != nil {
			fb.close()
			return nil, fmt.Errorf("memfd write: %w", err)
		}
		off += n
	}
	const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		fb.close()
		return nil, fmt.Errorf("memfd seal: %w", err)
	}
	return fb, nil
}

// open returns a description of the body positioned at off, or nil when
// fb is closed or the budget is used up. Give it back with put.
func (fb *fileBody) open(off int64) *os.File {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if fb.fd < 0 {
		return nil
	}
	if n := len(fb.idle); n > 0 {
		f := fb.idle[n-1]
		fb.idle = fb.idle[:n-1]
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			closeFile(f)
			return nil
		}
		return f
	}
	if !reserveFile() {
		return nil
	}
	// A memfd has no path but this one; opening it (not dup) gives a new
	// description. fb.mu keeps fd from being closed and reused meanwhile.
	f, err := os.Open("/proc/self/fd/" + strconv.Itoa(fb.fd))
	if err != nil {
		openFiles.Add(-1)
		return nil
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		closeFile(f)
		return nil
	}
	return f
}

// put takes back a description from open.
func (fb *fileBody) put(f *os.File) {
	fb.mu.Lock()
	if fb.fd >= 0 && len(fb.idle) < maxIdleFiles {
		fb.idle = append(fb.idle, f)
		fb.mu.Unlock()
		return
	}
	fb.mu.Unlock()
	closeFile(f)
}

// close releases the memfd and the idle descriptions. Descriptions out
// for a send stay valid, with their own reference to the file, and are
// closed by put.
func (fb *fileBody) close() {
	fb.mu.Lock()
	fd, idle := fb.fd, fb.idle
	fb.fd, fb.idle = -1, nil
	fb.mu.Unlock()
	if fd < 0 {
		return
	}
	unix.Close(fd)
	openFiles.Add(-1)
	for _, f := range idle {
		closeFile(f)
	}
}

func closeFile(f *os.File) {
	f.Close()
	openFiles.Add(-1)
}
