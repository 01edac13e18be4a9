//go:build !linux

package jobs

import "time"

// measure runs f and returns its wall time as its CPU time: without a
// per-thread CPU clock, the wall time of a single-threaded guest bounds
// its CPU time from above.
func measure(f func() error) (usage, error) {
	start := time.Now()
	err := f()
	d := time.Since(start)
	return usage{wall: d, cpu: d}, err
}
