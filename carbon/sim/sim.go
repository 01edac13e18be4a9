// Package sim replays carbon-intensity traces with a workload through the
// same carbon.Planner the agent runs, next to two baselines: run-now (every
// job starts on arrival at its own site) and an oracle with the actual
// future (an exact min-cost assignment when capacity binds). It reports
// emissions, the saving against run-now, the share of the oracle's saving
// kept, capacity violations and deadline misses, writes every placement as
// CSV, and draws the intensity with the chosen starts as SVG.
package sim

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
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
	// Transfer is the one-way time to move a job there from another site
	// (Config.Transfers overrides it per pair); a job at its own site
	// has none.
	Transfer time.Duration
	// PUE of the site; 0 means 1.
	PUE float64
	// Forecaster, when set, forecasts this site instead of
	// Config.Forecaster (such as a provider's archive for its grid).
	Forecaster carbon.Forecaster
}

// Config is one simulation.
type Config struct {
	// Sites are the traces. A job arrives at its Origin (Sites[0] when
	// empty), which is where run-now runs it.
	Sites []Site
	// Jobs is the workload. A job's Regions, if set, name allowed sites.
	Jobs []carbon.Job
	// Transfers gives the one-way time between two sites, keyed
	// [from, to]; a pair it lacks takes the destination's Site.Transfer.
	Transfers map[[2]string]time.Duration
	// Step is both the decision interval and the planner's grid; 0 means 1h.
	// Arrivals are seen at the first decision at or after them.
	Step time.Duration
	// Forecaster forecasts each site from its own history at every decision;
	// nil means carbon.SeasonalRegression{}, the best of Tern's forecasters on
	// the shared traces (docs/CARBON.md).
	Forecaster carbon.Forecaster
	// Perfect gives Tern's planner the actual future instead of a forecast,
	// so that Tern and the planner-based oracle coincide (a check of the
	// engine).
	Perfect bool
	// Logger receives progress at debug level; nil discards it.
	Logger *slog.Logger
}

// Placement is where and when a job ran in one policy.
type Placement struct {
	JobID string
	// Origin is the site the job arrived at.
	Origin            string
	Site              string
	Arrival, Deadline time.Time
	Start             time.Time
	Runtime           time.Duration
	Grams             float64
	Missed            bool
	// Reason is why the start was chosen: "run-now", "oracle", "planned"
	// (least expected emissions) or one of carbon's Reason constants.
	Reason string
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
	// Violations counts the site-slots (planner grid) that ran more jobs
	// than the site's capacity; run-now ignores capacity by definition.
	Violations int
	// Moved counts jobs that ran at another site than their origin.
	Moved int
	// Placements in job order.
	Placements []Placement
}

// Report is the comparison of the three policies.
type Report struct {
	Sites      []string
	Forecaster string
	Step       time.Duration
	// OracleExact says the oracle is optimal: the assignment of jobs to
	// site-slots solved exactly (capacity runs of jobs within one slot),
	// or, without capacity, the planner given the actual future. Otherwise
	// it is the planner given the actual future, placing jobs one by one.
	OracleExact bool
	RunNow      Outcome
	Oracle      Outcome
	Tern        Outcome
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
	jobs, err := sortedJobs(cfg, names)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Sites: names, Forecaster: forecasterNames(cfg), Step: cfg.Step}
	rep.RunNow = finish(cfg, sites, runNow(sites, jobs))
	if rep.Oracle, rep.OracleExact, err = oracle(cfg, sites, jobs); err != nil {
		return Report{}, err
	}
	f := cfg.Forecaster
	if cfg.Perfect {
		f, rep.Forecaster = nil, "perfect knowledge"
	}
	if rep.Tern, err = replay("tern", cfg, sites, jobs, f); err != nil {
		return Report{}, err
	}
	rep.Tern = finish(cfg, sites, rep.Tern)
	return rep, nil
}

// sortedJobs returns the jobs by arrival, checking that their origins
// are sites.
func sortedJobs(cfg Config, names []string) ([]carbon.Job, error) {
	jobs := slices.Clone(cfg.Jobs)
	for i, j := range jobs {
		if j.Origin == "" {
			jobs[i].Origin = names[0]
		} else if !slices.Contains(names, j.Origin) {
			return nil, fmt.Errorf("simulate job %s: origin %q is not a site (%s): %w", j.ID, j.Origin, strings.Join(names, ", "), carbon.ErrInvalid)
		}
	}
	slices.SortStableFunc(jobs, func(a, b carbon.Job) int { return a.Arrival.Compare(b.Arrival) })
	return jobs, nil
}

// forecasterNames describes the forecasts used, naming the sites that
// have their own.
func forecasterNames(cfg Config) string {
	name := cfg.Forecaster.Name()
	for _, s := range cfg.Sites {
		if s.Forecaster != nil {
			name += fmt.Sprintf("; %s: %s", s.Name, s.Forecaster.Name())
		}
	}
	return name
}

// finish counts capacity violations and moved jobs.
func finish(cfg Config, sites []simSite, o Outcome) Outcome {
	capacity := map[string]int{}
	for _, s := range sites {
		capacity[s.Name] = s.Capacity
	}
	type slot struct {
		site string
		k    int64
	}
	load := map[slot]int{}
	o.Violations, o.Moved = 0, 0
	for _, p := range o.Placements {
		if p.Site != p.Origin {
			o.Moved++
		}
		c := capacity[p.Site]
		if c <= 0 {
			continue
		}
		a, b := slotOf(p.Start, cfg.Step), slotOf(p.Start.Add(p.Runtime-1), cfg.Step)
		for k := a; k <= b; k++ {
			load[slot{p.Site, k}]++
			if load[slot{p.Site, k}] == c+1 {
				o.Violations++
			}
		}
	}
	return o
}

// slotOf returns the grid slot containing t, as the planner counts them.
func slotOf(t time.Time, step time.Duration) int64 {
	n, s := t.UnixNano(), int64(step)
	k := n / s
	if n < 0 && n%s != 0 {
		k--
	}
	return k
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

func (o *Outcome) add(s simSite, j carbon.Job, start time.Time, reason string) {
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
	o.Placements = append(o.Placements, Placement{JobID: j.ID, Origin: j.Origin, Site: s.Name, Arrival: j.Arrival, Deadline: j.Deadline, Start: start, Runtime: j.Runtime, Grams: g, Missed: missed, Reason: reason})
}

// runNow runs every job on arrival at its origin.
func runNow(sites []simSite, jobs []carbon.Job) Outcome {
	o := Outcome{Policy: "run-now"}
	for _, j := range jobs {
		i := slices.IndexFunc(sites, func(s simSite) bool { return s.Name == j.Origin })
		o.add(sites[i], j, j.Arrival, "run-now")
	}
	return o
}

// replay drives a planner through time: at every step it refreshes the
// forecasts (or, for the oracle, sets the actual future once), submits the
// jobs that have arrived and runs those that are due. With forecasts and
// several sites, each site's margin is its forecast's recent error
// (marginTracker), so that a job moves only for a saving beyond it.
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
	p, err := carbon.NewPlanner(carbon.PlannerConfig{Sites: psites, Step: cfg.Step, Now: func() time.Time { return now }, Logger: cfg.Logger, Transfers: cfg.Transfers, DispatchEarly: true})
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
	margins := make([]*marginTracker, len(sites))
	for i := range margins {
		margins[i] = newMarginTracker(cfg.Step, horizon)
	}
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
			for i, s := range sites {
				sf := f
				if s.Forecaster != nil {
					sf = s.Forecaster
				}
				fc, err := sf.Forecast(s.actual.Until(now), now, horizon)
				if err != nil {
					return o, fmt.Errorf("simulate %s at %s: %w", policy, now.Format(time.RFC3339), err)
				}
				if len(sites) > 1 {
					if err := p.SetMargin(s.Name, margins[i].update(s.actual, now, fc)); err != nil {
						return o, err
					}
				}
				if err := p.SetForecast(s.Name, fc, sf.Name()); err != nil {
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
			reason := a.Reason
			if reason == "" {
				reason = "planned"
			}
			o.add(sites[byName[a.Site]], byID[a.JobID], a.Start, reason)
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
func OracleOnly(cfg Config) (oracleOut, runNowOut Outcome, err error) {
	if cfg.Step <= 0 {
		cfg.Step = time.Hour
	}
	sites := make([]simSite, len(cfg.Sites))
	names := make([]string, len(cfg.Sites))
	for i, s := range cfg.Sites {
		c, err := carbon.Resample(s.Readings, cfg.Step)
		if err != nil {
			return Outcome{}, Outcome{}, fmt.Errorf("simulate site %s: %w", s.Name, err)
		}
		sites[i] = simSite{Site: s, actual: c}
		names[i] = s.Name
	}
	jobs, err := sortedJobs(cfg, names)
	if err != nil {
		return Outcome{}, Outcome{}, err
	}
	oracleOut, _, err = oracle(cfg, sites, jobs)
	return oracleOut, finish(cfg, sites, runNow(sites, jobs)), err
}

// marginTracker measures a site's forecast error: the mean absolute
// error over the actual mean of every horizon forecast in the last week,
// as each slot becomes known.
type marginTracker struct {
	step time.Duration
	// past holds recent forecasts, newest last.
	past []*carbon.Curve
	keep int
	// absErr and actual sum per known slot over the window, in a ring.
	absErr, actual []float64
	pos            int
	last           time.Time
}

func newMarginTracker(step, horizon time.Duration) *marginTracker {
	week := int(7 * 24 * time.Hour / step)
	return &marginTracker{step: step, keep: int(horizon/step) + 1, absErr: make([]float64, week), actual: make([]float64, week)}
}

// update scores the slots that became known since the last call against
// the forecasts that covered them, keeps fc, and returns the margin.
func (m *marginTracker) update(actual *carbon.Curve, now time.Time, fc *carbon.Curve) float64 {
	for t := m.last; !m.last.IsZero() && t.Before(now); t = t.Add(m.step) {
		a, ok := actual.Mean(t, t.Add(m.step))
		var e, sum float64
		for _, f := range m.past {
			if v, fok := f.Mean(t, t.Add(m.step)); ok && fok {
				e += math.Abs(v - a)
				sum += a
			}
		}
		m.absErr[m.pos], m.actual[m.pos] = e, sum
		m.pos = (m.pos + 1) % len(m.absErr)
	}
	m.last = now
	m.past = append(m.past, fc)
	if len(m.past) > m.keep {
		m.past = m.past[1:]
	}
	var e, a float64
	for i := range m.absErr {
		e += m.absErr[i]
		a += m.actual[i]
	}
	if a <= 0 {
		return 0
	}
	return e / a
}
