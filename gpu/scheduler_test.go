package gpu

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func newSched(t testing.TB, cfg SchedulerConfig, pools ...Pool) *Scheduler {
	t.Helper()
	if len(pools) == 0 {
		pools = []Pool{detPool("cpu-0", 1, "det-llm")}
	}
	s, err := NewScheduler(cfg, pools)
	must(t, err)
	return s
}

// An app flooding 200 requests cannot starve one sending 20: start-time
// fair queueing interleaves them, so the small app's requests are all
// served within about twice their own work, not behind the flood.
func TestSchedulerFloodDoesNotStarve(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSched(t, SchedulerConfig{MaxAppQueue: 200, MaxQueueWait: time.Hour})
		const hold = 10 * time.Millisecond
		var mu sync.Mutex
		var maxWaitB time.Duration
		var lastB, lastA time.Time
		var wg sync.WaitGroup
		run := func(app string) {
			defer wg.Done()
			l, err := s.Acquire(context.Background(), app, "det-llm")
			if err != nil {
				t.Error(err)
				return
			}
			time.Sleep(hold)
			u := l.Release()
			mu.Lock()
			defer mu.Unlock()
			if app == "b" {
				maxWaitB = max(maxWaitB, u.Wait)
				lastB = u.Released
			} else {
				lastA = u.Released
			}
		}
		start := time.Now()
		for range 200 {
			wg.Add(1)
			go run("a")
		}
		synctest.Wait() // the flood is queued before b arrives
		for range 20 {
			wg.Add(1)
			go run("b")
		}
		wg.Wait()
		// b's 20 leases interleave with a's: done within 41 leases, not 220.
		if got := lastB.Sub(start); got > 42*hold {
			t.Fatalf("b finished after %v, want within %v", got, 42*hold)
		}
		if maxWaitB > 42*hold {
			t.Fatalf("b waited up to %v", maxWaitB)
		}
		equal(t, "a finished", lastA.Sub(start), 220*hold)
		equal(t, "queued", s.Stats().Queued, 0)
	})
}

// GPU-second shares of saturating apps follow their weights within ±5%.
func TestSchedulerSharesFollowWeights(t *testing.T) {
	for _, tc := range []struct {
		name    string
		weights map[string]float64
		hold    map[string]time.Duration
		slots   int
	}{
		{"equal", map[string]float64{"a": 1, "b": 1}, map[string]time.Duration{"a": 10 * time.Millisecond, "b": 10 * time.Millisecond}, 1},
		{"3to1", map[string]float64{"a": 3, "b": 1}, map[string]time.Duration{"a": 10 * time.Millisecond, "b": 10 * time.Millisecond}, 1},
		{"short vs long leases", map[string]float64{"a": 1, "b": 1}, map[string]time.Duration{"a": 5 * time.Millisecond, "b": 40 * time.Millisecond}, 1},
		{"2to1to1 on 2 slots", map[string]float64{"a": 2, "b": 1, "c": 1}, map[string]time.Duration{"a": 10 * time.Millisecond, "b": 15 * time.Millisecond, "c": 7 * time.Millisecond}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newSched(t, SchedulerConfig{MaxQueueWait: time.Hour}, detPool("cpu-0", tc.slots, "det-llm"))
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				var mu sync.Mutex
				used := map[string]time.Duration{}
				var wg sync.WaitGroup
				var total float64
				for app, w := range tc.weights {
					s.SetWeight(app, w)
					total += w
					for range 4 { // four outstanding requests per app
						wg.Go(func() {
							for {
								l, err := s.Acquire(ctx, app, "det-llm")
								if err != nil {
									return
								}
								time.Sleep(tc.hold[app])
								u := l.Release()
								mu.Lock()
								used[app] += u.Held
								mu.Unlock()
							}
						})
					}
				}
				wg.Wait()
				var sum time.Duration
				for _, d := range used {
					sum += d
				}
				for app, w := range tc.weights {
					share := float64(used[app]) / float64(sum)
					want := w / total
					if share < want*0.95 || share > want*1.05 {
						t.Errorf("app %s share %.4f, want %.4f ±5%%", app, share, want)
					}
				}
			})
		})
	}
}

func TestSchedulerQueueTimeoutIsExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSched(t, SchedulerConfig{MaxQueueWait: 3 * time.Second})
		held, err := s.Acquire(context.Background(), "a", "det-llm")
		must(t, err)
		start := time.Now()
		_, err = s.Acquire(context.Background(), "b", "det-llm")
		equal(t, "waited", time.Since(start), 3*time.Second)
		isErr(t, "acquire", err, ErrQueueTimeout)
		var be *BusyError
		if !errors.As(err, &be) {
			t.Fatalf("err %T is not a *BusyError", err)
		}
		equal(t, "retry after", be.RetryAfter, time.Second)
		equal(t, "message", err.Error(), "gpu lease for b (model det-llm): gpu queue wait timed out (max queue wait 3s, 0 queued, retry after 1s)")
		equal(t, "queued", s.Stats().Queued, 0)
		// The held lease outlives every queue limit: leases are never revoked.
		time.Sleep(time.Minute)
		u := held.Release()
		equal(t, "held", u.Held, time.Minute+3*time.Second)
	})
}

func TestSchedulerDeadlineWhileQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSched(t, SchedulerConfig{MaxQueueWait: 10 * time.Second})
		held, err := s.Acquire(context.Background(), "a", "det-llm")
		must(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = s.Acquire(ctx, "b", "det-llm")
		equal(t, "waited", time.Since(start), 250*time.Millisecond)
		isErr(t, "acquire", err, context.DeadlineExceeded)
		equal(t, "reason", Reason(err), "deadline")
		equal(t, "queued", s.Stats().Queued, 0)
		held.Release()
		equal(t, "free after release", s.Stats().FreeSlots, 1)
	})
}

func TestSchedulerQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSched(t, SchedulerConfig{MaxAppQueue: 2, MaxQueue: 3, MaxQueueWait: time.Minute})
		held, err := s.Acquire(context.Background(), "a", "det-llm")
		must(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, app := range []string{"b", "b", "c"} {
			wg.Go(func() {
				if l, err := s.Acquire(ctx, app, "det-llm"); err == nil {
					l.Release()
				}
			})
		}
		synctest.Wait()
		_, err = s.Acquire(context.Background(), "b", "det-llm")
		isErr(t, "app limit", err, ErrQueueFull)
		equal(t, "app limit message", err.Error(), "gpu lease for b (model det-llm): gpu queue full (app queue depth 2, 3 queued, retry after 4s)")
		_, err = s.Acquire(context.Background(), "d", "det-llm")
		isErr(t, "site limit", err, ErrQueueFull)
		var be *BusyError
		errors.As(err, &be)
		equal(t, "site limit", be.Limit, "site queue depth 3")
		cancel()
		wg.Wait()
		equal(t, "queued", s.Stats().Queued, 0)
		held.Release()
	})
}

func TestSchedulerCancelRemovesWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSched(t, SchedulerConfig{})
		held, err := s.Acquire(context.Background(), "a", "det-llm")
		must(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := s.Acquire(ctx, "b", "det-llm")
			errc <- err
		}()
		got := make(chan *Lease, 1)
		synctest.Wait()
		go func() {
			l, err := s.Acquire(context.Background(), "c", "det-llm")
			if err != nil {
				t.Error(err)
			}
			got <- l
		}()
		synctest.Wait()
		equal(t, "queued", s.Stats().Queued, 2)
		cancel()
		isErr(t, "cancelled", <-errc, context.Canceled)
		equal(t, "queued", s.Stats().Queued, 1)
		held.Release()
		l := <-got
		equal(t, "next holder", l.App(), "c")
		u1 := l.Release()
		u2 := l.Release() // harmless
		equal(t, "double release", u2, u1)
		equal(t, "free", s.Stats().FreeSlots, 1)
	})
}

func TestSchedulerCloseWakesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSched(t, SchedulerConfig{})
		held, err := s.Acquire(context.Background(), "a", "det-llm")
		must(t, err)
		errc := make(chan error, 1)
		go func() {
			_, err := s.Acquire(context.Background(), "b", "det-llm")
			errc <- err
		}()
		synctest.Wait()
		s.Close()
		isErr(t, "waiter", <-errc, ErrClosed)
		_, err = s.Acquire(context.Background(), "b", "det-llm")
		isErr(t, "after close", err, ErrClosed)
		held.Release()
	})
}

func TestSchedulerModelRouting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSched(t, SchedulerConfig{},
			Pool{Device: Device{UUID: "GPU-0"}, Models: []string{"m1", "m2"}},
			Pool{Device: Device{UUID: "GPU-1"}, Models: []string{"m1", "m2"}},
			Pool{Device: Device{UUID: "GPU-2"}, Models: []string{"m3"}})
		_, err := s.Acquire(context.Background(), "a", "llama2-chat")
		isErr(t, "unknown model", err, ErrModelNotSupported)

		s.SetAvailable("GPU-2", false)
		_, err = s.Acquire(context.Background(), "a", "m3")
		isErr(t, "lost device", err, ErrNoDevice)
		equal(t, "reason", Reason(err), "no_device")
		s.SetAvailable("GPU-2", true)

		// Warm GPU-0 with m1 and GPU-1 with m2.
		l0, _ := s.Acquire(context.Background(), "a", "m1")
		l1, _ := s.Acquire(context.Background(), "a", "m2")
		equal(t, "m1 on", l0.Device().UUID, "GPU-0")
		equal(t, "m2 on", l1.Device().UUID, "GPU-1")
		equal(t, "first load is a swap", l0.Swap(), true)
		l0.Release()
		l1.Release()
		// Each model goes back to the device where it is loaded.
		for range 3 {
			l2, _ := s.Acquire(context.Background(), "b", "m2")
			l1, _ := s.Acquire(context.Background(), "a", "m1")
			equal(t, "m2 sticks to", l2.Device().UUID, "GPU-1")
			equal(t, "m1 sticks to", l1.Device().UUID, "GPU-0")
			equal(t, "warm", l1.Swap() || l2.Swap(), false)
			l1.Release()
			l2.Release()
		}
		// A busy m3 device does not block m1 requests behind it.
		l3, _ := s.Acquire(context.Background(), "c", "m3")
		done := make(chan struct{})
		go func() {
			l, err := s.Acquire(context.Background(), "c", "m3")
			if err == nil {
				l.Release()
			}
			close(done)
		}()
		synctest.Wait()
		l4, err := s.Acquire(context.Background(), "d", "m1")
		must(t, err)
		l4.Release()
		l3.Release()
		<-done
	})
}

// With one device and two models, an app whose model is loaded goes
// first if it is within the slack of the fairest app.
func TestSchedulerStickyWithinSlack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSched(t, SchedulerConfig{StickySlack: time.Second}, Pool{Device: Device{UUID: "GPU-0"}, Models: []string{"m1", "m2"}})
		held, _ := s.Acquire(context.Background(), "a", "m1") // m1 loaded
		time.Sleep(100 * time.Millisecond)
		order := make(chan string, 2)
		var wg sync.WaitGroup
		defer wg.Wait()
		for _, app := range []string{"b", "c"} {
			model := map[string]string{"b": "m2", "c": "m1"}[app]
			wg.Go(func() {
				l, err := s.Acquire(context.Background(), app, model)
				if err != nil {
					t.Error(err)
					return
				}
				order <- app
				time.Sleep(10 * time.Millisecond)
				l.Release()
			})
			synctest.Wait()
		}
		held.Release()
		equal(t, "first served", <-order, "c")
		equal(t, "second served", <-order, "b")
	})
}

// No goroutine outlives a burst of acquires that time out, get cancelled
// or succeed.
func TestSchedulerNoLeakedGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	s := newSched(t, SchedulerConfig{MaxQueueWait: 20 * time.Millisecond, MaxAppQueue: 1000})
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%7)*3*time.Millisecond)
			defer cancel()
			if l, err := s.Acquire(ctx, fmt.Sprint("app", i%5), "det-llm"); err == nil {
				time.Sleep(time.Millisecond)
				l.Release()
			}
		})
	}
	wg.Wait()
	s.Close()
	goleak.VerifyNone(t, before)
	equal(t, "queued", s.Stats().Queued, 0)
}
