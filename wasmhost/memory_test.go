package wasmhost

import (
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMemoryZeroedBetweenInstances is a security case: pooled memories
// must never carry one instance's data into the next.
func TestMemoryZeroedBetweenInstances(t *testing.T) {
	h := newHost(t)
	app := h.load(t, "memcheck", "faults/memcheck.wasm", Limits{})
	for i := range 20 {
		w := serve(app, httptest.NewRequest("GET", "/m", nil), "/m")
		equal(t, "status", w.Code, 200)
		if w.Body.String() != "clean\n" {
			t.Fatalf("request %d saw memory written by an earlier instance", i)
		}
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				if w := serve(app, httptest.NewRequest("GET", "/m", nil), "/m"); w.Body.String() != "clean\n" {
					t.Errorf("concurrent request: %d %q", w.Code, w.Body.String())
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestHeapMemory(t *testing.T) {
	tests := []struct {
		size uint64
		want int
	}{
		{0, 0}, {1, 0}, {pageSize, 0}, {pageSize + 1, 1}, {2 * pageSize, 1},
		{3 * pageSize, 2}, {4 * pageSize, 2}, {8 << 20, 7}, {8<<20 + 1, -1},
	}
	for _, tt := range tests {
		equal(t, "class", class(tt.size), tt.want)
	}

	p := &memPool{closed: new(atomic.Bool)}
	m := &heapMemory{pool: p, max: 4 * pageSize}
	b := m.Reallocate(pageSize)
	equal(t, "len", len(b), pageSize)
	b[0], b[pageSize-1] = 1, 1
	b = m.Reallocate(3 * pageSize)
	equal(t, "kept on grow", b[0]+b[pageSize-1], 2)
	equal(t, "grown zero", b[2*pageSize], 0)
	if m.Reallocate(5*pageSize) != nil {
		t.Fatal("grew past max")
	}
	m.release()

	p.closed.Store(true)
	m = &heapMemory{pool: p, max: pageSize}
	m.Reallocate(pageSize)[7] = 1
	m.release() // not recycled: the runtime is closing
	p.closed.Store(false)
	m = &heapMemory{pool: p, max: pageSize}
	for i, c := range m.Reallocate(pageSize) {
		if c != 0 {
			t.Fatalf("byte %d of a recycled buffer is %d", i, c)
		}
	}

	// Past the largest class, growing doubles rather than copying per
	// page: a page at a time to 64 MiB allocates under twice that.
	m = &heapMemory{pool: p, max: 64 << 20}
	var allocated uint64
	for size := uint64(pageSize); size <= 64<<20; size += pageSize {
		before := cap(m.buf)
		m.Reallocate(size)
		if cap(m.buf) != before {
			allocated += uint64(cap(m.buf))
		}
	}
	if allocated >= 2*64<<20 {
		t.Fatalf("growing a page at a time to 64 MiB allocated %d bytes", allocated)
	}
}

func TestMappedMemory(t *testing.T) {
	p := &memPool{closed: new(atomic.Bool)}
	defer p.close()
	const max = 16 << 20
	q := &requestMemory{pool: p}
	m, ok := q.Allocate(pageSize, max).(*mappedMemory)
	if !ok {
		t.Skip("this platform cannot reserve memory: memories are Go buffers")
	}
	b := m.Reallocate(pageSize)
	first := &b[0]
	b[0] = 1
	for size := uint64(2 * pageSize); size <= max; size += pageSize {
		b = m.Reallocate(size)
		if &b[0] != first {
			t.Fatalf("memory moved when growing to %d bytes", size)
		}
		b[size-1] = 1
	}
	equal(t, "kept", b[0], 1)
	if m.Reallocate(max+pageSize) != nil {
		t.Fatal("grew past max")
	}
	equal(t, "mapped", p.mapped.Load(), max)
	m.Free() // wazero's call: the memory stays until release
	b[1] = 1
	q.release()
	equal(t, "large memory kept", p.idleBytes, 0)

	// A small memory is kept, zeroed, for the next instance.
	m = q.Allocate(pageSize, max).(*mappedMemory)
	r := m.r
	b = m.Reallocate(2 * pageSize)
	b[0], b[2*pageSize-1] = 7, 7
	q.release()
	equal(t, "kept bytes", p.idleBytes, 2*pageSize)
	m = q.Allocate(pageSize, max).(*mappedMemory)
	equal(t, "reused", m.r, r)
	b = m.Reallocate(3 * pageSize)
	for i, c := range b {
		if c != 0 {
			t.Fatalf("byte %d of a reused memory is %d", i, c)
		}
	}
	q.release()

	// Once the runtime is closing, nothing is kept.
	p.closed.Store(true)
	m = q.Allocate(pageSize, max).(*mappedMemory)
	m.Reallocate(pageSize)
	q.release()
	p.close()
	equal(t, "kept after close", p.idleBytes, 0)
}

// TestGrowToCapDoesNotCopy is the denial-of-service case: a guest growing
// its memory a page at a time to the 64 MiB cap made the host copy the
// whole memory on every grow, 32 GiB for one request.
func TestGrowToCapDoesNotCopy(t *testing.T) {
	h := newHost(t)
	app := h.load(t, "grow", "faults/grow.wasm", Limits{MemoryBytes: 64 << 20, Timeout: time.Minute})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	mapped := h.mem.mapped.Load()
	w := serve(app, httptest.NewRequest("GET", "/grow", nil), "/grow")
	runtime.ReadMemStats(&after)
	equal(t, "status", w.Code, 500)
	equal(t, "failure reason memory", h.failures(t, "grow", reasonMemory), 1)
	heap := after.TotalAlloc - before.TotalAlloc
	total := heap + h.mem.mapped.Load() - mapped
	if total >= 2*64<<20 {
		t.Fatalf("one request allocated %d bytes of heap and mapped %d: want under twice the 64 MiB cap", heap, total-heap)
	}
	h.mem.mu.Lock()
	defer h.mem.mu.Unlock()
	equal(t, "memory kept after the request", h.mem.idleBytes, 0)
}
