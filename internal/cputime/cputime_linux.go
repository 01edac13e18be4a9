package cputime

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

func measure(f func()) Usage {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, okB := threadCPU()
	start := time.Now()
	f()
	u := Usage{Wall: time.Since(start)}
	after, okA := threadCPU()
	if okB && okA && after >= before {
		u.CPU = after - before
	} else {
		u.CPU = u.Wall // no thread clock: the wall time bounds a single-threaded run
	}
	return u
}

// threadCPU reads the calling thread's CPU clock. CLOCK_THREAD_CPUTIME_ID
// rather than getrusage(RUSAGE_THREAD): the latter reads the scheduler's
// runtime as of the last tick or context switch, so a call shorter than a
// tick (most requests) measures as nothing.
func threadCPU() (time.Duration, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
