package deploy

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/tern-edge/tern/artifact"
	ternsync "github.com/tern-edge/tern/sync"
)

// ErrUnverified reports hub state that does not verify as an agent would
// verify it: the publisher's tools refuse to build on it, since whoever
// can write to the hub could otherwise have a publisher sign their code.
var ErrUnverified = errors.New("does not verify")

// Entry is one release of an app's history on the hub, checked as an
// agent following the app would check it.
type Entry struct {
	// Revision is the entry's revision in the hub's release bucket.
	Revision uint64
	// Updated is when the hub stored the entry.
	Updated time.Time
	// Release is the verified release, or, when Err is set, what the
	// entry claims, for display only (partial when it cannot be decoded).
	Release artifact.Release
	// Publisher is the key ID the entry claims to be signed by.
	Publisher string
	// Repeat marks a verified entry that restates the verified release
	// before it (same sequence and digest): agents take it for the
	// release they already run.
	Repeat bool
	// Err says why an agent would not accept the entry; nil when it
	// verifies.
	Err error
}

// Verified reports whether the entry verifies.
func (e Entry) Verified() bool { return e.Err == nil }

// CheckHistory checks app's history on the hub, oldest first, as an agent
// that followed it would have: each entry must be signed by a key in
// trusted, be a release of app (not one stored under another app's key),
// not have expired before the hub stored it, and have a sequence above
// the verified release before it (or restate that release). An entry
// that fails is marked with the reason and does not count as the release
// before the next one, as an agent would have refused it and kept what
// it ran.
func CheckHistory(app string, entries []ternsync.Entry, trusted artifact.KeySet) []Entry {
	out := make([]Entry, 0, len(entries))
	var last *artifact.Release
	var lastRev uint64
	for _, e := range entries {
		c := Entry{Revision: e.Revision, Updated: e.Updated, Publisher: artifact.PeekKeyID(e.Envelope)}
		rel, err := checkEntry(app, e, trusted)
		switch {
		case err != nil:
		case last != nil && rel.Sequence == last.Sequence && rel.Digest == last.Digest:
			c.Repeat = true
		case last != nil && rel.Sequence <= last.Sequence:
			err = fmt.Errorf("sequence %d is not above sequence %d of revision %d (a replay): %w", rel.Sequence, last.Sequence, lastRev, artifact.ErrDowngrade)
		}
		if err != nil {
			c.Err = fmt.Errorf("release %s at revision %d: %w: %w", app, e.Revision, ErrUnverified, err)
			c.Release, _ = artifact.Peek(e.Envelope)
			c.Release.App = app
		} else {
			c.Release = rel
			last, lastRev = &c.Release, e.Revision
		}
		out = append(out, c)
	}
	return out
}

// checkEntry checks one entry on its own: signature, app and expiry.
func checkEntry(app string, e ternsync.Entry, trusted artifact.KeySet) (artifact.Release, error) {
	rel, err := artifact.Open(e.Envelope, trusted)
	if err != nil {
		return artifact.Release{}, err
	}
	if rel.App != app {
		return artifact.Release{}, fmt.Errorf("release for app %q stored under key %q: %w", rel.App, app, artifact.ErrMalformed)
	}
	if !e.Updated.IsZero() && !e.Updated.Before(rel.Expires) {
		return artifact.Release{}, fmt.Errorf("release %s@%d stored on the hub at %s, after it expired at %s: %w", app, rel.Sequence,
			e.Updated.UTC().Format(time.RFC3339), rel.Expires.UTC().Format(time.RFC3339), artifact.ErrExpired)
	}
	return rel, nil
}

// History returns app's releases on the hub, oldest first, each checked
// against trusted (see [CheckHistory]).
func History(ctx context.Context, c *ternsync.Client, app string, trusted artifact.KeySet) ([]Entry, error) {
	hist, err := c.History(ctx, app)
	if err != nil {
		return nil, err
	}
	return CheckHistory(app, hist, trusted), nil
}

// current reads app's history and returns it with its current release,
// the newest entry, which must verify, and the revision a write must
// replace. It returns a nil current and no error when the hub has no
// release of app. An unverifiable newest entry is an error naming it:
// nothing a publisher signs may build on it. With supersede, the newest
// entry that verifies takes its place instead (agents, which refused the
// newer one, still run it), so that a publisher can replace what was
// forged; when none does, there is nothing to number from.
func current(ctx context.Context, c *ternsync.Client, app string, trusted artifact.KeySet, supersede bool) ([]Entry, *Entry, uint64, error) {
	hist, err := c.History(ctx, app)
	if errors.Is(err, ternsync.ErrNotFound) {
		return nil, nil, 0, nil
	}
	if err != nil {
		return nil, nil, 0, err
	}
	checked := CheckHistory(app, hist, trusted)
	if len(checked) == 0 {
		return nil, nil, 0, nil
	}
	newest := &checked[len(checked)-1]
	if newest.Err == nil {
		return checked, newest, newest.Revision, nil
	}
	if !supersede {
		return nil, nil, 0, fmt.Errorf("%w on the hub: %w; refusing to build on it (see tern apps --history %s)",
			ErrUnverifiedCurrent, newest.Err, app)
	}
	for i := len(checked) - 2; i >= 0; i-- {
		if checked[i].Err == nil {
			return checked, &checked[i], newest.Revision, nil
		}
	}
	return nil, nil, 0, fmt.Errorf("%w on the hub: %w, and no release of the %d the hub keeps verifies, so there is no sequence to follow", ErrUnverifiedCurrent, newest.Err, len(checked))
}

// ErrUnverifiedCurrent reports that the hub's current release of an app
// does not verify; Options.Supersede builds on the newest one that does.
var ErrUnverifiedCurrent = errors.New("unverifiable current release")

// trustedFor is the key set a publisher's tool verifies hub state with:
// the keys it was given and its own.
func trustedFor(opts Options) artifact.KeySet {
	return opts.Trusted.With(opts.Key.Public().(ed25519.PublicKey))
}
