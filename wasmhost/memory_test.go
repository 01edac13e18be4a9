package wasmhost

import (
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
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

func TestMemPoolClasses(t *testing.T) {
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
	m := p.Allocate(pageSize, 4*pageSize).(*linearMemory)
	b := m.Reallocate(pageSize)
	equal(t, "len", len(b), pageSize)
	b[0], b[pageSize-1] = 1, 1
	b = m.Reallocate(3 * pageSize)
	equal(t, "kept on grow", b[0]+b[pageSize-1], 2)
	equal(t, "grown zero", b[2*pageSize], 0)
	if m.Reallocate(5*pageSize) != nil {
		t.Fatal("grew past max")
	}
	m.Free()

	p.closed.Store(true)
	m = p.Allocate(pageSize, pageSize).(*linearMemory)
	m.Reallocate(pageSize)[7] = 1
	m.Free() // not recycled: the runtime is closing
	p.closed.Store(false)
	m = p.Allocate(pageSize, pageSize).(*linearMemory)
	for i, c := range m.Reallocate(pageSize) {
		if c != 0 {
			t.Fatalf("byte %d of a recycled buffer is %d", i, c)
		}
	}
}
