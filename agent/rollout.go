package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	gosync "sync"
	"time"

	"github.com/tern-edge/tern/artifact"
	ternsync "github.com/tern-edge/tern/sync"
)

// rolloutMinRequests is how many requests an agent must have served on a
// new version before its error rate can fail a wave: one early 500 should
// not abort a rollout.
const rolloutMinRequests = 10

// rolloutTick is how often the hub looks at active rollouts.
const rolloutTick = time.Second

// rolloutController advances staged rollouts from the fleet's heartbeats.
// It runs wherever a hub runs; with a clustered hub several run at once,
// and every write is a compare-and-set, so exactly one of them makes each
// step.
type rolloutController struct {
	c      *ternsync.Client
	logger *slog.Logger
	now    func() time.Time
	m      *rolloutMetrics // nil: not counted
}

func (rc *rolloutController) Run(ctx context.Context) error {
	// Which apps have an active rollout comes from one long-lived watch,
	// not from listing the bucket every tick: a listing is a new consumer
	// and reply subscription, and the hub announces every subscription to
	// every leaf node, so listing once a second cost each of N agents a
	// stream of subscription updates, forever, rollout or not.
	var (
		mu     gosync.Mutex
		active = map[string]bool{}
	)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ctx.Err() == nil {
			err := rc.c.WatchRollouts(ctx, func(r ternsync.Rollout, _ uint64) {
				mu.Lock()
				active[r.App] = r.State == ternsync.RolloutActive
				mu.Unlock()
			})
			if ctx.Err() != nil {
				return
			}
			rc.logger.Debug("rollout watch ended; starting again", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(rolloutTick):
			}
		}
	}()
	defer func() { <-watched }()
	t := time.NewTicker(rolloutTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			var apps []string
			mu.Lock()
			for app, on := range active {
				if on {
					apps = append(apps, app)
				}
			}
			mu.Unlock()
			if err := rc.step(ctx, apps); err != nil && ctx.Err() == nil {
				rc.logger.Debug("rollout step", "err", err)
			}
		}
	}
}

// step advances the rollouts of apps, each read afresh (the watch may
// not have delivered this node's own last write yet, and the writes are
// compare-and-set on the revision read), from the fleet's latest
// heartbeats.
func (rc *rolloutController) step(ctx context.Context, apps []string) error {
	var fleet []ternsync.Heartbeat
	for _, app := range apps {
		r, rev, err := rc.c.Rollout(ctx, app)
		if err != nil {
			return err
		}
		if r.State != ternsync.RolloutActive {
			continue
		}
		if fleet == nil {
			if fleet, err = rc.c.Fleet(ctx); err != nil {
				return err
			}
		}
		if err := rc.advance(ctx, r, rev, fleet); err != nil {
			rc.logger.Warn("rollout not advanced", "app", app, "err", err)
		}
	}
	return nil
}

// advance moves one rollout on: to the next wave once the current one has
// converged and stayed healthy for the rollout's wait, to done after the
// last, or to failed, publishing the abort release, when a wave's agents
// refuse the release, answer too many errors, or do not converge in time.
func (rc *rolloutController) advance(ctx context.Context, r ternsync.Rollout, rev uint64, fleet []ternsync.Heartbeat) error {
	rel, err := artifact.Peek(r.Release)
	if err != nil {
		return rc.finish(ctx, r, rev, r.Abort, ternsync.RolloutFailed, fmt.Sprintf("unreadable release: %v", err))
	}
	now := rc.now()
	converged := true
	for _, hb := range fleet {
		if !r.Reaches(hb.Site, hb.Labels) {
			continue
		}
		if hb.Stale(now) {
			// Silence is not health: a wave waits for its agents (up to
			// its timeout) rather than pass without them.
			converged = false
			continue
		}
		for _, ref := range hb.Refusals {
			if ref.App == r.App && ref.Sequence == rel.Sequence {
				return rc.finish(ctx, r, rev, r.Abort, ternsync.RolloutFailed,
					fmt.Sprintf("wave %d: agent %s (site %s) refused the release: %s", r.Wave+1, hb.Agent, hb.Site, ref.Reason))
			}
		}
		var st *ternsync.AppState
		for i := range hb.Apps {
			if hb.Apps[i].App == r.App {
				st = &hb.Apps[i]
			}
		}
		if st == nil || st.Sequence != rel.Sequence || hb.Time.Before(r.WaveStart) {
			converged = false
			continue
		}
		if st.Requests >= rolloutMinRequests && float64(st.Errors)/float64(st.Requests) > r.MaxErrorRate {
			return rc.finish(ctx, r, rev, r.Abort, ternsync.RolloutFailed,
				fmt.Sprintf("wave %d: agent %s (site %s) answered %d errors in %d requests, above the %.1f%% limit",
					r.Wave+1, hb.Agent, hb.Site, st.Errors, st.Requests, 100*r.MaxErrorRate))
		}
	}
	switch {
	case !converged && now.Sub(r.WaveStart) > r.Timeout:
		return rc.finish(ctx, r, rev, r.Abort, ternsync.RolloutFailed,
			fmt.Sprintf("wave %d did not converge within %s", r.Wave+1, r.Timeout))
	case !converged:
		return nil
	case r.Converged.IsZero():
		// Healthy from now on: the wave's wait starts.
		r.Converged = now.UTC()
		return rc.c.UpdateRollout(ctx, r, rev)
	case now.Sub(r.Converged) < r.Wait:
		return nil
	case r.Wave == len(r.Waves)-1:
		return rc.finish(ctx, r, rev, r.Release, ternsync.RolloutDone, "")
	}
	r.Wave++
	r.WaveStart, r.Converged = now.UTC(), time.Time{}
	rc.m.wave()
	rc.logger.Info("rollout wave started", "app", r.App, "wave", r.Wave+1, "of", len(r.Waves))
	return rc.c.UpdateRollout(ctx, r, rev)
}

// finish publishes env as the app's current release, then closes the
// rollout: in that order, agents never see the rollout closed while the
// app's current release is still the old one.
func (rc *rolloutController) finish(ctx context.Context, r ternsync.Rollout, rev uint64, env []byte, state, reason string) error {
	_, cur, err := rc.c.Release(ctx, r.App)
	if err != nil && !errors.Is(err, ternsync.ErrNotFound) {
		return err
	}
	if err := rc.c.PutRelease(ctx, r.App, env, cur); err != nil {
		return err
	}
	r.State, r.Reason = state, reason
	if err := rc.c.UpdateRollout(ctx, r, rev); err != nil {
		return err
	}
	if state == ternsync.RolloutFailed {
		rc.m.finish("failed")
		rc.logger.Warn("rollout failed; the fleet returns to the previous version", "app", r.App, "reason", reason)
	} else {
		rc.m.finish("done")
		rc.logger.Info("rollout done", "app", r.App, "waves", len(r.Waves))
	}
	return nil
}
