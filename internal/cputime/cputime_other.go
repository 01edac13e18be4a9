//go:build !linux

package cputime

import "time"

func measure(f func()) Usage {
	start := time.Now()
	f()
	d := time.Since(start)
	return Usage{Wall: d, CPU: d}
}
