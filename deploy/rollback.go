package deploy

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/tern-edge/tern/artifact"
	ternsync "github.com/tern-edge/tern/sync"
)

// ErrNoPrevious reports that the hub holds no earlier release to roll back to.
var ErrNoPrevious = errors.New("no earlier release to roll back to")

// Rollback makes an earlier release of app current again. It is a new,
// signed release with the next sequence number that points at the earlier
// module and manifest, so agents, which never accept a lower sequence,
// move back as they would move forward. to selects the sequence to return
// to; 0 means the newest release whose module (for an origin app, whose
// origin table) differs from the current one.
func Rollback(ctx context.Context, app string, to uint64, opts Options) (Result, error) {
	if opts.Client == nil || opts.Key == nil {
		return Result{}, errors.New("rollback: a hub connection and a signing key are required")
	}
	if r, _, err := opts.Client.Rollout(ctx, app); err == nil && r.State == ternsync.RolloutActive {
		return Result{}, fmt.Errorf("rollback %s: a staged rollout is in progress: %w", app, ErrRolloutActive)
	}
	hist, err := opts.Client.History(ctx, app)
	if err != nil {
		return Result{}, err
	}
	if len(hist) == 0 {
		return Result{}, fmt.Errorf("rollback %s: %w", app, ternsync.ErrNotFound)
	}
	cur, err := artifact.Peek(hist[len(hist)-1].Envelope)
	if err != nil {
		return Result{}, fmt.Errorf("rollback %s: current release: %w", app, err)
	}
	var target *artifact.Release
	for i := len(hist) - 2; i >= 0; i-- {
		r, err := artifact.Peek(hist[i].Envelope)
		if err != nil {
			continue
		}
		if (to == 0 && differs(r, cur)) || (to != 0 && r.Sequence == to) {
			target = &r
			break
		}
	}
	if target == nil {
		if to != 0 {
			return Result{}, fmt.Errorf("rollback %s to sequence %d: not among the %d releases the hub keeps: %w", app, to, len(hist), ErrNoPrevious)
		}
		return Result{}, fmt.Errorf("rollback %s: %w", app, ErrNoPrevious)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	ttl := opts.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	t := now().UTC().Truncate(time.Second)
	rel := *target
	rel.Sequence = cur.Sequence + 1
	rel.Issued, rel.Expires = t, t.Add(ttl)
	env, err := artifact.Sign(rel, opts.Key)
	if err != nil {
		return Result{}, fmt.Errorf("sign rollback %s@%d: %w", app, rel.Sequence, err)
	}
	if err := opts.Client.PutRelease(ctx, app, env, hist[len(hist)-1].Revision); err != nil {
		return Result{}, fmt.Errorf("rollback %s: %w", app, err)
	}
	return Result{Release: rel, Envelope: env}, nil
}

// differs reports whether a and b serve differently: another module, or,
// for origin apps, which all have the same empty digest, another origin.
func differs(a, b artifact.Release) bool {
	return a.Digest != b.Digest || !reflect.DeepEqual(a.Manifest.Origin, b.Manifest.Origin)
}
