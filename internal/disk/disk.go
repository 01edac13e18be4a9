// Package disk measures the file system that holds the agent's data, for
// the free-space reserve under which the agent stops writing new things.
package disk

import (
	"errors"
	"fmt"
)

// Usage is the space of one file system.
type Usage struct {
	// Free is what an unprivileged process may still write, in bytes.
	Free int64
	// Size is the file system's capacity, in bytes.
	Size int64
}

// ErrUnsupported reports that this platform cannot measure free space;
// callers then keep no reserve.
var ErrUnsupported = errors.New("free space unknown on this platform")

// Of returns the usage of the file system that holds path.
func Of(path string) (Usage, error) {
	u, err := usage(path)
	if err != nil {
		return Usage{}, fmt.Errorf("free space of %s: %w", path, err)
	}
	return u, nil
}

// DefaultReserve is the reserve for a file system of size bytes when none
// is configured: 5% of it, between MinReserve and MaxReserve. A 32 MiB
// flash partition keeps 1.6 MiB, a 100 GiB disk 1 GiB.
func DefaultReserve(size int64) int64 {
	return min(max(size/20, MinReserve), MaxReserve, size/2)
}

// Bounds of DefaultReserve.
const (
	MinReserve = 1 << 20
	MaxReserve = 1 << 30
)

// Format writes n bytes for people: "1.4 MiB".
func Format(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
