//go:build !linux

package wasmhost

import "errors"

// region is a reservation of address space; this platform has none, and
// memories are Go buffers (heapMemory).
type region struct {
	mem       []byte
	committed uint64
	used      uint64
}

func newRegion(uint64) *region { return nil }

func (r *region) grow(uint64) (uint64, error) {
	return 0, errors.New("no reservations on this platform")
}

func (r *region) accessible() uint64 { return r.committed }

func (r *region) unmap() {}
