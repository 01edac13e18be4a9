// Package sim replays carbon-intensity traces with a workload through the
// same carbon.Planner the agent runs, next to two baselines: run-now (every
// job starts on arrival at the first site) and an oracle (the planner given
// the actual future as its forecast). It reports emissions, the saving
// against run-now, the share of the oracle's saving kept, and deadline
// misses, and draws the intensity with the chosen starts as SVG.
package sim

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// Site is one simulated site: its actual intensity and capacity.
type Site struct {
	// Name identifies the site; it is also its region.
	Name string
	// Readings are the actual intensities, sorted by Start.
	Readings []carbon.Reading
	// Capacity is how many jobs may run at once; 0 means unlimited.
	Capacity int
	// Transfer is the one-way time to move a job there (0 for the first site).
	Transfer time.Duration
	// PUE of the site; 0 means 1.
	PUE float64
}

// Config is one simulation.
type Config struct {
	// Sites are the traces; jobs arrive at Sites[0], which is where run-now
	// runs them.
	Sites []Site
	// Jobs is the workload. A job's Regions, if set, name allowed sites.
	Jobs []carbon.Job
	// Step is both the decision interval and the planner's grid; 0 means 1h.
	// Arrivals are seen at the first decision at or after them.
	Step time.Duration
	// Forecaster forecasts each site from its own history at every decision;
	// nil means carbon.SeasonalRegression{}, the best of Tern's forecasters on
	// the shared traces (docs/CARBON.md).
	Forecaster carbon.Forecaster
	// Perfect gives Tern's planner the actual future instead of a forecast,
	// so that Tern and the oracle coincide (a check of the engine).
	Perfect bool
	// Logger receives progress at debug level; nil discards it.
	Logger *slog.Logger
}

// Placement is where and when a job ran in one policy.
type Placement struct {
	JobID  string
	Site   string
	Start  time.Time
	Grams  float64
	Missed bool
}

// Outcome is one policy's result.
type Outcome struct {
	// Policy is "run-now", "oracle" or "tern".
	Policy string
	// Grams is the actual emissions of all jobs (energy × PUE × actual
	// intensity over each run).
	Grams float64
	// Jobs ran; Misses finished after their deadline; Unknown ran where the
	// trace has no data (not counted in Grams).
	Jobs, Misses, Unknown int
	// Placements in job order.
	Placements []Placement
}

// Report is the comparison of the three policies.
type Report struct {
	Sites      []string
	Forecaster string
	Step       time.Duration
	RunNow     Outcome
	Oracle     Outcome
	Tern       Outcome
}

// SavedPct returns how much less o emitted than run-now, in percent.
func (r Report) SavedPct(o Outcome) float64 {
	if r.RunNow.Grams == 0 {
		return 0
	}
	return 100 * (1 - o.Grams/r.RunNow.Grams)
}

// ShareOfOracle returns Tern's saving as a percentage of the oracle's.
func (r Report) ShareOfOracle() float64 {
	os := r.RunNow.Grams - r.Oracle.Grams
	if os == 0 {
		return math.NaN()
	}
	return 100 * (r.RunNow.Grams - r.Tern.Grams) / os
}

type simSite struct {
	Site
	actual *carbon.Curve
}

// Run simulates cfg under run-now, the oracle and Tern's forecast.
func Run(cfg Config) (Report, error) {
	if len(cfg.Sites) == 0 {
		return Report{}, fmt.Errorf("simulate: no sites: %w", carbon.ErrInvalid)
	}
	if cfg.Step <= 0 {
		cfg.Step = time.Hour
	}
	if cfg.Forecaster == nil {
		cfg.Forecaster = carbon.SeasonalRegression{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sites := make([]simSite, len(cfg.Sites))
	names := make([]string, len(cfg.Sites))
	for i, s := range cfg.Sites {
		c, err := carbon.Resample(s.Readings, cfg.Step)
		if err != nil {
			return Report{}, fmt.Errorf("simulate site %s: %w", s.Name, err)
		}
		sites[i] = simSite{Site: s, actual: c}
		names[i] = s.Name
	}
	jobs := slices.Clone(cfg.Jobs)
	slices.SortStableFunc(jobs, func(a, b carbon.Job) int { return a.Arrival.Compare(b.Arrival) })
	rep := Report{Sites: names, Forecaster: cfg.Forecaster.Name(), Step: cfg.Step}
	rep.RunNow = runNow(sites, jobs)
	var err error
	if rep.Oracle, err = replay("oracle", cfg, sites, jobs, nil); err != nil {
		return Report{}, err
	}
	f := cfg.Forecaster
	if cfg.Perfect {
		f, rep.Forecaster = nil, "perfect knowledge"
	}
	if rep.Tern, err = replay("tern", cfg, sites, jobs, f); err != nil {
		return Report{}, err
	}
	return rep, nil
}

// emissions returns what a job emits at site s starting at start.
func emissions(s simSite, j carbon.Job, start time.Time) (float64, bool) {
	mean, ok := s.actual.Mean(start, start.Add(j.Runtime))
	if !ok {
		return 0, false
	}
	pue := s.PUE
	if pue <= 0 {
		pue = 1
	}
	e := j.EnergyKWh
	if e <= 0 {
		e = j.Runtime.Hours()
	}
	return e * pue * mean, true
}

func (o *Outcome) add(s simSite, j carbon.Job, start time.Time) {
	g, ok := emissions(s, j, start)
	missed := start.Add(j.Runtime).After(j.Deadline)
	o.Jobs++
	if missed {
		o.Misses++
	}
	if !ok {
		o.Unknown++
	}
	o.Grams += g
	o.Placements = append(o.Placements, Placement{JobID: j.ID, Site: s.Name, Start: start, Grams: g, Missed: missed})
}

func runNow(sites []simSite, jobs []carbon.Job) Outcome {
	o := Outcome{Policy: "run-now"}
	for _, j := range jobs {
		o.add(sites[0], j, j.Arrival)
	}
	return o
}

// replay drives a planner through time: at every step it refreshes the
// forecasts (or, for the oracle, sets the actual future once), submits the
// jobs that have arrived and runs those that are due.
func replay(policy string, cfg Config, sites []simSite, jobs []carbon.Job, f carbon.Forecaster) (Outcome, error) {
	o := Outcome{Policy: policy}
	if len(jobs) == 0 {
		return o, nil
	}
	var now time.Time
	psites := make([]carbon.Site, len(sites))
	byName := map[string]int{}
	for i, s := range sites {
		psites[i] = carbon.Site{Name: s.Name, Region: s.Name, Capacity: s.Capacity, Transfer: s.Transfer, PUE: s.PUE}
		byName[s.Name] = i
	}
	p, err := carbon.NewPlanner(carbon.PlannerConfig{Sites: psites, Step: cfg.Step, Now: func() time.Time { return now }, Logger: cfg.Logger})
	if err != nil {
		return o, fmt.Errorf("simulate %s: %w", policy, err)
	}
	byID := make(map[string]carbon.Job, len(jobs))
	var horizon time.Duration
	for _, j := range jobs {
		byID[j.ID] = j
		horizon = max(horizon, j.Deadline.Sub(j.Arrival))
	}
	horizon += cfg.Step
	if f == nil {
		for _, s := range sites {
			if err := p.SetForecast(s.Name, s.actual, "oracle"); err != nil {
				return o, err
			}
		}
	}
	now = jobs[0].Arrival.Truncate(cfg.Step)
	next := 0
	for next < len(jobs) || p.Queued() > 0 {
		if f != nil && p.Queued()+countArrivals(jobs[next:], now) > 0 {
			for _, s := range sites {
				fc, err := f.Forecast(s.actual.Until(now), now, horizon)
				if err != nil {
					return o, fmt.Errorf("simulate %s at %s: %w", policy, now.Format(time.RFC3339), err)
				}
				if err := p.SetForecast(s.Name, fc, f.Name()); err != nil {
					return o, err
				}
			}
		}
		for ; next < len(jobs) && !jobs[next].Arrival.After(now); next++ {
			if _, err := p.Submit(jobs[next]); err != nil {
				return o, fmt.Errorf("simulate %s: %w", policy, err)
			}
		}
		for _, a := range p.Due() {
			o.add(sites[byName[a.Site]], byID[a.JobID], a.Start)
		}
		if next < len(jobs) && p.Queued() == 0 {
			// Nothing waiting: jump to the next arrival.
			now = now.Add(cfg.Step)
			if t := jobs[next].Arrival.Truncate(cfg.Step); t.After(now) {
				now = t
			}
			continue
		}
		now = now.Add(cfg.Step)
	}
	// Report placements in job order, like the other policies.
	order := make(map[string]int, len(jobs))
	for i, j := range jobs {
		order[j.ID] = i
	}
	slices.SortFunc(o.Placements, func(a, b Placement) int { return order[a.JobID] - order[b.JobID] })
	return o, nil
}

func countArrivals(jobs []carbon.Job, now time.Time) int {
	if len(jobs) > 0 && !jobs[0].Arrival.After(now) {
		return 1
	}
	return 0
}

// OracleOnly runs only the run-now baseline and the oracle, for checks
// against known optima.
func OracleOnly(cfg Config) (oracle, runNowOut Outcome, err error) {
	if cfg.Step <= 0 {
		cfg.Step = time.Hour
	}
	sites := make([]simSite, len(cfg.Sites))
	for i, s := range cfg.Sites {
		c, err := carbon.Resample(s.Readings, cfg.Step)
		if err != nil {
			return Outcome{}, Outcome{}, fmt.Errorf("simulate site %s: %w", s.Name, err)
		}
		sites[i] = simSite{Site: s, actual: c}
	}
	jobs := slices.Clone(cfg.Jobs)
	slices.SortStableFunc(jobs, func(a, b carbon.Job) int { return a.Arrival.Compare(b.Arrival) })
	oracle, err = replay("oracle", cfg, sites, jobs, nil)
	return oracle, runNow(sites, jobs), err
}
