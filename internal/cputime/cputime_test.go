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

// BenchmarkMeasure is what accounting adds to every request: a locked
// thread and two reads of its CPU clock.
func BenchmarkMeasure(b *testing.B) {
	for b.Loop() {
		Measure(func() {})
	}
}
