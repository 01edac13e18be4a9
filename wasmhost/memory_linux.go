package wasmhost

import (
	"math"

	"golang.org/x/sys/unix"
)

// region is a reservation of address space for one linear memory: the
// whole of it mapped with no access and no swap reserved, its first
// committed bytes made readable and writable as the memory grows.
type region struct {
	mem       []byte // the whole reservation
	committed uint64 // bytes from the start that are accessible
	used      uint64 // the most of it the current instance could touch
}

// newRegion reserves size bytes, or returns nil if the system refuses
// (an address-space limit, say): the caller falls back to the heap.
func newRegion(size uint64) *region {
	if size > math.MaxInt {
		return nil // a 32-bit address space
	}
	mem, err := unix.Mmap(-1, 0, int(size), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil
	}
	return &region{mem: mem}
}

// grow makes the first size bytes accessible and returns how many more
// that made so.
func (r *region) grow(size uint64) (uint64, error) {
	if size <= r.committed {
		return 0, nil
	}
	if err := unix.Mprotect(r.mem[r.committed:size], unix.PROT_READ|unix.PROT_WRITE); err != nil {
		return 0, err
	}
	grown := size - r.committed
	r.committed = size
	return grown, nil
}

// accessible returns how many bytes of the reservation are accessible.
func (r *region) accessible() uint64 { return r.committed }

// unmap returns the reservation to the system.
func (r *region) unmap() {
	_ = unix.Munmap(r.mem)
	r.mem, r.committed, r.used = nil, 0, 0
}
