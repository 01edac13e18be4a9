//go:build nvmlhw && !(cgo && linux)

package gpu

import "testing"

func TestHWNoNVML(t *testing.T) {
	t.Skip("no NVML: the hardware tests need cgo on linux")
}
