package jobs

import (
	"runtime"
	"syscall"
	"time"
)

// measure runs f on one locked OS thread and returns its wall time and the
// thread's CPU time. A wasm instance runs on the goroutine that calls it
// (wazero compiles to native code and host calls stay on that goroutine),
// so the thread's CPU time is the guest's, plus the little host work of
// the request; time the thread sleeps in outbound calls is not counted.
func measure(f func() error) (usage, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, okB := threadCPU()
	start := time.Now()
	err := f()
	u := usage{wall: time.Since(start)}
	after, okA := threadCPU()
	if okB && okA && after >= before {
		u.cpu = after - before
	} else {
		u.cpu = u.wall // no thread clock: the wall time bounds a single-threaded run
	}
	return u, err
}

func threadCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

// rusageThread is RUSAGE_THREAD (linux/resource.h), which package
// syscall does not name.
const rusageThread = 1
