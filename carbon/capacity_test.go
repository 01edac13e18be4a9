package carbon

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestOccupancyAfterTrim grows the counts past a compacting trim: the slots
// the trim shifted away must not reappear at the end.
func TestOccupancyAfterTrim(t *testing.T) {
	var o occupancy
	o.add(0, 99, 1) // 100 slots holding one job each
	o.trim(60)      // compacts: slots 60..99 move to the front
	o.add(120, 130, 1)
	for k := int64(100); k < 120; k++ {
		if got := o.get(k); got != 0 {
			t.Fatalf("slot %d holds %d jobs after trim and grow, want 0", k, got)
		}
	}
	for k := int64(60); k <= 130; k++ {
		want := int32(0)
		if k < 100 || k >= 120 {
			want = 1
		}
		if got := o.get(k); got != want {
			t.Fatalf("slot %d = %d, want %d", k, got, want)
		}
	}
	// Emptied by a trim past its end, then grown again.
	o.trim(1000)
	o.add(1000, 1010, 1)
	o.add(1011, 1200, 0)
	for k := int64(1011); k <= 1200; k++ {
		if got := o.get(k); got != 0 {
			t.Fatalf("slot %d holds %d jobs after emptying trim, want 0", k, got)
		}
	}
}

// TestCapacityHoldsAcrossTrims drives a planner through weeks of time, with
// Due trimming the occupancy as it goes, and checks the capacity per slot
// from what was actually handed out.
//
// One 1-hour job arrives per hour with a 24-hour window and the site runs
// one at a time: at most 23 other jobs are queued when a job arrives and
// its window has 24 slots, so every job has room and none may fall back to
// running above capacity. Over random arrivals at a higher rate with
// capacity 2 and 3, jobs planned by emissions never exceed the capacity,
// and the planner (with perfect knowledge) never emits more than running
// everything at once.
func TestCapacityHoldsAcrossTrims(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 21))
	const hours = 24 * 21
	vals := make([]float64, hours+48)
	for i := range vals {
		// A daily cycle with noise: cleanest around midday.
		h := float64(i % 24)
		vals[i] = 300 - 150*max(0, 1-((h-13)*(h-13))/40) + 40*rng.Float64()
	}
	curve := hourlyCurve(t, vals...)

	cases := []struct {
		name     string
		capacity int
		perHour  func() int
		noFall   bool
	}{
		{"one per hour, capacity 1", 1, func() int { return 1 }, true},
		{"random, capacity 2", 2, func() int { return rng.IntN(4) }, false},
		{"random, capacity 3", 3, func() int { return rng.IntN(6) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			p, err := NewPlanner(PlannerConfig{Sites: []Site{{Name: "here", Capacity: tc.capacity}}, Step: time.Hour, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			planned := map[int64]int{} // slot → jobs placed there by emissions
			var grams, runNow float64
			id := 0
			for h := 0; h < hours+24 || p.Queued() > 0; h++ {
				now = t0.Add(time.Duration(h) * time.Hour)
				// A refresh re-plans every queued job, as the agent's
				// forecast refresh and the simulator's replay do.
				if err := p.SetForecast("here", curve, "perfect"); err != nil {
					t.Fatal(err)
				}
				if h < hours {
					for range tc.perHour() {
						id++
						j := Job{ID: fmt.Sprintf("j%d", id), Arrival: now, Runtime: time.Hour, Deadline: now.Add(24 * time.Hour)}
						if _, err := p.Submit(j); err != nil {
							t.Fatal(err)
						}
						m, _ := curve.Mean(now, now.Add(time.Hour))
						runNow += m
					}
				}
				for _, a := range p.Due() {
					if a.Reason == ReasonNoCapacity && tc.noFall {
						t.Fatalf("job %s at %s ran above capacity although every job had room", a.JobID, a.Start)
					}
					if a.Reason == "" {
						planned[p.slot(a.Start)]++
					}
					if a.Start.Add(time.Hour).After(now.Add(24 * time.Hour)) {
						t.Fatalf("job %s planned at %s, past any deadline", a.JobID, a.Start)
					}
					grams += a.Gross
				}
				if h > hours+100 {
					t.Fatalf("%d jobs still queued long after the last arrival", p.Queued())
				}
			}
			for k, n := range planned {
				if n > tc.capacity {
					t.Fatalf("slot %s holds %d jobs planned by emissions, capacity %d", time.Unix(0, k*int64(time.Hour)).UTC(), n, tc.capacity)
				}
			}
			if grams > runNow {
				t.Fatalf("planned %.0f g, more than running every job at once (%.0f g)", grams, runNow)
			}
		})
	}
}
