package cputime

import (
	"testing"
	"time"
)

// TestMeasureShortCall: a call shorter than a scheduler tick still
// measures CPU time, as a request usually is (a tick-granular clock read
// zero for these).
func TestMeasureShortCall(t *testing.T) {
	for range 5 {
		u := Measure(func() {
			deadline := time.Now().Add(200 * time.Microsecond)
			for time.Now().Before(deadline) {
			}
		})
		if u.CPU <= 0 {
			t.Fatalf("200µs of work measured %+v, want CPU time > 0", u)
		}
	}
}
