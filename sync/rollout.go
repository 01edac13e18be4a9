package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// RolloutsBucket is the KV bucket of staged rollouts, keyed by app.
const RolloutsBucket = "tern-rollouts"

// Rollout states.
const (
	RolloutActive = "active"
	RolloutDone   = "done"
	RolloutFailed = "failed"
)

// Rollout is a staged deploy: a release that reaches the fleet wave by
// wave, each wave only once the ones before it are healthy. Both releases
// it carries are signed by the publisher up front, so whoever advances the
// rollout (the hub) needs no signing key: it only chooses which signed
// release each agent should run.
type Rollout struct {
	App string `json:"app"`
	// Release is the new release (sequence N+1).
	Release []byte `json:"release"`
	// Abort returns the fleet to the release before (sequence N+2, the
	// earlier module); the hub publishes it if a wave fails.
	Abort []byte `json:"abort"`
	// Waves are selectors, applied cumulatively: wave i reaches every agent
	// matching any of waves 0..i.
	Waves []Selector `json:"waves"`
	// Wait is how long a wave must stay healthy before the next starts.
	Wait time.Duration `json:"wait"`
	// MaxErrorRate is the share of 5xx answers above which a wave fails.
	MaxErrorRate float64 `json:"max_error_rate"`
	// Timeout bounds how long a wave may take to converge.
	Timeout time.Duration `json:"timeout"`

	State     string    `json:"state"`
	Wave      int       `json:"wave"`
	WaveStart time.Time `json:"wave_start"`
	// Converged is when every agent of the current wave first reported
	// the release; the wave's Wait counts from then.
	Converged time.Time `json:"converged,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Updated   time.Time `json:"updated"`
}

// Selector picks agents: every term must match. Terms are "site=NAME",
// "LABEL=VALUE", "N%" (a stable N percent of sites) or "*".
type Selector []string

// ParseWaves parses a rollout plan such as "site=fra1; region=eu; 50%; *".
func ParseWaves(plan string) ([]Selector, error) {
	var waves []Selector
	for _, w := range strings.Split(plan, ";") {
		w = strings.TrimSpace(w)
		if w == "" {
			return nil, fmt.Errorf("rollout plan %q: empty wave", plan)
		}
		var sel Selector
		for _, term := range strings.Split(w, ",") {
			term = strings.TrimSpace(term)
			switch {
			case term == "*":
			case strings.HasSuffix(term, "%"):
				n, err := strconv.Atoi(strings.TrimSuffix(term, "%"))
				if err != nil || n < 0 || n > 100 {
					return nil, fmt.Errorf("rollout plan: %q is not a percentage from 0%% to 100%%", term)
				}
			case strings.Count(term, "=") == 1 && !strings.HasPrefix(term, "=") && !strings.HasSuffix(term, "="):
			default:
				return nil, fmt.Errorf("rollout plan: %q is not site=NAME, LABEL=VALUE, N%% or *", term)
			}
			sel = append(sel, term)
		}
		waves = append(waves, sel)
	}
	return waves, nil
}

// Matches reports whether an agent of site with labels is selected.
func (s Selector) Matches(site string, labels map[string]string) bool {
	for _, term := range s {
		switch {
		case term == "*":
		case strings.HasSuffix(term, "%"):
			n, _ := strconv.Atoi(strings.TrimSuffix(term, "%"))
			h := fnv.New32a()
			h.Write([]byte(site))
			if int(h.Sum32()%100) >= n {
				return false
			}
		default:
			k, v, _ := strings.Cut(term, "=")
			if k == "site" {
				if site != v {
					return false
				}
			} else if labels[k] != v {
				return false
			}
		}
	}
	return true
}

// Reaches reports whether the rollout's current wave includes the agent.
func (r Rollout) Reaches(site string, labels map[string]string) bool {
	for i := 0; i <= r.Wave && i < len(r.Waves); i++ {
		if r.Waves[i].Matches(site, labels) {
			return true
		}
	}
	return false
}

func (c *Client) rollouts(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, RolloutsBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", RolloutsBucket, err)
	}
	return kv, nil
}

// StartRollout records a new active rollout. It fails with ErrRaced if the
// app already has an active one.
func (c *Client) StartRollout(ctx context.Context, r Rollout) error {
	kv, err := c.rollouts(ctx)
	if err != nil {
		return err
	}
	cur, rev, err := c.Rollout(ctx, r.App)
	if err == nil && cur.State == RolloutActive {
		return fmt.Errorf("rollout of %s: wave %d of %d still active: %w", r.App, cur.Wave+1, len(cur.Waves), ErrRaced)
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	r.State, r.Wave, r.Updated, r.WaveStart = RolloutActive, 0, time.Now().UTC(), time.Now().UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("rollout of %s: %w", r.App, err)
	}
	if err := casPut(ctx, kv, r.App, b, rev); err != nil {
		return fmt.Errorf("rollout of %s: %w", r.App, err)
	}
	return nil
}

// Rollout returns app's latest rollout and its revision, or ErrNotFound.
func (c *Client) Rollout(ctx context.Context, app string) (Rollout, uint64, error) {
	kv, err := c.rollouts(ctx)
	if err != nil {
		return Rollout{}, 0, err
	}
	e, err := kv.Get(ctx, app)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Rollout{}, 0, fmt.Errorf("rollout of %s: %w", app, ErrNotFound)
	}
	if err != nil {
		return Rollout{}, 0, fmt.Errorf("rollout of %s: %w", app, err)
	}
	var r Rollout
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return Rollout{}, 0, fmt.Errorf("rollout of %s: %w", app, err)
	}
	return r, e.Revision(), nil
}

// UpdateRollout writes r if the record is still at revision.
func (c *Client) UpdateRollout(ctx context.Context, r Rollout, revision uint64) error {
	kv, err := c.rollouts(ctx)
	if err != nil {
		return err
	}
	r.Updated = time.Now().UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("rollout of %s: %w", r.App, err)
	}
	if err := casPut(ctx, kv, r.App, b, max(revision, 1)); err != nil {
		return fmt.Errorf("rollout of %s: %w", r.App, err)
	}
	return nil
}

// WatchRollouts calls fn with every rollout as it changes, until ctx is
// done or the watch fails.
func (c *Client) WatchRollouts(ctx context.Context, fn func(r Rollout, revision uint64)) error {
	kv, err := c.rollouts(ctx)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("watch %s: %w", RolloutsBucket, err)
	}
	return follow(ctx, w, RolloutsBucket, func(e jetstream.KeyValueEntry) {
		var r Rollout
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			c.logger.Warn("unreadable rollout", "app", e.Key(), "err", err)
			return
		}
		fn(r, e.Revision())
	}, nil)
}

// Rollouts returns every app's latest rollout with its revision.
func (c *Client) Rollouts(ctx context.Context) (map[string]Rollout, map[string]uint64, error) {
	kv, err := c.rollouts(ctx)
	if err != nil {
		return nil, nil, err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, nil, fmt.Errorf("watch %s: %w", RolloutsBucket, err)
	}
	defer w.Stop()
	rolls, revs := map[string]Rollout{}, map[string]uint64{}
	for {
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("list %s: %w", RolloutsBucket, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, nil, fmt.Errorf("list %s: watch closed", RolloutsBucket)
			}
			if e == nil {
				return rolls, revs, nil
			}
			var r Rollout
			if err := json.Unmarshal(e.Value(), &r); err != nil {
				continue
			}
			rolls[e.Key()], revs[e.Key()] = r, e.Revision()
		}
	}
}
