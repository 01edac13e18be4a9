package gpu

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAcquireRelease measures the scheduler's cost per lease: one
// goroutine per app loops Acquire → Release on a single slot, so with
// more than one app every release hands the slot over to a waiting app
// chosen by the fair-queueing heap. ns/op is per lease.
func BenchmarkAcquireRelease(b *testing.B) {
	for _, apps := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("apps=%d", apps), func(b *testing.B) {
			s := newSched(b, SchedulerConfig{MaxQueueWait: time.Hour, MaxQueue: 4096})
			names := make([]string, apps)
			for i := range names {
				names[i] = fmt.Sprintf("app%04d", i)
			}
			var left atomic.Int64
			left.Store(int64(b.N))
			ctx := context.Background()
			var wg sync.WaitGroup
			b.ResetTimer()
			for _, app := range names {
				wg.Go(func() {
					for left.Add(-1) >= 0 {
						l, err := s.Acquire(ctx, app, "det-llm")
						if err != nil {
							b.Error(err)
							return
						}
						l.Release()
					}
				})
			}
			wg.Wait()
		})
	}
}

// BenchmarkHandOver measures the latency from one app's Release to the
// waiting app's Acquire returning with the lease: the time a GPU slot
// sits idle between two apps because of Tern. It reports the mean as
// ns/op and the p50 and p99 as extra metrics.
func BenchmarkHandOver(b *testing.B) {
	s := newSched(b, SchedulerConfig{MaxQueueWait: time.Hour})
	ctx := context.Background()
	var released atomic.Int64 // UnixNano of the latest Release call
	lat := make([]time.Duration, 0, b.N)
	var mu sync.Mutex
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	first, err := s.Acquire(ctx, "a", "det-llm")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	queued := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.queued
	}
	loop := func(app string, l *Lease) {
		for {
			// Wait until the other app is queued, so Release hands over.
			for queued() == 0 {
				if left.Load() < 0 {
					l.Release()
					return
				}
			}
			released.Store(time.Now().UnixNano())
			l.Release()
			if left.Add(-1) < 0 {
				return
			}
			var err error
			if l, err = s.Acquire(ctx, app, "det-llm"); err != nil {
				b.Error(err)
				return
			}
			d := time.Duration(time.Now().UnixNano() - released.Load())
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}
	}
	wg.Go(func() { loop("a", first) })
	wg.Go(func() {
		l, err := s.Acquire(ctx, "b", "det-llm")
		if err != nil {
			b.Error(err)
			return
		}
		lat = append(lat, time.Duration(time.Now().UnixNano()-released.Load()))
		loop("b", l)
	})
	wg.Wait()
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(sum.Nanoseconds())/float64(len(lat)), "ns/handover")
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkServiceInferDet measures a whole Service.Infer on the
// deterministic backend (grant check, lease, backend, release, metering)
// with two apps competing for one slot.
func BenchmarkServiceInferDet(b *testing.B) {
	det, err := NewDetBackend(DetConfig{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewService(ServiceConfig{
		Placements: []Placement{{Device: DetDevice(), Backend: det, Reader: det}},
		Scheduler:  SchedulerConfig{MaxQueueWait: time.Hour},
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, app := range []string{"a", "b"} {
		s.SetApp(app, AppPolicy{Models: []string{"det-llm"}})
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, app := range []string{"a", "b"} {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if _, err := s.Infer(context.Background(), app, "det-llm", "heat the pool", InferParams{MaxTokens: 8}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
