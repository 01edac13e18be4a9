package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tern-edge/tern/jobs"
	ternsync "github.com/tern-edge/tern/sync"
)

// hubQueue keeps the copies of this agent's unfinished jobs in the hub's
// work-queue stream, under the site's subject, owned by this agent.
type hubQueue struct{ a *Agent }

var _ jobs.Queue = hubQueue{}

var errNoHub = errors.New("no hub connection")

// Put implements jobs.Queue.
func (q hubQueue) Put(ctx context.Context, job jobs.QueuedJob) (uint64, error) {
	c := q.a.client
	if c == nil {
		return 0, errNoHub
	}
	return c.QueueJob(ctx, ternsync.QueuedJob{
		ID: job.ID, Site: q.a.site, Owner: q.a.id, App: job.App, Route: job.Route,
		Method: job.Method, Target: job.Target, Host: job.Host, RemoteAddr: job.RemoteAddr, TLS: job.TLS, Header: job.Header, Body: job.Body,
		Accepted: job.Accepted, Deadline: job.Deadline, Runtime: job.Runtime, Regions: job.Regions, RunNow: job.RunNow,
		Schedule: job.Schedule, Occurrence: job.Occurrence,
	})
}

// Done implements jobs.Queue.
func (q hubQueue) Done(ctx context.Context, id string, ref uint64) error {
	c := q.a.client
	if c == nil {
		return errNoHub
	}
	return c.DoneJob(ctx, q.a.site, id, ref)
}

// jobQueue returns the hub queue, or nil when the site's name cannot be
// a subject (such a site keeps its jobs in badger only).
func (a *Agent) jobQueue() jobs.Queue {
	if _, err := ternsync.QueueSubject(a.site); err != nil {
		a.logger.Warn("deferred jobs are kept on this machine only", "err", err)
		return nil
	}
	return hubQueue{a}
}

// adoptOrphans takes over the site's jobs on the hub whose owner is gone:
// an agent of this site whose heartbeat is stale or absent (it stopped,
// or lost its disk and came back under a new id), for a job stored at
// least three heartbeat intervals ago, so that an agent that has just
// started is not robbed. The queue is read on the first pass and then
// only while some agent of the site has a stale heartbeat. Each is stored again under this agent, adopted
// by the scheduler, and its old copy removed; a copy of a job this agent
// already holds is only removed.
func (v *fleetView) adoptOrphans(ctx context.Context, iv time.Duration) {
	a := v.a
	if a.jobs == nil || a.client == nil {
		return
	}
	v.mu.Lock()
	peers, first := v.peers, !v.scanned
	v.mu.Unlock()
	now := time.Now()
	alive := map[string]bool{a.id: true}
	departed := false
	for _, hb := range peers {
		if hb.Stale(now) {
			departed = true
		} else {
			alive[hb.Agent] = true
		}
	}
	// The hub keeps heartbeats for a day, so a departed agent shows as a
	// stale one; with none, and after the first pass, there is nothing
	// to adopt and the queue is not read.
	if !departed && !first {
		return
	}
	type orphan struct {
		seq uint64
		job ternsync.QueuedJob
	}
	var orphans []orphan
	err := a.client.QueuedJobs(ctx, a.site, func(seq uint64, stored time.Time, job ternsync.QueuedJob) error {
		if job.Owner == a.id {
			if _, err := a.jobs.Get(job.ID); err == nil {
				return nil // this agent's own, held here
			}
		} else if alive[job.Owner] || now.Sub(stored) < 3*iv {
			return nil
		}
		orphans = append(orphans, orphan{seq, job})
		return nil
	})
	if err != nil {
		v.logger.Debug("jobs on the hub not read", "err", err)
		return
	}
	v.mu.Lock()
	v.scanned = true
	v.mu.Unlock()
	for _, o := range orphans {
		if err := v.adopt(ctx, o.seq, o.job); err != nil {
			v.logger.Warn("job of a departed agent not adopted", "job", o.job.ID, "owner", o.job.Owner, "err", err)
		}
	}
}

func (v *fleetView) adopt(ctx context.Context, seq uint64, job ternsync.QueuedJob) error {
	a := v.a
	if _, err := a.jobs.Get(job.ID); err == nil {
		return a.client.DoneJob(ctx, a.site, job.ID, seq)
	}
	qj := jobs.QueuedJob{ID: job.ID, App: job.App, Route: job.Route, Method: job.Method, Target: job.Target, Host: job.Host,
		RemoteAddr: job.RemoteAddr, TLS: job.TLS, Header: job.Header, Body: job.Body, Accepted: job.Accepted, Deadline: job.Deadline,
		Runtime: job.Runtime, Regions: job.Regions, RunNow: job.RunNow, Schedule: job.Schedule, Occurrence: job.Occurrence}
	// The new copy first: a crash between the steps leaves two copies,
	// and the old one is removed on the next pass.
	ref, err := hubQueue{a}.Put(ctx, qj)
	if err != nil {
		return fmt.Errorf("store under this agent: %w", err)
	}
	if _, err := a.jobs.Adopt(qj, ref); err != nil {
		return err
	}
	v.logger.Info("adopted a job of a departed agent of this site", "job", job.ID, "owner", job.Owner, "app", job.App)
	return a.client.DoneJob(ctx, a.site, job.ID, seq)
}
