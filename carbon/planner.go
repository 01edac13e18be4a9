package carbon

import (
	"cmp"
	"fmt"
	"log/slog"
	"math"
	"slices"
	gosync "sync"
	"time"
)

// Job is a unit of deferrable work to place.
type Job struct {
	// ID identifies the job; unique among queued jobs.
	ID string
	// Arrival is when the job was accepted; it never starts before.
	Arrival time.Time
	// Runtime is the expected run time.
	Runtime time.Duration
	// Deadline is the latest time the job may finish (results back, when it
	// runs at another site).
	Deadline time.Time
	// Regions lists the grid regions where the job's data may be processed;
	// empty means any site.
	Regions []string
	// App names the job's app; a remote site that lists the apps it can
	// run (RemoteSite.Apps) takes only jobs of those apps.
	App string
	// Origin names the site the job arrived at, where it runs without a
	// transfer; empty means the local site (the planner's first).
	Origin string
	// EnergyKWh is the expected IT energy; 0 means 1 kW over the runtime.
	// It scales emissions, so it matters only when comparing sites with
	// different PUE or heat reuse.
	EnergyKWh float64
}

func (j Job) energyKWh() float64 {
	if j.EnergyKWh > 0 {
		return j.EnergyKWh
	}
	return j.Runtime.Hours()
}

// Reasons an [Assignment] was not chosen by expected emissions.
const (
	// ReasonNoForecast: no allowed site had a forecast covering any feasible start.
	ReasonNoForecast = "no forecast"
	// ReasonNoCapacity: every feasible start was full; the job runs as soon as
	// possible, above capacity if it must.
	ReasonNoCapacity = "no capacity"
	// ReasonPastDeadline: the job cannot finish by its deadline even if started
	// now; it runs now.
	ReasonPastDeadline = "past deadline"
	// ReasonNoSite: no site the planner knows is in one of the job's allowed
	// regions (or runs its app). The assignment has no Site and starts at
	// the job's latest start, so that it waits for such a site to appear
	// (any change of sites re-plans it); the caller must not run it
	// anywhere when it comes due.
	ReasonNoSite = "no allowed site"
)

// Assignment is where and when a job is planned to run, with what the
// planner expected it to emit there.
type Assignment struct {
	JobID string
	// Site is where the job runs; empty only with ReasonNoSite.
	Site  string
	Start time.Time
	// Intensity is the expected mean intensity over the runtime (NaN when
	// no forecast covered it).
	Intensity float64
	// Gross is the expected emissions in grams: energy × PUE × intensity.
	Gross float64
	// Avoided is the expected emissions avoided by reused heat, in grams.
	// It is kept apart from Gross and never subtracted in reports.
	Avoided float64
	// Source labels the forecast the plan was based on.
	Source string
	// Reason is empty when the start was chosen by expected emissions, and
	// one of the Reason constants when it was a fallback.
	Reason string
}

// Net returns Gross minus Avoided: what the planner ranks by.
func (a Assignment) Net() float64 { return a.Gross - a.Avoided }

// PlannerConfig configures a [Planner].
type PlannerConfig struct {
	// Sites are the places jobs may run. Sites[0] is the local site, used
	// when nothing better is known. At least one is required.
	Sites []Site
	// Step is the grid of candidate start times and of capacity
	// accounting; 0 means 15 minutes. Jobs may also start at the moment they
	// become startable, off the grid.
	Step time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives debug lines about re-planning; nil discards them.
	Logger *slog.Logger
	// Transfers, when set, gives the one-way time between two sites,
	// keyed [from, to], for jobs arriving at one and run at the other; a
	// pair it lacks takes the destination's Site.Transfer.
	Transfers map[[2]string]time.Duration
	// DispatchEarly makes Due hand out a job planned away from its origin
	// its transfer time before its start, when it must leave to arrive in
	// time, instead of at its start.
	DispatchEarly bool
}

// Planner places deferrable jobs on (site, start) pairs.
//
// For each job it picks, among the allowed sites and the start times from
// when the job can start (now, after any transfer) to the latest start that
// still meets its deadline, the pair with the least expected net emissions
// whose slots all have capacity left; ties go to the earlier start, then to
// the earlier site. Jobs are placed in order of latest start (tightest
// first). A job with nothing feasible runs as soon as possible (see the
// Reason constants), so no job is ever planned after its deadline when
// meeting it was possible at all. A job that no known site may take (its
// regions or app) is never placed at the local site regardless: it waits
// with ReasonNoSite.
//
// It is safe for concurrent use. Every method reads the injected clock once.
type Planner struct {
	step   time.Duration
	now    func() time.Time
	log    *slog.Logger
	mu     gosync.Mutex
	sites  []*siteState
	byName map[string]int
	queued map[string]*queuedJob
	pairs  map[[2]string]time.Duration
	early  bool
}

type siteState struct {
	Site
	curve  *Curve
	source string
	// margin is the relative error of the site's forecast: a job moves
	// here from its origin only if it is expected to emit less by more
	// than this fraction.
	margin float64
	occ    occupancy
	// apps, when not nil, are the only apps whose jobs the site takes.
	apps map[string]bool
}

type queuedJob struct {
	job Job
	a   Assignment
	// slots held in site a.Site's occupancy, or held=false.
	held       bool
	site       int
	slotA, slB int64
	// dispatch is when the job must leave its origin: the start less the
	// transfer to the chosen site.
	dispatch time.Time
}

// NewPlanner returns a planner for the configured sites, with no forecasts.
func NewPlanner(cfg PlannerConfig) (*Planner, error) {
	if len(cfg.Sites) == 0 {
		return nil, fmt.Errorf("planner: no sites: %w", ErrInvalid)
	}
	p := &Planner{step: cfg.Step, now: cfg.Now, log: cfg.Logger, byName: map[string]int{}, queued: map[string]*queuedJob{}, pairs: cfg.Transfers, early: cfg.DispatchEarly}
	if p.step <= 0 {
		p.step = 15 * time.Minute
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	for i, s := range cfg.Sites {
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("planner: %w", err)
		}
		if _, dup := p.byName[s.Name]; dup {
			return nil, fmt.Errorf("planner: site %s listed twice: %w", s.Name, ErrInvalid)
		}
		p.byName[s.Name] = i
		p.sites = append(p.sites, &siteState{Site: s})
	}
	return p, nil
}

// SetForecast replaces a site's forecast, labelled with source, and
// re-plans every queued job, since a changed forecast can change every
// choice. A nil curve removes the forecast.
func (p *Planner) SetForecast(site string, c *Curve, source string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, ok := p.byName[site]
	if !ok {
		return fmt.Errorf("set forecast: unknown site %q: %w", site, ErrInvalid)
	}
	p.sites[i].curve, p.sites[i].source = c, source
	p.replan(p.now())
	return nil
}

// SetMargin sets the relative error of a site's forecast (0.1 for 10 %):
// a job that arrived elsewhere moves to the site only when its expected
// emissions there, raised by the margin, are still below the best at its
// origin, so that a forecast saving within the forecast's error does not
// move it. It applies from the next placement.
func (p *Planner) SetMargin(site string, margin float64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, ok := p.byName[site]
	if !ok {
		return fmt.Errorf("set margin: unknown site %q: %w", site, ErrInvalid)
	}
	if margin < 0 || math.IsNaN(margin) || math.IsInf(margin, 0) {
		return fmt.Errorf("set margin of %s: %v is not a finite fraction ≥ 0: %w", site, margin, ErrInvalid)
	}
	p.sites[i].margin = margin
	return nil
}

// origin returns the index of the site a job arrived at: its Origin, or
// the local site when that is empty or unknown.
func (p *Planner) origin(j Job) int {
	if i, ok := p.byName[j.Origin]; ok {
		return i
	}
	return 0
}

// transfer returns how long moving job j from its origin to site si takes.
func (p *Planner) transfer(origin, si int) time.Duration {
	if si == origin {
		return 0
	}
	if d, ok := p.pairs[[2]string{p.sites[origin].Name, p.sites[si].Name}]; ok {
		return d
	}
	return p.sites[si].Transfer
}

// Submit validates and plans a job, keeping it queued until [Planner.Due]
// hands it out.
func (p *Planner) Submit(j Job) (Assignment, error) {
	if j.ID == "" {
		return Assignment{}, fmt.Errorf("submit job: no id: %w", ErrInvalid)
	}
	if j.Runtime <= 0 {
		return Assignment{}, fmt.Errorf("submit job %s: runtime %v must be positive: %w", j.ID, j.Runtime, ErrInvalid)
	}
	if j.Deadline.IsZero() {
		return Assignment{}, fmt.Errorf("submit job %s: no deadline: %w", j.ID, ErrInvalid)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, dup := p.queued[j.ID]; dup {
		return Assignment{}, fmt.Errorf("submit job %s: already queued: %w", j.ID, ErrInvalid)
	}
	q := &queuedJob{job: j}
	p.place(q, p.now())
	p.queued[j.ID] = q
	return q.a, nil
}

// Cancel removes a queued job and frees its capacity. It reports whether
// the job was queued.
func (p *Planner) Cancel(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	q, ok := p.queued[id]
	if ok {
		p.release(q)
		delete(p.queued, id)
	}
	return ok
}

// Replan re-plans every queued job against the current forecasts and clock.
func (p *Planner) Replan() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.replan(p.now())
}

// Due returns the jobs whose planned start has come (with DispatchEarly,
// the start less the transfer when the job runs away from its origin),
// in start order,
// and removes them from the queue; their capacity stays held until they
// end.
func (p *Planner) Due() []Assignment {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var due []Assignment
	for id, q := range p.queued {
		if !q.dispatch.After(now) {
			due = append(due, q.a)
			delete(p.queued, id)
		}
	}
	slices.SortFunc(due, func(a, b Assignment) int {
		return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.JobID, b.JobID))
	})
	k := p.slot(now)
	for _, s := range p.sites {
		s.occ.trim(k - 1)
	}
	return due
}

// Assignment returns a queued job's current plan.
func (p *Planner) Assignment(id string) (Assignment, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q, ok := p.queued[id]
	if !ok {
		return Assignment{}, false
	}
	return q.a, true
}

// Queued returns how many jobs are waiting to start.
func (p *Planner) Queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queued)
}

// replan frees every queued job's slots and places them again, tightest
// latest start first.
func (p *Planner) replan(now time.Time) {
	jobs := make([]*queuedJob, 0, len(p.queued))
	for _, q := range p.queued {
		p.release(q)
		jobs = append(jobs, q)
	}
	slices.SortFunc(jobs, func(a, b *queuedJob) int {
		la := a.job.Deadline.Add(-a.job.Runtime)
		lb := b.job.Deadline.Add(-b.job.Runtime)
		return cmp.Or(la.Compare(lb), a.job.Arrival.Compare(b.job.Arrival), cmp.Compare(a.job.ID, b.job.ID))
	})
	moved := 0
	for _, q := range jobs {
		before := q.a
		p.place(q, now)
		if !before.Start.Equal(q.a.Start) || before.Site != q.a.Site {
			moved++
		}
	}
	if len(jobs) > 0 {
		p.log.Debug("re-planned", "jobs", len(jobs), "moved", moved)
	}
}

func (p *Planner) release(q *queuedJob) {
	if q.held {
		p.sites[q.site].occ.add(q.slotA, q.slB, -1)
		q.held = false
	}
}

// slot returns the planner slot containing t.
func (p *Planner) slot(t time.Time) int64 {
	n := t.UnixNano()
	s := int64(p.step)
	k := n / s
	if n < 0 && n%s != 0 {
		k--
	}
	return k
}

// span returns the planner slots a job occupies when it runs [start, end).
func (p *Planner) span(start, end time.Time) (int64, int64) {
	return p.slot(start), p.slot(end.Add(-1))
}

func (p *Planner) allowed(s *siteState, j Job) bool {
	if s.apps != nil && !s.apps[j.App] {
		return false
	}
	return len(j.Regions) == 0 || slices.Contains(j.Regions, s.Region)
}

// place plans q at now and holds its slots.
func (p *Planner) place(q *queuedJob, now time.Time) {
	j := q.job
	earliest0 := now
	if j.Arrival.After(earliest0) {
		earliest0 = j.Arrival
	}
	energy := j.energyKWh()
	best, bestSite := Assignment{}, -1
	bestRank := math.Inf(1)
	feasible := false
	origin := p.origin(j)
	for si, s := range p.sites {
		if !p.allowed(s, j) {
			continue
		}
		tr := p.transfer(origin, si)
		earliest := earliest0.Add(tr)
		latest := j.Deadline.Add(-j.Runtime - tr)
		// Elsewhere than the origin, rank by emissions raised by the
		// forecast's error margin.
		penalty := 1.0
		if si != origin {
			penalty += s.margin
		}
		if latest.Before(earliest) {
			continue
		}
		feasible = true
		if s.curve == nil {
			continue
		}
		// Candidates: the earliest start, then every grid point up to latest.
		g := earliest.Truncate(p.step)
		if !g.After(earliest) {
			g = g.Add(p.step)
		}
		for t, first := earliest, true; !t.After(latest); {
			end := t.Add(j.Runtime)
			a, b := p.span(t, end)
			if s.occ.fits(a, b, s.Capacity) {
				if mean, ok := s.curve.Mean(t, end); ok {
					gross := energy * s.pue() * mean
					_, avoided := s.Heat.Avoided(energy, j.Runtime, mean)
					// Strictly better only: ties keep the earlier start and site.
					if rank := (gross - avoided) * penalty; rank < bestRank-1e-9*math.Abs(bestRank) || bestSite < 0 {
						bestRank, bestSite = rank, si
						best = Assignment{JobID: j.ID, Site: s.Name, Start: t, Intensity: mean, Gross: gross, Avoided: avoided, Source: s.source}
					}
				}
			}
			if first {
				t, first = g, false
			} else {
				t = t.Add(p.step)
			}
		}
	}
	if bestSite < 0 {
		best, bestSite = p.fallback(j, earliest0, feasible)
	}
	q.a, q.site, q.dispatch = best, bestSite, best.Start
	if bestSite >= 0 && p.early {
		q.dispatch = best.Start.Add(-p.transfer(origin, bestSite))
	}
	if bestSite < 0 {
		return // no allowed site: nothing to hold
	}
	s := p.sites[bestSite]
	q.slotA, q.slB = p.span(best.Start, best.Start.Add(j.Runtime))
	s.occ.add(q.slotA, q.slB, 1)
	q.held = true
}

// fallback runs a job as soon as possible: at its origin when allowed,
// else the first allowed site, with capacity, before the deadline when it can.
// With no allowed site at all it returns site index -1 and an assignment
// with ReasonNoSite at the job's latest start.
func (p *Planner) fallback(j Job, earliest0 time.Time, feasible bool) (Assignment, int) {
	if !slices.ContainsFunc(p.sites, func(s *siteState) bool { return p.allowed(s, j) }) {
		start := j.Deadline.Add(-j.Runtime)
		if start.Before(earliest0) {
			start = earliest0
		}
		return Assignment{JobID: j.ID, Start: start, Intensity: math.NaN(), Gross: math.NaN(), Reason: ReasonNoSite}, -1
	}
	reason := ReasonPastDeadline
	origin := p.origin(j)
	if feasible {
		reason = ReasonNoForecast
		// Something was feasible, so either no forecast or no capacity; find
		// the first start with capacity.
		for _, si := range p.fallbackOrder(j) {
			s := p.sites[si]
			earliest := earliest0.Add(p.transfer(origin, si))
			latest := j.Deadline.Add(-j.Runtime - p.transfer(origin, si))
			t := earliest
			for !t.After(latest) {
				a, b := p.span(t, t.Add(j.Runtime))
				if s.occ.fits(a, b, s.Capacity) {
					// place saw this start too, so its forecast did not cover it.
					return p.assign(j, si, t, reason), si
				}
				if t.Equal(earliest) {
					t = t.Truncate(p.step)
				}
				t = t.Add(p.step)
			}
		}
		reason = ReasonNoCapacity
	}
	si := p.fallbackOrder(j)[0]
	return p.assign(j, si, earliest0.Add(p.transfer(origin, si)), reason), si
}

// fallbackOrder returns the sites allowed for j, its origin first.
func (p *Planner) fallbackOrder(j Job) []int {
	origin := p.origin(j)
	var order []int
	if p.allowed(p.sites[origin], j) {
		order = append(order, origin)
	}
	for si, s := range p.sites {
		if si != origin && p.allowed(s, j) {
			order = append(order, si)
		}
	}
	return order
}

func (p *Planner) assign(j Job, si int, start time.Time, reason string) Assignment {
	s := p.sites[si]
	a := Assignment{JobID: j.ID, Site: s.Name, Start: start, Intensity: math.NaN(), Gross: math.NaN(), Source: s.source, Reason: reason}
	if s.curve != nil {
		if mean, ok := s.curve.Mean(start, start.Add(j.Runtime)); ok {
			e := j.energyKWh()
			a.Intensity, a.Gross = mean, e*s.pue()*mean
			_, a.Avoided = s.Heat.Avoided(e, j.Runtime, mean)
		}
	}
	return a
}
