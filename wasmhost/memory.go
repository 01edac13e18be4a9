package wasmhost

import (
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// memPool hands out guest linear memories and takes them back.
//
// Where the platform allows (memory_linux.go), each memory is a
// reservation of address space the size of the memory's cap, made
// readable and writable as the guest grows it: a grow never moves or
// copies the memory, so a guest growing a page at a time to a 64 MiB cap
// costs 64 MiB, not the 32 GiB of copies that reallocating every grow
// added up to. A memory the guest grew large goes back to the system when
// its instance ends; small ones are kept, zeroed, for the next instance,
// since every cold start needs at least one zeroed page and a fresh
// mapping costs page faults. Elsewhere, or if the reservation fails,
// memories are Go buffers from power-of-two pools up to 8 MiB, growing
// by doubling beyond that (heapMemory).
//
// Recycled memory is zeroed as far as the guest could have written, so a
// guest never sees another's data.
type memPool struct {
	// closed stops recycling once the runtime is closing.
	closed *atomic.Bool
	// mapped counts the bytes ever made accessible in reservations, for
	// benchmarks.
	mapped atomic.Uint64

	heap [memClasses]sync.Pool // heapMemory buffers

	mu        sync.Mutex
	idle      map[uint64][]*region // reservations kept for reuse, by size
	idleBytes uint64               // accessible bytes held by idle
}

const (
	memClasses  = 8 // 64KiB << 0 .. 64KiB << 7 = 8MiB
	minMemClass = pageSize

	// keepMemory is the most a reservation may have in use to be kept
	// for reuse after its instance, and maxIdleMemory the most all kept
	// reservations may hold: past these, memory goes back to the system.
	keepMemory    = 8 << 20
	maxIdleMemory = 64 << 20
)

// requestMemory is the experimental.MemoryAllocator of one request: it
// remembers the memories its instance was given, and release returns
// them once the instance has ended.
//
// wazero calls LinearMemory.Free when it closes a module, and closing a
// runtime (or a deadline) closes modules whose code may still be
// running on another goroutine. An unmapped reservation would crash the
// process on that code's next access, so Free does nothing, and Serve
// releases the memory after InstantiateModule has returned: then nothing
// can run on it.
type requestMemory struct {
	pool *memPool
	mems []guestMemory
}

// guestMemory is a LinearMemory the pool takes back with release.
type guestMemory interface {
	experimental.LinearMemory
	release()
}

var _ experimental.MemoryAllocator = (*requestMemory)(nil)

// Allocate implements experimental.MemoryAllocator.
func (q *requestMemory) Allocate(_, max uint64) experimental.LinearMemory {
	var m guestMemory
	if r := q.pool.reserve(max); r != nil {
		m = &mappedMemory{pool: q.pool, r: r, max: max}
	} else {
		m = &heapMemory{pool: q.pool, max: max}
	}
	q.mems = append(q.mems, m)
	return m
}

// release returns the memories of an instance that has ended.
func (q *requestMemory) release() {
	for _, m := range q.mems {
		m.release()
	}
	clear(q.mems)
	q.mems = q.mems[:0]
}

// close unmaps the reservations kept for reuse; the runtime is closing.
func (p *memPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.idleBytes = nil, 0
	p.mu.Unlock()
	for _, rs := range idle {
		for _, r := range rs {
			r.unmap()
		}
	}
}

// reserve returns a reservation of size bytes, a kept one if there is
// one, or nil if the platform cannot reserve.
func (p *memPool) reserve(size uint64) *region {
	size = max(size, pageSize)
	p.mu.Lock()
	if rs := p.idle[size]; len(rs) > 0 {
		r := rs[len(rs)-1]
		rs[len(rs)-1] = nil
		p.idle[size] = rs[:len(rs)-1]
		p.idleBytes -= r.accessible()
		p.mu.Unlock()
		return r
	}
	p.mu.Unlock()
	return newRegion(size)
}

// recycle takes back a reservation whose first r.used bytes the guest may
// have written: it keeps it, zeroed, if it is small and the pool has
// room, and unmaps it otherwise. The closed check is under mu so that
// close, which runs after closed is set, unmaps whatever was kept.
func (p *memPool) recycle(r *region) {
	if r.used <= keepMemory {
		// What stays accessible is zero for the next instance; zeroed
		// before taking mu, which every cold start takes.
		clear(r.mem[:r.used])
		r.used = 0
		p.mu.Lock()
		if !p.closed.Load() && p.idleBytes+r.accessible() <= maxIdleMemory {
			if p.idle == nil {
				p.idle = make(map[uint64][]*region)
			}
			size := uint64(len(r.mem))
			p.idle[size] = append(p.idle[size], r)
			p.idleBytes += r.accessible()
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	r.unmap()
}

// mappedMemory is a linear memory in a reservation of its cap: growing
// it makes more of the reservation accessible, in place.
type mappedMemory struct {
	pool *memPool
	r    *region
	max  uint64
}

// Reallocate implements experimental.LinearMemory.
func (m *mappedMemory) Reallocate(size uint64) []byte {
	if size > m.max || size > uint64(len(m.r.mem)) {
		return nil
	}
	if grown, err := m.r.grow(size); err != nil {
		return nil
	} else if grown > 0 {
		m.pool.mapped.Add(grown)
	}
	m.r.used = max(m.r.used, size)
	return m.r.mem[:size:size]
}

// Free implements experimental.LinearMemory; see requestMemory.
func (m *mappedMemory) Free() {}

func (m *mappedMemory) release() {
	if m.r != nil {
		m.pool.recycle(m.r)
		m.r = nil
	}
}

// class returns the heap class index for a buffer of size bytes, or -1
// if none is large enough.
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

// heapMemory is a linear memory in a Go buffer, for platforms where
// memory cannot be reserved. Up to 8 MiB it grows through pooled
// power-of-two buffers; past that, to twice its size (at most the cap),
// so that growing a page at a time copies about as much as it ends up
// with rather than a copy per page.
type heapMemory struct {
	pool *memPool
	max  uint64
	buf  []byte // len is the memory's size: all the guest could touch
}

// Reallocate implements experimental.LinearMemory. Bytes past the old
// length are zero: pooled buffers are zero beyond what was used.
func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	grown := m.pool.getHeap(size, m.max)[:size]
	copy(grown, m.buf)
	m.pool.putHeap(m.buf)
	m.buf = grown
	return m.buf
}

// Free implements experimental.LinearMemory; see requestMemory.
func (m *heapMemory) Free() {}

func (m *heapMemory) release() {
	m.pool.putHeap(m.buf)
	m.buf = nil
}

// getHeap returns a zeroed buffer with capacity for size bytes, and at
// most max beyond the pooled classes.
func (p *memPool) getHeap(size, max uint64) []byte {
	c := class(size)
	if c < 0 {
		n := uint64(1) << bits.Len64(size-1)
		return make([]byte, 0, min(max, n))
	}
	if b, ok := p.heap[c].Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 0, minMemClass<<c)
}

// putHeap zeroes what the guest could have written of b and pools it.
func (p *memPool) putHeap(b []byte) {
	c := class(uint64(cap(b)))
	if b == nil || c < 0 || uint64(cap(b)) != minMemClass<<c || p.closed.Load() {
		return
	}
	clear(b)
	b = b[:0]
	p.heap[c].Put(&b)
}
