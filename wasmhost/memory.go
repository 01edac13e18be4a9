package wasmhost

import (
	"context"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// memPool recycles guest linear memories between instances.
//
// Every cold start needs at least one zeroed 64KiB page, and Go
// allocates anything over 32KiB on its large-object path, under a heap
// lock, and makes the collector run every few dozen requests: at a few
// microseconds per instance, the memory was most of the cost and all of
// the tail. Recycled buffers are zeroed when returned, only as far as the
// guest could have written, so a guest never sees another's data.
//
// Buffers come in power-of-two classes from 64KiB to 8MiB; a memory that
// grows past the largest class is left to the collector. sync.Pool drops
// what is idle across collections, so the pool never pins memory.
type memPool struct {
	classes [memClasses]sync.Pool
	// closed stops recycling once the runtime is closing: closing a wazero
	// runtime frees the memories of instances that may still be running,
	// and such a buffer must never reach another instance.
	closed *atomic.Bool
}

const (
	memClasses  = 8 // 64KiB << 0 .. 64KiB << 7 = 8MiB
	minMemClass = pageSize
)

// withMemPool makes instances created with ctx take their memory from p.
func withMemPool(ctx context.Context, p *memPool) context.Context {
	return experimental.WithMemoryAllocator(ctx, p)
}

// Allocate implements experimental.MemoryAllocator.
func (p *memPool) Allocate(_, max uint64) experimental.LinearMemory {
	return &linearMemory{pool: p, max: max}
}

// class returns the class index for a buffer of size bytes, or -1 if
// none is large enough.
func class(size uint64) int {
	if size <= minMemClass {
		return 0
	}
	c := bits.Len64((size - 1) / minMemClass)
	if c >= memClasses {
		return -1
	}
	return c
}

// get returns a zeroed buffer with capacity for size bytes.
func (p *memPool) get(size uint64) []byte {
	c := class(size)
	if c < 0 {
		return make([]byte, size)
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 0, minMemClass<<c)
}

// put zeroes the first used bytes of b and recycles it.
func (p *memPool) put(b []byte, used int) {
	c := class(uint64(cap(b)))
	if c < 0 || uint64(cap(b)) != minMemClass<<c || p.closed.Load() {
		return
	}
	clear(b[:used])
	b = b[:0]
	p.classes[c].Put(&b)
}

// linearMemory is one instance's memory, backed by a pooled buffer.
type linearMemory struct {
	pool *memPool
	max  uint64
	buf  []byte // len is the memory's size: all the guest could touch
}

// Reallocate implements experimental.LinearMemory. Bytes past the old
// length are zero: pooled buffers are zero beyond what was used.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	grown := m.pool.get(size)[:size]
	copy(grown, m.buf)
	if m.buf != nil {
		m.pool.put(m.buf, len(m.buf))
	}
	m.buf = grown
	return m.buf
}

// Free implements experimental.LinearMemory.
func (m *linearMemory) Free() {
	if m.buf != nil {
		m.pool.put(m.buf, len(m.buf))
		m.buf = nil
	}
}
