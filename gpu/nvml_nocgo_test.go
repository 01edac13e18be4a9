//go:build !(cgo && linux)

package gpu

import "testing"

func TestNoCgoMeansNoNVML(t *testing.T) {
	_, err := OpenNVML(nil, "")
	isErr(t, "open", err, ErrNoNVML)
	equal(t, "message", err.Error(), "nvml init: no NVML: built without cgo on linux")
	var n *NVML
	_, err = n.Discover()
	isErr(t, "discover", err, ErrNoNVML)
	_, err = n.Read("GPU-0")
	isErr(t, "read", err, ErrNoNVML)
}
