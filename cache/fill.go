package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	gosync "sync"
	"time"
)

// bufPool holds chunk buffers, so steady traffic does not allocate one
// per fill or per large read.
var bufPool = gosync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// fill is a body being written to storage. Readers follow it as it
// arrives from the origin: the chunk being stored from memory, earlier
// chunks from storage. So clients receive a large body while it is
// stored, any number of collapsed requests share one origin fetch, and
// clients do not wait for storage writes: a client whose body has arrived
// in full is answered while the entry is still being committed (while
// fewer than maxEarlyCommits fills are).
type fill struct {
	c    *Cache
	key  string
	body string
	meta *meta
	// length is the Content-Length announced by the origin, or -1.
	length int64
	// withheld are the origin's fields that were not stored (qualified
	// private or no-cache): for the leader's response only.
	withheld http.Header

	purge purgeMark // what purges since it began did to it; under Cache.mu

	mu       gosync.Mutex
	written  int64         // bytes readable from storage
	cur      []byte        // the latest chunk from the origin, until the next
	curAt    int64         // offset of cur[0]
	arrived  int64         // bytes received from the origin
	complete bool          // the origin's body arrived in full, as announced
	done     bool          // no more bytes will come: committed, or failed
	err      error         // why the fill failed, when it did
	changed  chan struct{} // closed and replaced on every change
	// unstored says the storage failed to take the body: the fill only
	// relays the origin's bytes to its readers, each chunk held until
	// every reader has it, and takes no new readers (they fetch anew).
	unstored bool
	readers  map[*fillReader]struct{} // registered readers (newReader)
	handing  bool                     // handOver waits for readers to move on

	// detach, when set, stops new requests from joining the fill.
	detach func()
}

// newFill starts a fill of key for flight fl (nil for none); its run
// ends it.
func newFill(c *Cache, fl *flight, key string, m *meta, length int64) *fill {
	f := &fill{c: c, key: key, body: newBodyName(), meta: m, length: length, changed: make(chan struct{}),
		readers: map[*fillReader]struct{}{}}
	c.startFill(f, fl)
	return f
}

func (f *fill) progress(n int64, done bool, err error) {
	f.mu.Lock()
	f.written += n
	f.done = f.done || done
	if err != nil && f.err == nil {
		f.err = err
	}
	f.notifyLocked()
	f.mu.Unlock()
}

// arrive publishes chunk b, just read from the origin at offset at, to
// readers; complete says the origin's body ends with it. b stays readable
// until the next call, which is how the caller may reuse its buffer; a
// nil b (with complete false) only withdraws the previous chunk.
func (f *fill) arrive(b []byte, at int64, complete bool) {
	f.mu.Lock()
	f.cur, f.curAt = b, at
	f.arrived = max(f.arrived, at+int64(len(b)))
	f.complete = f.complete || complete
	f.notifyLocked()
	f.mu.Unlock()
}

func (f *fill) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// arrivedInFull reports whether the origin's body has arrived in full,
// so that only its commit is pending.
func (f *fill) arrivedInFull() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.complete
}

// wait blocks until the fill is committed or has failed, or ctx ends.
func (f *fill) wait(ctx context.Context) error {
	for {
		f.mu.Lock()
		done, changed := f.done, f.changed
		f.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// run copies src into storage chunk by chunk, then commits the entry. It
// owns src and closes it.
func (f *fill) run(src io.ReadCloser) {
	defer src.Close()
	defer f.c.endFill(f)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	defer f.arrive(nil, 0, false) // readers let go of buf before the pool has it
	buf := *bp
	var size int64
	var small []byte // the whole body, when it fits one chunk
	_, inline := f.c.st.(smallCommitter)
	for idx := 0; ; idx++ {
		if idx > 0 {
			f.arrive(nil, 0, false) // buf is refilled next; its chunk is stored
		}
		n, rerr := readChunk(src, buf)
		if rerr == nil || rerr == io.EOF {
			f.arrive(buf[:n], size, false)
			if rerr == io.EOF && (f.length < 0 || size+int64(n) == f.length) {
				// The body is complete, and its clients may finish before
				// the commit while few commits are pending. Past that they
				// wait, so that bodies waiting on slow storage do not pile
				// up in memory (a chunk buffer each).
				f.c.commitSlots <- struct{}{}
				defer func() { <-f.c.commitSlots }()
				f.arrive(buf[:n], size, true)
			}
		}
		if idx == 0 && rerr == io.EOF && inline {
			// The whole body is in buf: stored with the entry, in one write.
			size, small = int64(n), buf[:n]
			break
		}
		if n > 0 && !f.isUnstored() {
			if err := f.c.st.WriteChunk(f.body, idx, buf[:n]); err != nil {
				f.giveUpStore(fmt.Errorf("fill %s: %w", f.meta.Primary, err))
			}
		}
		if f.isUnstored() {
			// Relay only: the chunk goes to the readers from memory.
			if rerr != nil && rerr != io.EOF {
				f.endUnstored(fmt.Errorf("fill %s: read origin body at %d bytes: %w", f.meta.Primary, size, rerr))
				return
			}
			if !f.handOver(size + int64(n)) {
				f.endUnstored(errNoReaders)
				return
			}
			size += int64(n)
			switch {
			case rerr == nil:
				continue
			case f.length >= 0 && size != f.length:
				f.endUnstored(fmt.Errorf("fill %s: origin sent %d bytes of %d", f.meta.Primary, size, f.length))
			default:
				f.endUnstored(nil)
			}
			return
		}
		if n > 0 {
			size += int64(n)
		}
		if rerr == io.EOF {
			if idx == 0 {
				small = buf[:n]
			}
			break
		}
		if rerr != nil {
			f.abort(fmt.Errorf("fill %s: read origin body at %d bytes: %w", f.meta.Primary, size, rerr))
			return
		}
		f.progress(int64(n), false, nil)
	}
	if f.length >= 0 && size != f.length {
		f.abort(fmt.Errorf("fill %s: origin sent %d bytes of %d", f.meta.Primary, size, f.length))
		return
	}
	if err := f.c.commit(f, size, small, inline && small != nil); err != nil {
		// The body is all here, its last chunk (or all of a small one)
		// in memory only: the readers finish from it before it goes.
		f.giveUpStore(err)
		f.handOver(size)
		f.endUnstored(nil)
		return
	}
	f.progress(size-f.writtenNow(), true, nil)
}

// relayWait is how long a fill that gave up storing waits for a reader
// to take a chunk before it cuts that reader off, so that one stalled
// client cannot hold the origin's body, and the others, forever.
const relayWait = 30 * time.Second

// errNoReaders ends a fill that gave up storing once no reader is left.
var errNoReaders = errors.New("storage failed and no reader is left")

// errSlowReader cuts off a reader that did not take a relayed chunk
// within relayWait.
var errSlowReader = errors.New("reader too slow for a body that is not stored")

func (f *fill) isUnstored() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unstored
}

// giveUpStore makes f a relay after the storage failed to take its body
// with err: its readers keep receiving the origin's bytes, new requests
// no longer join it, and nothing of it is committed.
func (f *fill) giveUpStore(err error) {
	f.c.storeFailed(err)
	if f.detach != nil {
		f.detach()
	}
	f.mu.Lock()
	f.unstored = true
	f.notifyLocked()
	f.mu.Unlock()
}

// handOver waits until every reader has read up to offset end, which the
// current chunk reaches, cutting off readers slower than relayWait. It
// reports false when no reader is left.
func (f *fill) handOver(end int64) bool {
	var timeout <-chan time.Time
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handing = true
	defer func() { f.handing = false }()
	for {
		behind := 0
		for r := range f.readers {
			if r.pos < end {
				behind++
			}
		}
		if len(f.readers) == 0 {
			return false
		}
		if behind == 0 {
			return true
		}
		if timeout == nil {
			t := time.NewTimer(relayWait)
			defer t.Stop()
			timeout = t.C
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
			f.mu.Lock()
		case <-timeout:
			f.mu.Lock()
			for r := range f.readers {
				if r.pos < end {
					r.cut = true
					delete(f.readers, r)
				}
			}
			f.notifyLocked()
		}
	}
}

// endUnstored ends a fill that gave up storing: its readers get err, or
// the end of the body when err is nil, and the chunks stored before the
// failure go.
func (f *fill) endUnstored(err error) {
	f.progress(0, true, err)
	if derr := f.c.st.DeleteBody(f.body); derr != nil {
		f.c.logger.Warn("cache cleanup failed", "body", f.body, "err", derr)
	}
}

// newReader returns a reader of f's body from offset off, or false when
// f gave up storing and no longer takes readers. Its Close must be called.
func (f *fill) newReader(ctx context.Context, off int64) (*fillReader, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unstored {
		return nil, false
	}
	r := &fillReader{ctx: ctx, f: f, off: off, pos: off}
	f.readers[r] = struct{}{}
	return r, true
}

func (f *fill) writtenNow() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.written
}

func (f *fill) abort(err error) {
	f.c.logger.Warn("cache fill failed", "url", f.meta.Primary, "err", err)
	f.progress(0, true, err)
	if derr := f.c.st.DeleteBody(f.body); derr != nil {
		f.c.logger.Warn("cache cleanup failed", "body", f.body, "err", derr)
	}
}

// readChunk reads until buf is full or src fails; unlike io.ReadFull it
// keeps io.EOF apart from a transport's io.ErrUnexpectedEOF.
func readChunk(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// fillReader reads a fill's body from offset off as it is written.
type fillReader struct {
	ctx context.Context
	f   *fill
	off int64
	buf []byte // current chunk
	at  int64  // offset of buf[0]
	bp  *[]byte
	// pos is how far the reader has the body (read from memory, or in
	// its buffer from storage), and cut says the fill cut it off
	// (fill.handOver); both under the fill's mu.
	pos int64
	cut bool
}

func (r *fillReader) Read(p []byte) (int, error) {
	f := r.f
	for {
		if r.buf != nil && r.off >= r.at && r.off < r.at+int64(len(r.buf)) {
			n := copy(p, r.buf[r.off-r.at:])
			r.off += int64(n)
			return n, nil
		}
		f.mu.Lock()
		if r.cut {
			f.mu.Unlock()
			return 0, errSlowReader
		}
		if r.off >= f.curAt && r.off < f.curAt+int64(len(f.cur)) {
			// From memory, under the lock that keeps the buffer from reuse.
			n := copy(p, f.cur[r.off-f.curAt:])
			r.pos = r.off + int64(n)
			if f.handing {
				f.notifyLocked()
			}
			f.mu.Unlock()
			r.off += int64(n)
			return n, nil
		}
		written, arrived, complete, done, err, changed := f.written, f.arrived, f.complete, f.done, f.err, f.changed
		f.mu.Unlock()
		if complete && r.off >= arrived {
			return 0, io.EOF // whether or not the commit is done, or worked
		}
		if err != nil {
			return 0, err
		}
		if r.off < written {
			if r.bp == nil {
				r.bp = bufPool.Get().(*[]byte)
			}
			idx := int(r.off / ChunkSize)
			b, err := f.c.st.ReadChunk(f.body, idx, (*r.bp)[:0])
			if err != nil {
				return 0, fmt.Errorf("read %s: %w", f.meta.Primary, err)
			}
			r.buf, r.at = b, int64(idx)*ChunkSize
			f.mu.Lock()
			r.pos = max(r.pos, r.at+int64(len(b)))
			if f.handing {
				f.notifyLocked()
			}
			f.mu.Unlock()
			continue
		}
		if done {
			return 0, io.EOF
		}
		select {
		case <-changed:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

// Close releases the reader's buffer and lets the fill go on without it.
func (r *fillReader) Close() error {
	f := r.f
	f.mu.Lock()
	if _, ok := f.readers[r]; ok {
		delete(f.readers, r)
		f.notifyLocked()
	}
	f.mu.Unlock()
	if r.bp != nil {
		bufPool.Put(r.bp)
		r.bp, r.buf = nil, nil
	}
	return nil
}

// errDamaged marks a committed body with a missing or short chunk: what
// a power cut can leave of chunks the storage had not synced yet.
var errDamaged = errors.New("stored body is damaged")

// readStored reads chunk idx of committed entry it, whose body was
// written in chunks of chunkSize, into buf[:0], and checks its length
// against the entry's size. A damaged body drops the entry, so that the
// next request fetches it anew instead of failing the same way.
func (c *Cache) readStored(it *item, chunkSize int64, idx int, buf []byte) ([]byte, error) {
	b, err := c.st.ReadChunk(it.body, idx, buf)
	switch want := min(chunkSize, it.size-int64(idx)*chunkSize); {
	case errors.Is(err, ErrNotFound):
		err = fmt.Errorf("%w: %w", errDamaged, err)
	case err == nil && int64(len(b)) != want:
		err = fmt.Errorf("read body %s chunk %d: %d bytes, want %d: %w", it.body, idx, len(b), want, errDamaged)
	}
	return b, c.checkDamage(it, err)
}

// openStored opens chunk idx of committed entry it, as readStored reads
// it, when the storage keeps it as a file; nil and no error when not (or
// when the storage cannot tell), so the caller reads it instead.
func (c *Cache) openStored(it *item, chunkSize int64, idx int) (*os.File, error) {
	cf, ok := c.st.(chunkFiler)
	if !ok {
		return nil, nil
	}
	f, err := cf.ChunkFile(it.body, idx)
	if f == nil || err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if want := min(chunkSize, it.size-int64(idx)*chunkSize); err == nil && fi.Size() != want {
		err = fmt.Errorf("open body %s chunk %d: %d bytes, want %d: %w", it.body, idx, fi.Size(), want, errDamaged)
	}
	if err != nil {
		f.Close()
		return nil, c.checkDamage(it, err)
	}
	return f, nil
}

// checkDamage drops entry it when err says its body is damaged, and
// returns err.
func (c *Cache) checkDamage(it *item, err error) error {
	if errors.Is(err, errDamaged) {
		c.logger.Warn("cache entry damaged, dropped", "url", it.meta.Primary, "err", err)
		c.drop(it)
	}
	return err
}

// entryReader reads a committed body; it is an io.ReadSeeker so that
// http.ServeContent can serve ranges and conditionals from it.
type entryReader struct {
	c         *Cache
	it        *item
	chunkSize int64
	off       int64
	buf       []byte
	at        int64
	bp        *[]byte
}

// reader returns a reader of the body of committed entry it.
func (c *Cache) reader(it *item, m *meta) *entryReader {
	return &entryReader{c: c, it: it, chunkSize: int64(m.ChunkSize)}
}

func (r *entryReader) Read(p []byte) (int, error) {
	size := r.it.size
	if r.off >= size {
		return 0, io.EOF
	}
	if r.buf == nil || r.off < r.at || r.off >= r.at+int64(len(r.buf)) {
		idx := r.off / r.chunkSize
		var dst []byte
		if size <= 4096 {
			dst = make([]byte, 0, size) // small bodies: no pooled MiB
		} else {
			if r.bp == nil {
				r.bp = bufPool.Get().(*[]byte)
			}
			dst = (*r.bp)[:0]
		}
		b, err := r.c.readStored(r.it, r.chunkSize, int(idx), dst)
		if err != nil {
			return 0, err
		}
		r.buf, r.at = b, idx*r.chunkSize
	}
	n := copy(p, r.buf[r.off-r.at:])
	r.off += int64(n)
	return n, nil
}

func (r *entryReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.it.size + offset
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("seek: negative position")
	}
	r.off = abs
	return abs, nil
}

// Close releases the reader's buffer.
func (r *entryReader) Close() error {
	if r.bp != nil {
		bufPool.Put(r.bp)
		r.bp, r.buf = nil, nil
	}
	return nil
}
