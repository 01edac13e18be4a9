package jobs

import (
	"sync/atomic"
	"time"
)

// Counts are running totals of what the scheduler did with jobs since it
// started, for the agent's metrics.
type Counts struct {
	// Queued counts jobs accepted (submitted, or made by a schedule);
	// Deferred those of them planned to start later than at once.
	Queued, Deferred int64
	// Run counts jobs this site ran to the end, Offloaded those another
	// site ran for it.
	Run, Offloaded int64
	// DeadlineMisses counts jobs that expired before they could start or
	// started too late to finish by their deadline.
	DeadlineMisses int64
}

type counters struct {
	queued, deferred, run, offloaded, missed atomic.Int64
}

// Counts returns the scheduler's totals.
func (s *Scheduler) Counts() Counts {
	c := &s.counts
	return Counts{Queued: c.queued.Load(), Deferred: c.deferred.Load(), Run: c.run.Load(),
		Offloaded: c.offloaded.Load(), DeadlineMisses: c.missed.Load()}
}

// counted counts an accepted job planned to start at start.
func (s *Scheduler) counted(start, now time.Time) {
	s.counts.queued.Add(1)
	if start.After(now) {
		s.counts.deferred.Add(1)
	}
}
