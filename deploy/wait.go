package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/tern-edge/tern/artifact"
	ternsync "github.com/tern-edge/tern/sync"
)

// What an agent did with a release, as its heartbeats tell.
const (
	// Serving: the agent serves the release, or a later one of the app.
	Serving = "serving"
	// Refused: the agent refused the release and serves what it had.
	Refused = "refused"
	// NotReporting: the agent's heartbeats stopped (it is offline or shut
	// down), or it did not report the release before the wait ended.
	NotReporting = "not reporting"
	// Pending: the agent is live and has not reported the release yet.
	Pending = "pending"
)

// Report is what one agent did with a release.
type Report struct {
	Agent string `json:"agent"`
	Site  string `json:"site"`
	// State is Serving, Refused, NotReporting or Pending.
	State string `json:"state"`
	// Version and Sequence are of the release the agent serves, for
	// Serving (a later deploy may have overtaken the awaited one).
	Version  string `json:"version,omitempty"`
	Sequence uint64 `json:"sequence,omitempty"`
	// Reason and Error are the agent's, for Refused.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	// After is how long after the wait began the state was seen; 0 for an
	// agent that was not reporting from the start.
	After time.Duration `json:"after_ns"`
	// TimedOut marks a live agent that had not reported the release when
	// the wait ran out (State NotReporting).
	TimedOut bool `json:"timed_out,omitempty"`
}

// Observe is what hb says of app's release seq at now: NotReporting when
// the agent is not live (what it last said it ran may be gone), Serving
// when it runs seq or later, Refused when it refused seq, Pending
// otherwise.
func Observe(hb ternsync.Heartbeat, app string, seq uint64, now time.Time) Report {
	r := Report{Agent: hb.Agent, Site: hb.Site, State: Pending}
	if !hb.Live(now) {
		r.State = NotReporting
		return r
	}
	for _, a := range hb.Apps {
		if a.App == app && a.Sequence >= seq {
			r.State, r.Version, r.Sequence = Serving, a.Version, a.Sequence
			return r
		}
	}
	for _, f := range hb.Refusals {
		if f.App == app && f.Sequence == seq {
			r.State, r.Reason, r.Error = Refused, f.Reason, f.Error
			return r
		}
	}
	return r
}

// WaitOptions says which release to wait for and on which agents.
type WaitOptions struct {
	App      string
	Sequence uint64
	// Targets selects the agents the release is for by site and labels;
	// nil means every agent.
	Targets func(site string, labels map[string]string) bool
	// Timeout bounds the wait; 0 means DefaultWaitSlack plus two heartbeat
	// intervals of the slowest-reporting live target.
	Timeout time.Duration
	// Report, when set, is called with each agent's final report as it is
	// known, from the goroutine that called Wait.
	Report func(Report)
}

// DefaultWaitSlack is the part of Wait's default timeout that does not
// depend on heartbeat intervals: time for a live agent to fetch and
// compile a module.
const DefaultWaitSlack = 10 * time.Second

// ErrWaitTimeout reports that some live agent had not reported the
// release when the wait ended.
var ErrWaitTimeout = errors.New("timed out waiting for agents")

// Wait follows the fleet's heartbeats until every live agent that the
// release targets serves or refuses it, and returns one report per agent,
// ordered by site and agent. Agents whose heartbeats are stale or marked
// stopped are NotReporting and not waited for; a live agent that stops
// reporting during the wait becomes NotReporting too. When the timeout
// passes first, the agents still pending are NotReporting with TimedOut
// set and the error wraps [ErrWaitTimeout]. No agent having ever
// reported is no reports and no error.
//
// Wait reads the heartbeats agents send anyway, through one watch on the
// fleet bucket: the cost is one consumer per waiting publisher, whatever
// the fleet's size, and nothing on the agents.
func Wait(ctx context.Context, c *ternsync.Client, opts WaitOptions) ([]Report, error) {
	start := time.Now()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	beats := make(chan ternsync.Heartbeat, 64)
	caught := make(chan struct{})
	failed := make(chan error, 1)
	go func() {
		failed <- c.WatchFleet(wctx, func(hb ternsync.Heartbeat) {
			select {
			case beats <- hb:
			case <-wctx.Done():
			}
		}, func() {
			select {
			case <-caught:
			default:
				close(caught)
			}
		})
	}()
	latest := map[string]ternsync.Heartbeat{}
	final := map[string]Report{}
	settled := false
	var deadline time.Time
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	targeted := func(hb ternsync.Heartbeat) bool {
		return opts.Targets == nil || opts.Targets(hb.Site, hb.Labels)
	}
	// settle records the agents whose state is final.
	settle := func(now time.Time) {
		for id, hb := range latest {
			if _, done := final[id]; done || !targeted(hb) {
				continue
			}
			r := Observe(hb, opts.App, opts.Sequence, now)
			if r.State == Pending {
				continue
			}
			if r.State != NotReporting || settled {
				r.After = now.Sub(start)
			}
			final[id] = r
			if opts.Report != nil {
				opts.Report(r)
			}
		}
	}
	pending := func() int {
		n := 0
		for id, hb := range latest {
			if _, done := final[id]; !done && targeted(hb) {
				n++
			}
		}
		return n
	}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for %s@%d: %w", opts.App, opts.Sequence, ctx.Err())
		case err := <-failed:
			if errors.Is(err, ternsync.ErrNotFound) {
				return nil, nil
			}
			return nil, fmt.Errorf("wait for %s@%d: %w", opts.App, opts.Sequence, err)
		case hb := <-beats:
			latest[hb.Agent] = hb
			if !settled {
				continue
			}
		case <-caught:
			caught = nil
			// The heartbeats replayed before the watch caught up may
			// still sit in the channel: take them first.
			for drained := false; !drained; {
				select {
				case hb := <-beats:
					latest[hb.Agent] = hb
				default:
					drained = true
				}
			}
			now := time.Now()
			deadline = start.Add(opts.Timeout)
			if opts.Timeout <= 0 {
				slowest := time.Duration(0)
				for _, hb := range latest {
					if hb.Live(now) && targeted(hb) {
						slowest = max(slowest, hb.Interval)
					}
				}
				deadline = start.Add(DefaultWaitSlack + 2*slowest)
			}
			settle(now)
			settled = true
		case now := <-tick.C:
			if !settled {
				continue
			}
			if now.After(deadline) {
				for id, hb := range latest {
					if _, done := final[id]; done || !targeted(hb) {
						continue
					}
					r := Report{Agent: hb.Agent, Site: hb.Site, State: NotReporting, After: now.Sub(start), TimedOut: true}
					final[id] = r
					if opts.Report != nil {
						opts.Report(r)
					}
				}
				return sorted(final), fmt.Errorf("wait for %s@%d: %w after %s", opts.App, opts.Sequence, ErrWaitTimeout, now.Sub(start).Round(time.Millisecond))
			}
		}
		settle(time.Now())
		if pending() == 0 {
			return sorted(final), nil
		}
	}
}

func sorted(m map[string]Report) []Report {
	out := make([]Report, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Site != out[j].Site {
			return out[i].Site < out[j].Site
		}
		return out[i].Agent < out[j].Agent
	})
	return out
}

// FollowRollout follows app's staged rollout of release seq until it is
// done or failed, calling report each time it enters another wave or
// state, and returns its last state. ctx bounds the wait.
func FollowRollout(ctx context.Context, c *ternsync.Client, app string, seq uint64, report func(ternsync.Rollout)) (ternsync.Rollout, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	updates := make(chan ternsync.Rollout, 16)
	failed := make(chan error, 1)
	go func() {
		failed <- c.WatchRollouts(wctx, func(r ternsync.Rollout, _ uint64) {
			if r.App != app {
				return
			}
			select {
			case updates <- r:
			case <-wctx.Done():
			}
		})
	}()
	var last ternsync.Rollout
	seen := false
	for {
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("follow rollout of %s@%d: %w", app, seq, ctx.Err())
		case err := <-failed:
			if ctx.Err() != nil {
				return last, fmt.Errorf("follow rollout of %s@%d: %w", app, seq, ctx.Err())
			}
			return last, fmt.Errorf("follow rollout of %s@%d: %w", app, seq, err)
		case r := <-updates:
			if rel, err := artifact.Peek(r.Release); err != nil || rel.Sequence != seq {
				continue // an earlier rollout of the app
			}
			if !seen || r.Wave != last.Wave || r.State != last.State || !r.Converged.Equal(last.Converged) {
				seen = true
				last = r
				if report != nil {
					report(r)
				}
			}
			if r.State != ternsync.RolloutActive {
				return r, nil
			}
		}
	}
}
