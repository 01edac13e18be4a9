package jobs

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// Run reads the forecast, then on every tick re-reads it when it is due,
// starts the jobs whose planned start has come and forgets finished jobs
// older than KeepResults. It returns nil when ctx is done, after the runs
// in progress have stopped; a run stopped that way is run again after a
// restart.
func (s *Scheduler) Run(ctx context.Context) error {
	ticks := s.cfg.Ticks
	if ticks == nil {
		t := time.NewTicker(s.cfg.Tick)
		defer t.Stop()
		ticks = t.C
	}
	defer s.wg.Wait()
	s.step(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
			s.step(ctx)
		}
	}
}

// step is one tick's work.
func (s *Scheduler) step(ctx context.Context) {
	now := s.now()
	s.mu.Lock()
	refresh := s.fetched.IsZero() || now.Sub(s.fetched) >= s.cfg.Refresh || now.Before(s.fetched)
	gc := now.Sub(s.lastGC) >= time.Hour
	s.mu.Unlock()
	if refresh {
		s.refresh(ctx, now)
	}
	if gc {
		s.gc(now)
	}
	s.syncRemote()
	s.createScheduled(now)
	s.startDue(ctx)
	s.syncQueue(ctx)
}

// refresh reads the current intensity and the forecast and, when the
// forecast changed, hands it to the planner, which re-plans every queued
// job.
func (s *Scheduler) refresh(ctx context.Context, now time.Time) {
	s.mu.Lock()
	s.fetched = now
	s.mu.Unlock()
	p, region := s.cfg.Intensity, s.cfg.Site.Region
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if cur, err := p.Current(ctx, region); err == nil {
		s.mu.Lock()
		s.current = &cur
		s.mu.Unlock()
	} else {
		s.log.Warn("no current intensity", "region", region, "err", err)
	}
	from := now.Truncate(s.cfg.Step)
	rs, err := p.Forecast(ctx, region, from, now.Add(s.cfg.Horizon))
	if err != nil {
		s.log.Warn("no forecast; keeping the previous one", "region", region, "err", err)
		return
	}
	c, err := carbon.Resample(rs, s.cfg.Step)
	if err != nil {
		s.log.Warn("unusable forecast; keeping the previous one", "region", region, "err", err)
		return
	}
	s.mu.Lock()
	same := sameReadings(s.readings, rs)
	if !same {
		s.curve, s.readings = c, rs
	}
	s.mu.Unlock()
	if same {
		return
	}
	if err := s.planner.SetForecast(s.cfg.Site.Name, c, rs[0].Source); err != nil {
		s.log.Error("set forecast", "err", err)
		return
	}
	s.replanned()
	s.log.Debug("forecast changed; jobs re-planned", "source", rs[0].Source, "readings", len(rs))
}

func sameReadings(a, b []carbon.Reading) bool {
	return slices.EqualFunc(a, b, func(x, y carbon.Reading) bool {
		return x.Start.Equal(y.Start) && x.Duration == y.Duration && x.GCO2PerKWh == y.GCO2PerKWh && x.Source == y.Source && x.Kind == y.Kind
	})
}

// replanned copies the planner's new choices into the records. The plans
// are not written to the store: they are derived, and load plans again.
func (s *Scheduler) replanned() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range s.jobs {
		if r.State != StateScheduled {
			continue
		}
		if a, ok := s.planner.Assignment(id); ok {
			s.setPlan(r, a)
		}
	}
}

// startDue starts every job whose planned start has come.
func (s *Scheduler) startDue(ctx context.Context) {
	due := s.planner.Due()
	if len(due) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, a := range due {
		r := s.jobs[a.JobID]
		if r == nil || r.State != StateScheduled {
			continue
		}
		s.setPlan(r, a)
		if a.Site == "" || (a.Site == s.cfg.Site.Name && !regionAllowed(r.Regions, s.cfg.Site.Region)) {
			// Never here in a region the app excludes.
			s.failLocked(r, fmt.Sprintf("no site in regions %s could take the job before its latest start; it may not run at %s (region %q)",
				strings.Join(r.Regions, ", "), s.cfg.Site.Name, s.cfg.Site.Region))
			continue
		}
		if !now.Before(r.Deadline) {
			r.State, r.Finished, r.Error = StateExpired, &now, "deadline passed before the job could start"
			s.counts.missed.Add(1)
			s.log.Warn("job expired before it could start", "job", r.ID, "app", r.App, "deadline", r.Deadline)
			if err := s.persist(r, nil); err != nil {
				s.log.Error("store job", "job", r.ID, "err", err)
			}
			continue
		}
		if now.Add(r.Runtime).After(r.Deadline) {
			r.Late = true
			s.counts.missed.Add(1)
		}
		r.State, r.Started = StateRunning, &now
		r.Attempts++
		if err := s.persist(r, nil); err != nil {
			// Not started: it stays queued in the store and runs after a
			// restart; here it is given up rather than run unrecorded.
			s.log.Error("store job; not starting it", "job", r.ID, "err", err)
			r.State = StateScheduled
			continue
		}
		runCtx, cancel := context.WithCancel(ctx)
		s.running[r.ID] = cancel
		snap := *r
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer cancel()
			if a.Site != s.cfg.Site.Name && s.cfg.Offload != nil {
				s.executeRemote(runCtx, &snap, a.Site)
				return
			}
			s.execute(runCtx, &snap)
		}()
	}
}

// execute runs one job and stores its outcome.
func (s *Scheduler) execute(ctx context.Context, r *record) {
	// The run is cut off at the deadline, waiting for capacity included:
	// the clock is injected, so the deadline becomes a real-time timeout.
	ctx, cancel := context.WithTimeout(ctx, r.Deadline.Sub(s.now()))
	defer cancel()
	if s.sem != nil {
		select {
		case s.sem <- struct{}{}:
			defer func() { <-s.sem }()
		case <-ctx.Done():
			s.interrupted(ctx, r.ID)
			return
		}
	}
	body, err := s.cfg.Store.JobBlob(r.ID, blobRequest)
	if err != nil {
		s.finish(r.ID, nil, nil, fmt.Errorf("read stored request: %w", err), usage{})
		return
	}
	req, err := rebuild(ctx, r, body)
	if err != nil {
		s.finish(r.ID, nil, nil, err, usage{})
		return
	}
	w := newRecorder()
	start := s.now()
	u, err := measure(func() error { return s.cfg.Run(r.App, r.Route, w, req) })
	u.start = start
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("deadline %s reached while running", r.Deadline.UTC().Format(time.RFC3339))
		} else {
			s.interrupted(ctx, r.ID)
			return
		}
	}
	s.finish(r.ID, w, r.RunNow, err, u)
}

// failLocked ends a job that could not run anywhere allowed, saying why.
// Called with mu held.
func (s *Scheduler) failLocked(r *record, reason string) {
	now := s.now()
	delete(s.running, r.ID)
	r.State, r.Finished, r.Error = StateFailed, &now, reason
	s.log.Warn("job failed", "job", r.ID, "app", r.App, "reason", reason)
	if err := s.persist(r, nil); err != nil {
		s.log.Error("store job", "job", r.ID, "err", err)
	}
}

// interrupted handles a run stopped before it finished: by its deadline
// while it waited for capacity (expired), by DELETE (already recorded as
// cancelled) or by shutdown, after which the store still says "running",
// so the job runs again after a restart.
func (s *Scheduler) interrupted(ctx context.Context, id string) {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.running, id)
		if r := s.jobs[id]; r != nil && r.State == StateRunning {
			now := s.now()
			r.State, r.Finished, r.Error = StateExpired, &now, "deadline passed while waiting for capacity"
			if err := s.persist(r, nil); err != nil {
				s.log.Error("store job", "job", id, "err", err)
			}
		}
		return
	}
	s.stopped(id)
}

// stopped forgets a run that ctx stopped: a DELETE has already recorded
// the job as cancelled, and after a shutdown the store still says
// "running", so the job runs again after a restart.
func (s *Scheduler) stopped(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, id)
}

// finish records a job's response (w), or the error that kept it from
// running, and accounts its energy.
func (s *Scheduler) finish(id string, w *recorder, runNow *float64, runErr error, u usage) {
	var rec *carbon.Record
	if w != nil && s.cfg.Ledger != nil {
		rec = s.account(id, runNow, u)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, id)
	r := s.jobs[id]
	if r == nil || r.State != StateRunning {
		return
	}
	now := s.now()
	r.State, r.Finished = StateDone, &now
	blobs := map[string][]byte{}
	if runErr != nil {
		r.Error = runErr.Error()
	}
	if w != nil {
		res := &result{Status: w.status(), Header: w.header, BodyBytes: w.body.Len()}
		if rec != nil {
			g, rn := rec.Grams, rec.RunNowGrams
			res.Grams, res.RunNowGrams = &g, &rn
		}
		r.Result = res
		blobs[blobResult] = bytes.Clone(w.body.Bytes())
	}
	if err := s.persist(r, blobs); err != nil {
		s.log.Error("store job result", "job", id, "err", err)
	}
	s.counts.run.Add(1)
	s.log.Info("job done", "job", id, "app", r.App, "status", w.status(), "late", r.Late, "err", runErr)
}

// account records a run in the ledger: the actual intensity is the
// region's current one (the time and place it ran), the counterfactual
// the forecast for running on acceptance.
func (s *Scheduler) account(id string, runNow *float64, u usage) *carbon.Record {
	s.mu.Lock()
	r := s.jobs[id]
	app := ""
	if r != nil {
		app = r.App
	}
	s.mu.Unlock()
	return s.accountFor(app, runNow, u)
}

// accountFor records a run of app in the ledger, as account does.
func (s *Scheduler) accountFor(app string, runNow *float64, u usage) *carbon.Record {
	s.mu.Lock()
	cur := s.current
	s.mu.Unlock()
	var actual carbon.Reading
	var err error
	if s.cfg.Intensity != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		actual, err = s.cfg.Intensity.Current(ctx, s.cfg.Site.Region)
		cancel()
	}
	if s.cfg.Intensity == nil || err != nil {
		if cur == nil {
			return nil // no intensity known: nothing honest to account
		}
		actual = *cur
	}
	cf := actual
	if runNow != nil && !math.IsNaN(*runNow) {
		cf.GCO2PerKWh = *runNow
	}
	rec := s.cfg.Ledger.Record(carbon.Usage{App: app, Site: s.cfg.Site.Name, Start: u.start, Duration: u.wall, CPUSeconds: u.cpu.Seconds()}, actual, cf)
	return &rec
}

// gc forgets finished jobs older than KeepResults.
func (s *Scheduler) gc(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastGC = now
	for id, r := range s.jobs {
		if r.terminal() && r.Finished != nil && now.Sub(*r.Finished) > s.cfg.KeepResults {
			if err := s.cfg.Store.DeleteJob(id); err != nil {
				s.log.Warn("forget finished job", "job", id, "err", err)
				continue
			}
			delete(s.jobs, id)
		}
	}
}

// rebuild turns a stored request back into an http.Request.
func rebuild(ctx context.Context, r *record, body []byte) (*http.Request, error) {
	scheme := "http"
	if r.TLS {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, scheme+"://"+r.Host+r.Target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("rebuild request %s %s: %w", r.Method, r.Target, err)
	}
	req.Header = r.Header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Host, req.RemoteAddr, req.RequestURI = r.Host, r.RemoteAddr, r.Target
	req.ContentLength = int64(len(body))
	if r.TLS {
		req.TLS = &tls.ConnectionState{}
	}
	return req, nil
}
