// Package deploy is the publisher's side of Tern: it signs an app's release
// and pushes the module and the signed release to a hub, from where every
// agent pulls it.
package deploy

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tern-edge/tern/artifact"
	ternsync "github.com/tern-edge/tern/sync"
)

// DefaultTTL is how long a release stays valid when the publisher does not
// say: agents refuse a release first seen after it expired.
const DefaultTTL = 365 * 24 * time.Hour

// Options configures one deploy.
type Options struct {
	// Client is the connection to the hub.
	Client *ternsync.Client
	// Key signs the release.
	Key ed25519.PrivateKey
	// TTL is the release's validity; 0 means DefaultTTL.
	TTL time.Duration
	// Progress, when set, is told how many of the module's bytes have been
	// uploaded.
	Progress func(sent, total int64)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rollout, when set, stages the release wave by wave instead of
	// publishing it to every agent at once.
	Rollout *RolloutPlan
	// Trusted are the publisher keys, besides Key, that the fleet's agents
	// trust. What a deploy or rollback builds on (the current release,
	// the history) must verify against them and Key, as it would on an
	// agent: otherwise anyone able to write to the hub could have the
	// publisher sign their module.
	Trusted artifact.KeySet
	// Supersede lets a deploy or rollback replace a current release that
	// does not verify, building on the newest one that does (which agents
	// still run), instead of refusing.
	Supersede bool
}

// RolloutPlan says how a staged release reaches the fleet.
type RolloutPlan struct {
	// Waves are the selectors of each wave, applied cumulatively.
	Waves []ternsync.Selector
	// Wait is how long each wave must stay healthy before the next.
	Wait time.Duration
	// MaxErrorRate is the share of 5xx answers that fails a wave.
	MaxErrorRate float64
	// Timeout bounds how long a wave may take to converge.
	Timeout time.Duration
}

// Result describes a deploy that succeeded.
type Result struct {
	Release  artifact.Release
	Envelope []byte
	// From is, for a rollback, the sequence of the verified release whose
	// module and manifest it restores.
	From uint64
}

// Dir deploys the app whose tern.toml is in dir (or is dir). An origin
// app has no module to read.
func Dir(ctx context.Context, dir string, opts Options) (Result, error) {
	m, mdir, err := artifact.LoadManifest(dir)
	if err != nil {
		return Result{}, err
	}
	if m.Origin != nil {
		return Push(ctx, m, nil, opts)
	}
	wasmPath := filepath.Join(mdir, m.Wasm)
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return Result{}, fmt.Errorf("app %s: %w", m.Name, err)
	}
	return Push(ctx, m, wasm, opts)
}

// Push signs and publishes m with its module bytes. The release's sequence
// is one more than the hub's current one for the app, so agents accept it
// as newer; a concurrent deploy of the same app makes one of the two retry.
// The current release must verify against opts.Trusted and opts.Key as an
// agent would verify it, or Push fails with [ErrUnverifiedCurrent] naming
// it, unless opts.Supersede says to build on the newest that verifies.
// An origin app (m.Origin set) has no module: wasm must be empty, nothing
// is uploaded and the release's digest is empty.
func Push(ctx context.Context, m artifact.Manifest, wasm []byte, opts Options) (Result, error) {
	if opts.Client == nil || opts.Key == nil {
		return Result{}, errors.New("deploy: a hub connection and a signing key are required")
	}
	if err := m.Validate(); err != nil {
		return Result{}, err
	}
	// Agents see the limits the release runs under, not "the defaults of
	// whatever agent version installs it".
	m = m.WithDefaults()
	origin := m.Origin != nil
	switch {
	case origin && len(wasm) > 0:
		return Result{}, fmt.Errorf("app %s: an origin app has no module, got %d bytes: %w", m.Name, len(wasm), artifact.ErrSize)
	case !origin:
		if err := artifact.CheckWasm(wasm); err != nil {
			return Result{}, fmt.Errorf("app %s: %s: %w", m.Name, m.Wasm, err)
		}
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	ttl := opts.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if err := opts.Client.EnsureBuckets(ctx, 1); err != nil {
		return Result{}, err
	}
	var digest string
	size := int64(len(wasm))
	if !origin {
		digest = artifact.Digest(wasm)
		var progress func(int64)
		if opts.Progress != nil {
			progress = func(sent int64) { opts.Progress(sent, size) }
		}
		if err := opts.Client.PutArtifact(ctx, digest, bytes.NewReader(wasm), size, progress); err != nil {
			return Result{}, fmt.Errorf("app %s: %w", m.Name, err)
		}
	}
	if r, _, err := opts.Client.Rollout(ctx, m.Name); err == nil && r.State == ternsync.RolloutActive {
		return Result{}, fmt.Errorf("app %s: a staged rollout is in progress (wave %d of %d): %w", m.Name, r.Wave+1, len(r.Waves), ErrRolloutActive)
	}
	trusted := trustedFor(opts)
	for attempt := 0; ; attempt++ {
		_, cur, rev, err := current(ctx, opts.Client, m.Name, trusted, opts.Supersede)
		if err != nil {
			return Result{}, fmt.Errorf("deploy %s: %w", m.Name, err)
		}
		var seq uint64 = 1
		var prevRel artifact.Release
		if cur != nil {
			prevRel = cur.Release
			seq = prevRel.Sequence + 1
		}
		t := now().UTC().Truncate(time.Second)
		rel := artifact.Release{
			App:      m.Name,
			Sequence: seq,
			Digest:   digest,
			Size:     size,
			Issued:   t,
			Expires:  t.Add(ttl),
			Manifest: m,
		}
		env, err := artifact.Sign(rel, opts.Key)
		if err != nil {
			return Result{}, fmt.Errorf("sign %s@%d: %w", m.Name, seq, err)
		}
		if opts.Rollout != nil {
			if cur == nil {
				return Result{}, fmt.Errorf("app %s: a staged rollout needs a current release to fall back to; deploy it once first", m.Name)
			}
			return stage(ctx, rel, env, prevRel, opts)
		}
		err = opts.Client.PutRelease(ctx, m.Name, env, rev)
		if errors.Is(err, ternsync.ErrRaced) && attempt < 5 {
			continue
		}
		if err != nil {
			return Result{}, err
		}
		return Result{Release: rel, Envelope: env}, nil
	}
}

// ErrRolloutActive reports that an app's staged rollout has not finished.
var ErrRolloutActive = errors.New("rollout in progress")

// stage starts a staged rollout of rel. It signs, besides rel, the abort
// release (the current module, one sequence higher still) that the hub
// publishes if a wave fails, so the hub never needs a signing key. prev
// is the current release as Push verified it: the abort release re-signs
// its module and manifest.
func stage(ctx context.Context, rel artifact.Release, env []byte, prev artifact.Release, opts Options) (Result, error) {
	abort := prev
	abort.Sequence = rel.Sequence + 1
	abort.Issued, abort.Expires = rel.Issued, rel.Expires
	abortEnv, err := artifact.Sign(abort, opts.Key)
	if err != nil {
		return Result{}, fmt.Errorf("sign abort release %s@%d: %w", rel.App, abort.Sequence, err)
	}
	p := opts.Rollout
	if len(p.Waves) == 0 {
		return Result{}, fmt.Errorf("app %s: rollout plan has no waves", rel.App)
	}
	r := ternsync.Rollout{
		App: rel.App, Release: env, Abort: abortEnv, Waves: p.Waves,
		Wait: p.Wait, MaxErrorRate: p.MaxErrorRate, Timeout: p.Timeout,
	}
	if r.Timeout <= 0 {
		r.Timeout = 10 * time.Minute
	}
	if r.MaxErrorRate <= 0 {
		r.MaxErrorRate = 0.05
	}
	if err := opts.Client.StartRollout(ctx, r); err != nil {
		return Result{}, err
	}
	return Result{Release: rel, Envelope: env}, nil
}

// App is one app's current release as the hub holds it.
type App struct {
	Release artifact.Release
	// Publisher is the key ID that signed the release.
	Publisher string
	// Verified is set when the release checks out against the trusted
	// keys given to List, as an agent would check it: signature, stored
	// under its own app's key, not expired when the hub stored it.
	Verified bool
	// Problem says why the release does not verify; nil when Verified.
	Problem error
	Updated time.Time
	// Err says why the release could not be read; the other fields are
	// then partial.
	Err error
}

// List returns every app's current release on the hub, each checked
// against trusted. The sequence is not checked: that needs the app's
// history (see [History]).
func List(ctx context.Context, c *ternsync.Client, trusted artifact.KeySet) ([]App, error) {
	entries, err := c.Releases(ctx)
	if err != nil {
		return nil, err
	}
	apps := make([]App, 0, len(entries))
	for _, e := range entries {
		a := App{Updated: e.Updated, Publisher: artifact.PeekKeyID(e.Envelope)}
		a.Release, a.Err = artifact.Peek(e.Envelope)
		if a.Err == nil {
			if _, err := checkEntry(e.App, e, trusted); err != nil {
				a.Problem = fmt.Errorf("release %s at revision %d: %w: %w", e.App, e.Revision, ErrUnverified, err)
			} else {
				a.Verified = true
			}
		}
		// The hub's key names the app even when the release is unreadable.
		a.Release.App = e.App
		apps = append(apps, a)
	}
	return apps, nil
}
