package jobs

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Queue keeps a second durable copy of every unfinished job off this
// machine: the agent implements it with the hub's work-queue stream. A
// job is put before its request is answered 202 (when the hub is
// reachable) and removed once it ends. Methods are safe for concurrent
// use and return when ctx is done.
type Queue interface {
	// Put stores job and returns a reference to it (never 0).
	Put(ctx context.Context, job QueuedJob) (uint64, error)
	// Done removes job id's copy at ref; one already gone is not an
	// error.
	Done(ctx context.Context, id string, ref uint64) error
}

// QueuedJob is a job as the Queue keeps it: what another agent of the
// site needs to run it.
type QueuedJob struct {
	ID, App, Route                   string
	Method, Target, Host, RemoteAddr string
	TLS                              bool
	Header                           http.Header
	Body                             []byte
	Accepted, Deadline               time.Time
	Runtime                          time.Duration
	Regions                          []string
	RunNow                           *float64
	Schedule                         string
	Occurrence                       *time.Time
}

// queueTimeout bounds one Put or Done: an accepted request waits for it.
const queueTimeout = 2 * time.Second

func (r *record) queued(body []byte) QueuedJob {
	return QueuedJob{ID: r.ID, App: r.App, Route: r.Route, Method: r.Method, Target: r.Target, Host: r.Host, RemoteAddr: r.RemoteAddr,
		TLS: r.TLS, Header: r.Header, Body: body, Accepted: r.Accepted, Deadline: r.Deadline, Runtime: r.Runtime, Regions: r.Regions,
		RunNow: r.RunNow, Schedule: r.Schedule, Occurrence: r.Occurrence}
}

// putQueued puts job id's copy in the Queue and records its reference.
// A failure leaves the reference 0, so syncQueue tries again.
func (s *Scheduler) putQueued(ctx context.Context, id string, body []byte) error {
	s.mu.Lock()
	r := s.jobs[id]
	if r == nil || r.QueueRef != 0 || r.terminal() {
		s.mu.Unlock()
		return nil
	}
	job := r.queued(body)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, queueTimeout)
	ref, err := s.cfg.Queue.Put(ctx, job)
	cancel()
	if err != nil {
		return fmt.Errorf("queue job %s: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A job that ended meanwhile keeps the reference too: syncQueue
	// removes its copy.
	r.QueueRef = ref
	return s.persist(r, nil)
}

// syncQueue puts the copies of unfinished jobs that have none (accepted
// while the hub was unreachable) and removes those of ended jobs. It stops
// at the first failure: the hub is likely unreachable, and the next tick
// tries again.
func (s *Scheduler) syncQueue(ctx context.Context) {
	if s.cfg.Queue == nil {
		return
	}
	var put, done []string
	s.mu.Lock()
	for id, r := range s.jobs {
		switch {
		case r.terminal() && r.QueueRef != 0:
			done = append(done, id)
		case !r.terminal() && r.QueueRef == 0:
			put = append(put, id)
		}
	}
	s.mu.Unlock()
	for _, id := range done {
		s.mu.Lock()
		r := s.jobs[id]
		ref := r.QueueRef
		s.mu.Unlock()
		dctx, cancel := context.WithTimeout(ctx, queueTimeout)
		err := s.cfg.Queue.Done(dctx, id, ref)
		cancel()
		if err != nil {
			s.log.Debug("hub copy of an ended job not removed; trying again later", "job", id, "err", err)
			return
		}
		s.mu.Lock()
		r.QueueRef = 0
		if err := s.persist(r, nil); err != nil {
			s.log.Error("store job", "job", id, "err", err)
		}
		s.mu.Unlock()
	}
	for _, id := range put {
		body, err := s.cfg.Store.JobBlob(id, blobRequest)
		if err != nil {
			s.log.Error("read stored request", "job", id, "err", err)
			continue
		}
		if err := s.putQueued(ctx, id, body); err != nil {
			s.log.Debug("hub copy of a job not stored; trying again later", "job", id, "err", err)
			return
		}
		s.log.Info("job copied to the hub", "job", id)
	}
}

// Adopt takes over a job another agent of this site accepted and can no
// longer run (its copy in the Queue, at ref, was found with no live
// owner): the job is stored, planned and run here like one accepted
// here. It reports false when the job is already here.
func (s *Scheduler) Adopt(job QueuedJob, ref uint64) (bool, error) {
	if !validID(job.ID) {
		return false, fmt.Errorf("adopt job %q: invalid id", job.ID)
	}
	if job.Runtime <= 0 || job.Deadline.IsZero() {
		return false, fmt.Errorf("adopt job %s: runtime %s and deadline %s: %w", job.ID, job.Runtime, job.Deadline, ErrDeadline)
	}
	r := &record{
		ID: job.ID, App: job.App, Route: job.Route,
		Method: job.Method, Target: job.Target, Host: job.Host, RemoteAddr: job.RemoteAddr, TLS: job.TLS,
		Header: job.Header, BodyBytes: int64(len(job.Body)),
		Accepted: job.Accepted, Deadline: job.Deadline, Runtime: job.Runtime, Regions: job.Regions, RunNow: job.RunNow,
		State: StateScheduled, Schedule: job.Schedule, Occurrence: job.Occurrence, QueueRef: ref,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jobs[job.ID]; ok {
		return false, nil
	}
	if err := s.persist(r, map[string][]byte{blobRequest: job.Body}); err != nil {
		return false, err
	}
	s.jobs[r.ID] = r
	if err := s.queue(r); err != nil {
		return true, err
	}
	s.log.Info("adopted a job of another agent of this site", "job", r.ID, "app", r.App, "deadline", r.Deadline)
	return true, nil
}
