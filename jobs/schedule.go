package jobs

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tern-edge/tern/internal/cron"
	"github.com/tern-edge/tern/store"
)

// Scheduled is one recurring request of an app: at every time Cron names
// it becomes a job with the deadline occurrence + Window, planned like
// any deferred request.
type Scheduled struct {
	// Spec is the app's deferrable spec (app, route, runtime, regions).
	Spec Spec
	// Key identifies the schedule across restarts; a changed schedule
	// should get a new key, so that it starts afresh.
	Key    string
	Cron   cron.Schedule
	Window time.Duration
	// The request made at each occurrence.
	Method, Target, Host string
	Header               http.Header
	Body                 []byte
}

// markPrefix names a schedule's mark in the store: the last occurrence
// handled, as RFC 3339.
const markPrefix = "schedule/"

// createScheduled creates a job for every occurrence of every schedule
// since the last one handled, up to now, whose window has not passed.
// The job and the record that its occurrence was handled are stored in
// one transaction, so each occurrence becomes a job exactly once across
// crashes and restarts. A schedule seen for the first time starts from
// now: occurrences before it was installed are not made up.
func (s *Scheduler) createScheduled(now time.Time) {
	if s.cfg.Schedules == nil {
		return
	}
	lead, covered := true, time.Time{}
	if s.cfg.Leader != nil {
		lead, covered = s.cfg.Leader()
	}
	for _, sc := range s.cfg.Schedules() {
		if err := s.createFor(sc, now, lead, covered); err != nil {
			s.log.Error("scheduled job not created", "app", sc.Spec.App, "schedule", sc.Key, "err", err)
		}
	}
}

func (s *Scheduler) createFor(sc Scheduled, now time.Time, lead bool, covered time.Time) error {
	mark := markPrefix + sc.Key
	b, err := s.cfg.Store.JobMark(mark)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err != nil {
		s.log.Info("schedule installed", "app", sc.Spec.App, "cron", sc.Cron.String(), "next", sc.Cron.Next(now))
		return s.cfg.Store.PutJobMark("", nil, nil, mark, []byte(now.UTC().Format(time.RFC3339Nano)))
	}
	last, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return fmt.Errorf("schedule %s: stored mark %q: %w", sc.Key, b, err)
	}
	for t := sc.Cron.Next(last); !t.IsZero() && !t.After(now); t = sc.Cron.Next(t) {
		stamp := []byte(t.UTC().Format(time.RFC3339Nano))
		switch {
		case !lead && t.After(covered):
			// Another agent of this site makes the site's occurrences;
			// this one follows only as far as that agent has shown it was
			// alive, and would take over from there.
			return nil
		case !lead:
			if err := s.cfg.Store.PutJobMark("", nil, nil, mark, stamp); err != nil {
				return err
			}
		case !now.Before(t.Add(sc.Window)):
			s.log.Warn("scheduled occurrence missed: its window passed while the agent was down", "app", sc.Spec.App, "occurrence", t, "window", sc.Window)
			if err := s.cfg.Store.PutJobMark("", nil, nil, mark, stamp); err != nil {
				return err
			}
		default:
			if err := s.createOccurrence(sc, t, now, mark, stamp); err != nil {
				return err
			}
		}
	}
	return nil
}

// createOccurrence stores and plans the job of one occurrence at t.
func (s *Scheduler) createOccurrence(sc Scheduled, t, now time.Time, mark string, stamp []byte) error {
	occ := t
	r := &record{
		ID: newID(), App: sc.Spec.App, Route: sc.Spec.Route,
		Method: sc.Method, Target: sc.Target, Host: sc.Host, Header: sc.Header.Clone(), BodyBytes: int64(len(sc.Body)),
		Accepted: now, Deadline: t.Add(sc.Window), Runtime: sc.Spec.Runtime, Regions: sc.Spec.Regions,
		State: StateScheduled, Schedule: sc.Key, Occurrence: &occ,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.curve != nil {
		if v, ok := s.curve.Mean(now, now.Add(r.Runtime)); ok {
			r.RunNow, r.RunNowSource = &v, s.readings[0].Source
		}
	}
	rec, err := encode(r)
	if err != nil {
		return err
	}
	if err := s.cfg.Store.PutJobMark(r.ID, rec, map[string][]byte{blobRequest: sc.Body}, mark, stamp); err != nil {
		return err
	}
	s.jobs[r.ID] = r
	a, err := s.planner.Submit(s.plannerJob(r))
	if err != nil {
		// Stored, so load plans it again after a restart; here it is
		// failed rather than kept unplanned.
		s.failLocked(r, fmt.Sprintf("plan: %v", err))
		return nil
	}
	s.setPlan(r, a)
	if err := s.persist(r, nil); err != nil {
		s.log.Warn("store job plan", "job", r.ID, "err", err)
	}
	s.counted(a.Start, s.now())
	s.log.Info("scheduled job created", "job", r.ID, "app", r.App, "occurrence", t, "start", a.Start, "deadline", r.Deadline, "reason", a.Reason)
	return nil
}
