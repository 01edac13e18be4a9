package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// Offloader reaches the other sites of the fleet. The agent implements it
// over NATS; this package never imports the transport. Methods are safe
// for concurrent use.
type Offloader interface {
	// Sites returns the other sites that may take jobs now, with their
	// forecasts and the apps they can run, and a version that changes
	// whenever the list does, so that the planner re-plans only then.
	Sites() (sites []carbon.RemoteSite, version uint64)
	// Offload runs job at site and returns its result. It returns an
	// error when the site did not answer in time (ctx's deadline), refused
	// the job or cannot be reached; the job then runs here.
	Offload(ctx context.Context, site string, job OffloadJob) (OffloadResult, error)
}

// OffloadJob is a stored job as it is sent to another site.
type OffloadJob struct {
	ID, App, Route                   string
	Method, Target, Host, RemoteAddr string
	TLS                              bool
	Header                           http.Header
	Body                             []byte
	Deadline                         time.Time
	// RunNow is the expected intensity of running the job here on
	// acceptance, the counterfactual; nil when unknown.
	RunNow *float64
	// Regions are the grid regions the job may run in; empty is any. A
	// site outside them refuses the job.
	Regions []string
}

// OffloadResult is what a site returns for a job it ran: the app's
// response and what the run emitted there.
type OffloadResult struct {
	Status int
	Header http.Header
	Body   []byte
	// Grams and RunNowGrams are the site's accounting of the run and of
	// its run-now counterfactual, when it knew an intensity.
	Grams, RunNowGrams *float64
}

// syncRemote hands the planner the Offloader's sites when they changed
// since the last call.
func (s *Scheduler) syncRemote() {
	if s.cfg.Offload == nil {
		return
	}
	sites, version := s.cfg.Offload.Sites()
	s.mu.Lock()
	same := version == s.remoteVersion
	s.remoteVersion = version
	s.mu.Unlock()
	if same {
		return
	}
	if err := s.planner.SetRemote(sites); err != nil {
		s.log.Warn("other sites not usable for jobs", "err", err)
		return
	}
	s.replanned()
	s.log.Debug("sites for jobs changed; jobs re-planned", "sites", len(sites))
}

// executeRemote sends a job planned at another site there and stores the
// result. When the site fails, refuses or does not answer in time, the
// job runs here, still before its deadline; a job whose regions exclude
// this site goes to the next allowed site instead, and fails when none is
// left.
func (s *Scheduler) executeRemote(ctx context.Context, r *record, site string) {
	body, err := s.cfg.Store.JobBlob(r.ID, blobRequest)
	if err != nil {
		s.finish(r.ID, nil, nil, fmt.Errorf("read stored request: %w", err), usage{})
		return
	}
	job := OffloadJob{ID: r.ID, App: r.App, Route: r.Route, Method: r.Method, Target: r.Target, Host: r.Host,
		RemoteAddr: r.RemoteAddr, TLS: r.TLS, Header: r.Header, Body: body, Deadline: r.Deadline, RunNow: r.RunNow, Regions: r.Regions}
	here := regionAllowed(r.Regions, s.cfg.Site.Region)
	tried := map[string]bool{}
	var errs []string
	for site != "" {
		tried[site] = true
		// Wait no longer than leaves time to run the job here afterwards,
		// when it may run here; otherwise until the deadline.
		wait := min(s.cfg.OffloadTimeout, r.Deadline.Sub(s.now()))
		if here {
			wait = min(wait, r.Deadline.Sub(s.now())-r.Runtime-s.cfg.Tick)
		}
		res, err := s.sendTo(ctx, site, job, wait)
		if ctx.Err() != nil {
			// Cancelled or shutting down: as for a local run.
			s.stopped(r.ID)
			return
		}
		if err == nil {
			s.finishRemote(r.ID, site, res)
			return
		}
		errs = append(errs, err.Error())
		if here {
			break
		}
		next := s.nextSite(r, tried)
		s.log.Warn("offload failed; trying another allowed site", "job", r.ID, "app", r.App, "site", site, "next", next, "err", err)
		if next != "" {
			s.editPlan(r.ID, func(p *plan) { p.Site, p.Offload = next, strings.Join(errs, "; ") })
		}
		site = next
	}
	reason := strings.Join(errs, "; ")
	if !here {
		s.mu.Lock()
		if cur := s.jobs[r.ID]; cur != nil && cur.State == StateRunning {
			s.failLocked(cur, fmt.Sprintf("%s; no other site in regions %s could take the job before its deadline, and it may not run at %s (region %q)",
				reason, strings.Join(r.Regions, ", "), s.cfg.Site.Name, s.cfg.Site.Region))
		}
		s.mu.Unlock()
		return
	}
	s.log.Warn("offload failed; running the job here", "job", r.ID, "app", r.App, "site", site, "err", reason)
	s.editPlan(r.ID, func(p *plan) {
		p.Site, p.Offload = s.cfg.Site.Name, reason
		p.Intensity, p.Gross, p.Avoided = nil, nil, nil
	})
	s.execute(ctx, r)
}

// sendTo offloads job to site, waiting at most wait.
func (s *Scheduler) sendTo(ctx context.Context, site string, job OffloadJob, wait time.Duration) (OffloadResult, error) {
	if wait <= 0 {
		return OffloadResult{}, fmt.Errorf("no time left to wait for site %s before the deadline", site)
	}
	octx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	res, err := s.cfg.Offload.Offload(octx, site, job)
	if err != nil && octx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("site %s did not answer within %s: %w", site, wait, err)
	}
	return res, err
}

// nextSite returns the allowed site not yet tried where r can still
// finish before its deadline, expected cleanest first, or "".
func (s *Scheduler) nextSite(r *record, tried map[string]bool) string {
	sites, _ := s.cfg.Offload.Sites()
	now := s.now()
	best, bestI := "", math.Inf(1)
	for _, rs := range sites {
		if tried[rs.Name] || !regionAllowed(r.Regions, rs.Region) || (rs.Apps != nil && !slices.Contains(rs.Apps, r.App)) {
			continue
		}
		start := now.Add(rs.Transfer)
		if start.Add(r.Runtime + rs.Transfer).After(r.Deadline) {
			continue
		}
		v := math.Inf(1)
		if rs.Forecast != nil {
			if m, ok := rs.Forecast.Mean(start, start.Add(r.Runtime)); ok {
				v = m
			}
		}
		if best == "" || v < bestI || (v == bestI && rs.Name < best) {
			best, bestI = rs.Name, v
		}
	}
	return best
}

// editPlan changes the stored plan of running job id with edit.
func (s *Scheduler) editPlan(id string, edit func(p *plan)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.jobs[id]
	if cur == nil || cur.Plan == nil {
		return
	}
	p := *cur.Plan
	edit(&p)
	cur.Plan = &p
	if err := s.persist(cur, nil); err != nil {
		s.log.Error("store job", "job", id, "err", err)
	}
}

// finishRemote stores the result of a job another site ran.
func (s *Scheduler) finishRemote(id, site string, res OffloadResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, id)
	r := s.jobs[id]
	if r == nil || r.State != StateRunning {
		return
	}
	now := s.now()
	r.State, r.Finished = StateDone, &now
	r.Result = &result{Status: res.Status, Header: res.Header, BodyBytes: len(res.Body), Grams: res.Grams, RunNowGrams: res.RunNowGrams, Site: site}
	if err := s.persist(r, map[string][]byte{blobResult: bytes.Clone(res.Body)}); err != nil {
		s.log.Error("store job result", "job", id, "err", err)
	}
	s.counts.offloaded.Add(1)
	s.log.Info("job done", "job", id, "app", r.App, "site", site, "status", res.Status)
}

// ErrOffloadBusy means this site has no capacity free for a job another
// site sent.
var ErrOffloadBusy = errors.New("no capacity for offloaded jobs")

// RunOffloaded runs a job another site sent through the app here,
// accounts it in this site's ledger (the time and place it ran, against
// the origin's run-now counterfactual), and returns the response. The
// caller has checked that this site runs the job's release. A job whose
// regions exclude this site's gives an error wrapping ErrRegion. It returns
// an error only when the job did not run; it waits for capacity until
// ctx is done.
func (s *Scheduler) RunOffloaded(ctx context.Context, job OffloadJob) (OffloadResult, error) {
	if !regionAllowed(job.Regions, s.cfg.Site.Region) {
		return OffloadResult{}, fmt.Errorf("job %s may run only in regions %s; site %s is in region %q: %w",
			job.ID, strings.Join(job.Regions, ", "), s.cfg.Site.Name, s.cfg.Site.Region, ErrRegion)
	}
	ctx, cancel := context.WithTimeout(ctx, job.Deadline.Sub(s.now()))
	defer cancel()
	if s.sem != nil {
		select {
		case s.sem <- struct{}{}:
			defer func() { <-s.sem }()
		case <-ctx.Done():
			return OffloadResult{}, fmt.Errorf("job %s: %w (capacity %d): %w", job.ID, ErrOffloadBusy, s.cfg.Site.Capacity, ctx.Err())
		}
	}
	r := &record{ID: job.ID, App: job.App, Route: job.Route, Method: job.Method, Target: job.Target, Host: job.Host,
		RemoteAddr: job.RemoteAddr, TLS: job.TLS, Header: job.Header}
	req, err := rebuild(ctx, r, job.Body)
	if err != nil {
		return OffloadResult{}, err
	}
	w := newRecorder()
	start := s.now()
	u, err := measure(func() error { return s.cfg.Run(job.App, job.Route, w, req) })
	u.start = start
	if err != nil {
		return OffloadResult{}, fmt.Errorf("job %s: %w", job.ID, err)
	}
	if ctx.Err() != nil {
		return OffloadResult{}, fmt.Errorf("job %s: deadline %s: %w", job.ID, job.Deadline.UTC().Format(time.RFC3339), ctx.Err())
	}
	res := OffloadResult{Status: w.status(), Header: w.header, Body: w.body.Bytes()}
	if s.cfg.Ledger != nil {
		runNow := job.RunNow
		if runNow != nil && math.IsNaN(*runNow) {
			runNow = nil
		}
		if rec := s.accountFor(job.App, runNow, u); rec != nil {
			g, rn := rec.Grams, rec.RunNowGrams
			res.Grams, res.RunNowGrams = &g, &rn
		}
	}
	return res, nil
}
