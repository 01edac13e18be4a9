package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tern-edge/tern/carbon"
)

var t0 = time.Date(2021, 7, 1, 0, 0, 0, 0, time.UTC)

func readings(vals []float64) []carbon.Reading {
	rs := make([]carbon.Reading, len(vals))
	for i, v := range vals {
		rs[i] = carbon.Reading{Start: t0.Add(time.Duration(i) * time.Hour), Duration: time.Hour, GCO2PerKWh: v, Kind: carbon.Actual, Signal: carbon.Average}
	}
	return rs
}

// bruteForce returns the least grams of placing 1-h jobs on (site, hour)
// slots with capacity, by trying every assignment.
func bruteForce(sites []Site, jobs []carbon.Job) float64 {
	load := map[[2]int]int{}
	best := math.Inf(1)
	var try func(i int, sum float64)
	try = func(i int, sum float64) {
		if sum >= best {
			return
		}
		if i == len(jobs) {
			best = sum
			return
		}
		j := jobs[i]
		for si, s := range sites {
			tr := time.Duration(0)
			if s.Name != j.Origin {
				tr = s.Transfer
			}
			for t := j.Arrival.Add(tr); !t.Add(j.Runtime + tr).After(j.Deadline); t = t.Add(time.Hour) {
				h := int(t.Sub(t0) / time.Hour)
				if h >= len(s.Readings) || load[[2]int{si, h}] >= s.Capacity {
					continue
				}
				load[[2]int{si, h}]++
				try(i+1, sum+s.Readings[h].GCO2PerKWh)
				load[[2]int{si, h}]--
			}
		}
	}
	try(0, 0)
	return best
}

// TestExactOracle compares the min-cost assignment with brute force over
// random small instances with capacity, and checks that it is never worse
// than the planner given the actual future (which places jobs one by one).
func TestExactOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	beatPlanner := 0
	for round := range 60 {
		const hours = 10
		var sites []Site
		for i := range 1 + rng.IntN(2) {
			vals := make([]float64, hours)
			for h := range vals {
				vals[h] = float64(50 + rng.IntN(400))
			}
			sites = append(sites, Site{Name: fmt.Sprintf("s%d", i), Readings: readings(vals), Capacity: 1 + rng.IntN(2), Transfer: time.Duration(rng.IntN(2)) * time.Hour})
		}
		var jobs []carbon.Job
		for i := range 2 + rng.IntN(5) {
			a := t0.Add(time.Duration(rng.IntN(4)) * time.Hour)
			jobs = append(jobs, carbon.Job{ID: fmt.Sprintf("j%d", i), Origin: sites[rng.IntN(len(sites))].Name, Arrival: a, Runtime: time.Hour, Deadline: a.Add(time.Duration(2+rng.IntN(5)) * time.Hour)})
		}
		want := bruteForce(sites, jobs)
		cfg := Config{Sites: sites, Jobs: jobs, Step: time.Hour}
		o, _, err := OracleOnly(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if math.IsInf(want, 1) {
			continue // some job cannot run within capacity
		}
		if math.Abs(o.Grams-want) > 1e-6 || o.Violations != 0 || o.Misses != 0 {
			t.Fatalf("round %d: exact oracle = %.1f g (violations %d, misses %d), brute force %.1f g\n%+v", round, o.Grams, o.Violations, o.Misses, want, o.Placements)
		}
		planner, err := replay("oracle", cfg, mustSites(t, sites), mustJobs(t, cfg), nil)
		planner = finish(cfg, mustSites(t, sites), planner)
		if err != nil {
			t.Fatal(err)
		}
		if planner.Violations == 0 && planner.Grams < o.Grams-1e-6 {
			t.Fatalf("round %d: planner with the actual future %.1f g beats the exact oracle %.1f g", round, planner.Grams, o.Grams)
		}
		if planner.Grams > o.Grams+1e-6 {
			beatPlanner++
		}
	}
	if beatPlanner == 0 {
		t.Fatalf("the exact oracle never beat one-by-one placement: the instances do not test it")
	}
}

func mustSites(t *testing.T, ss []Site) []simSite {
	t.Helper()
	out := make([]simSite, len(ss))
	for i, s := range ss {
		c, err := carbon.Resample(s.Readings, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = simSite{Site: s, actual: c}
	}
	return out
}

func mustJobs(t *testing.T, cfg Config) []carbon.Job {
	t.Helper()
	var names []string
	for _, s := range cfg.Sites {
		names = append(names, s.Name)
	}
	jobs, err := sortedJobs(cfg, names)
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// TestSpatialRun has jobs arriving at two sites: run-now keeps each at its
// origin, Tern and the oracle move them to the cleaner site when the
// transfer allows, capacity holds, and the placements name every job.
func TestSpatialRun(t *testing.T) {
	const hours = 24 * 20
	dirty, clean := make([]float64, hours), make([]float64, hours)
	for h := range dirty {
		dirty[h] = 500 + 50*math.Sin(float64(h)*2*math.Pi/24)
		clean[h] = 100 + 50*math.Sin(float64(h)*2*math.Pi/24)
	}
	var jobs []carbon.Job
	for h := 24 * 15; h < hours-30; h++ {
		for _, o := range []string{"dirty", "clean"} {
			a := t0.Add(time.Duration(h) * time.Hour)
			jobs = append(jobs, carbon.Job{ID: fmt.Sprintf("%s-%d", o, h), Origin: o, Arrival: a, Runtime: time.Hour, Deadline: a.Add(12 * time.Hour)})
		}
	}
	rep, err := Run(Config{
		Sites:     []Site{{Name: "dirty", Readings: readings(dirty), Capacity: 2}, {Name: "clean", Readings: readings(clean), Capacity: 3}},
		Jobs:      jobs,
		Transfers: map[[2]string]time.Duration{{"dirty", "clean"}: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.RunNow.Placements {
		if p.Site != p.Origin {
			t.Fatalf("run-now moved %s from %s to %s", p.JobID, p.Origin, p.Site)
		}
	}
	if !rep.OracleExact || rep.Tern.Violations != 0 || rep.Oracle.Violations != 0 || rep.Tern.Misses != 0 {
		t.Fatalf("exact %v, violations tern %d oracle %d, misses %d", rep.OracleExact, rep.Tern.Violations, rep.Oracle.Violations, rep.Tern.Misses)
	}
	if rep.Tern.Moved == 0 || rep.Oracle.Grams > rep.Tern.Grams+1e-6 {
		t.Fatalf("tern moved %d jobs, emitted %.0f g; oracle %.0f g", rep.Tern.Moved, rep.Tern.Grams, rep.Oracle.Grams)
	}
	for _, p := range rep.Tern.Placements {
		if p.Site == "clean" && p.Origin == "dirty" && p.Start.Before(p.Arrival.Add(time.Hour)) {
			t.Fatalf("%s started at %s, before its transfer could arrive", p.JobID, p.Start)
		}
	}
	var csv strings.Builder
	if err := rep.WritePlacements(&csv); err != nil {
		t.Fatal(err)
	}
	if rows := strings.Count(csv.String(), "\n"); rows != 1+3*len(jobs) {
		t.Fatalf("placements has %d lines, want %d", rows, 1+3*len(jobs))
	}
}

// TestOffloadMargin: a site forecast barely cleaner than the origin, by
// less than its forecast's error, does not get the job.
func TestOffloadMargin(t *testing.T) {
	p, err := carbon.NewPlanner(carbon.PlannerConfig{Sites: []carbon.Site{{Name: "home", Region: "home"}, {Name: "away", Region: "away"}}, Step: time.Hour, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	flat := func(v float64) *carbon.Curve {
		c, err := carbon.NewCurve(t0, time.Hour, []float64{v, v, v, v})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := p.SetForecast("home", flat(100), "f"); err != nil {
		t.Fatal(err)
	}
	if err := p.SetForecast("away", flat(95), "f"); err != nil {
		t.Fatal(err)
	}
	job := carbon.Job{ID: "j", Origin: "home", Arrival: t0, Runtime: time.Hour, Deadline: t0.Add(3 * time.Hour)}
	if a, _ := p.Submit(job); a.Site != "away" {
		t.Fatalf("without margin the job goes to %s, want away", a.Site)
	}
	p.Cancel("j")
	if err := p.SetMargin("away", 0.1); err != nil {
		t.Fatal(err)
	}
	if a, _ := p.Submit(job); a.Site != "home" {
		t.Fatalf("with a 10 %% margin a 5 %% saving moved the job to %s", a.Site)
	}
	if err := p.SetMargin("away", -1); err == nil {
		t.Fatal("negative margin accepted")
	}
}
