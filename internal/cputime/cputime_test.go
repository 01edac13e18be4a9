package cputime

import (
	"testing"
	"time"
)

// TestMeasure: a busy loop costs CPU time; a sleep costs wall time and,
// on a thread clock, almost no CPU time.
func TestMeasure(t *testing.T) {
	busy := Measure(func() {
		deadline := time.Now().Add(20 * time.Millisecond)
		for time.Now().Before(deadline) {
		}
	})
	if busy.Wall < 20*time.Millisecond || busy.CPU <= 0 || busy.CPU > busy.Wall+10*time.Millisecond {
		t.Errorf("busy loop: %+v, want wall >= 20ms and 0 < cpu <= about wall", busy)
	}
	sleep := Measure(func() { time.Sleep(20 * time.Millisecond) })
	if sleep.Wall < 20*time.Millisecond {
		t.Errorf("sleep: wall %s, want >= 20ms", sleep.Wall)
	}
	if thread && sleep.CPU >= sleep.Wall {
		t.Errorf("sleep: cpu %s of wall %s, want the thread's CPU time, not the wall time", sleep.CPU, sleep.Wall)
	}
}

// TestMeasureShortCall: a call shorter than a scheduler tick still
// measures CPU time, as a request usually is (a tick-granular clock read
// zero for these).
func TestMeasureShortCall(t *testing.T) {
	if !thread {
		t.Skip("no per-thread clock here")
	}
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

// BenchmarkMeasure is what accounting adds to every request: a locked
// thread and two reads of its CPU clock.
func BenchmarkMeasure(b *testing.B) {
	for b.Loop() {
		Measure(func() {})
	}
}
