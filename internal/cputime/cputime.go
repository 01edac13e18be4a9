// Package cputime measures the CPU time of a function run on the calling
// goroutine, for the energy model of carbon accounting.
package cputime

import "time"

// Usage is what one call cost.
type Usage struct {
	Wall time.Duration // real time
	CPU  time.Duration // CPU time of the thread that ran it
}

// Measure runs f and returns its cost. A wasm instance runs on the
// goroutine that calls it (wazero compiles to native code and host calls
// stay on that goroutine), so on Linux, where f runs on one locked OS
// thread, the thread's CPU time is the guest's plus the little host work
// of the call; time the thread sleeps in outbound calls is not counted.
// Elsewhere the CPU time is the wall time, which bounds a single-threaded
// run from above.
func Measure(f func()) Usage {
	return measure(f)
}
