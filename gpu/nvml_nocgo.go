//go:build !(cgo && linux)

package gpu

import (
	"fmt"
	"log/slog"
)

// NVML is an initialized NVML library. This build has no NVML: it needs
// cgo on Linux, so OpenNVML always fails with [ErrNoNVML].
type NVML struct{}

var _ Reader = (*NVML)(nil)

// OpenNVML fails with [ErrNoNVML]: this build has no cgo, which go-nvml
// needs.
func OpenNVML(logger *slog.Logger, libraryPath string) (*NVML, error) {
	return nil, fmt.Errorf("nvml init: %w: built without cgo on linux", ErrNoNVML)
}

// Close does nothing.
func (n *NVML) Close() error { return nil }

// Discover fails with [ErrNoNVML].
func (n *NVML) Discover() (Inventory, error) {
	return Inventory{}, fmt.Errorf("nvml discover: %w", ErrNoNVML)
}

// Read fails with [ErrNoNVML].
func (n *NVML) Read(uuid string) (Sample, error) {
	return Sample{}, fmt.Errorf("nvml read %s: %w", uuid, ErrNoNVML)
}
