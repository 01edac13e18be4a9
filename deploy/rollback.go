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
// to; 0 means the release before the current one: the newest whose module
// or manifest differs from the current one's, so that a manifest-only
// change (new routes, limits or capabilities on the same module) rolls
// back too, while a release that only re-signs the current one is passed
// over.
//
// Only what verifies is built on (see [CheckHistory]): the current
// release must verify against opts.Trusted and opts.Key
// ([ErrUnverifiedCurrent] otherwise, unless opts.Supersede), and the
// target is a verified entry of the history, never one that does not
// verify, which is skipped, or refused with [ErrUnverified] when to names
// it and no verified entry has that sequence.
func Rollback(ctx context.Context, app string, to uint64, opts Options) (Result, error) {
	if opts.Client == nil || opts.Key == nil {
		return Result{}, errors.New("rollback: a hub connection and a signing key are required")
	}
	if r, _, err := opts.Client.Rollout(ctx, app); err == nil && r.State == ternsync.RolloutActive {
		return Result{}, fmt.Errorf("rollback %s: a staged rollout is in progress: %w", app, ErrRolloutActive)
	}
	hist, cur, rev, err := current(ctx, opts.Client, app, trustedFor(opts), opts.Supersede)
	if err != nil {
		return Result{}, fmt.Errorf("rollback %s: %w", app, err)
	}
	if cur == nil {
		return Result{}, fmt.Errorf("rollback %s: %w", app, ternsync.ErrNotFound)
	}
	var target, claimed *Entry
	// Candidates are the releases before the current one, which, with
	// Supersede, need not be the newest entry.
	var below []Entry
	for i := range hist {
		if &hist[i] == cur {
			below = hist[:i]
		}
	}
	for i := len(below) - 1; i >= 0 && target == nil; i-- {
		e := &below[i]
		switch {
		case e.Err != nil:
			if to != 0 && e.Release.Sequence == to && claimed == nil {
				claimed = e
			}
		case to == 0 && differs(e.Release, cur.Release), to != 0 && e.Release.Sequence == to:
			target = e
		}
	}
	if target == nil {
		if claimed != nil {
			return Result{}, fmt.Errorf("rollback %s to sequence %d: %w", app, to, claimed.Err)
		}
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
	rel := target.Release
	rel.Sequence = cur.Release.Sequence + 1
	rel.Issued, rel.Expires = t, t.Add(ttl)
	env, err := artifact.Sign(rel, opts.Key)
	if err != nil {
		return Result{}, fmt.Errorf("sign rollback %s@%d: %w", app, rel.Sequence, err)
	}
	if err := opts.Client.PutRelease(ctx, app, env, rev); err != nil {
		return Result{}, fmt.Errorf("rollback %s: %w", app, err)
	}
	return Result{Release: rel, Envelope: env, From: target.Release.Sequence}, nil
}

// differs reports whether a and b serve differently: another module or
// another manifest (which, for origin apps, all with the same empty
// digest, holds the origin table).
func differs(a, b artifact.Release) bool {
	return a.Digest != b.Digest || !reflect.DeepEqual(a.Manifest, b.Manifest)
}
