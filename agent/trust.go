package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/store"
	ternsync "github.com/tern-edge/tern/sync"
)

// publishersMeta is the store record of the accepted publisher list.
const publishersMeta = "publishers"

// trust decides whose releases the agent accepts. Without root keys it is
// the static set from the config (and tern up's dev key). With root keys,
// it is the newest root-signed publisher list from the hub, kept in the
// store so a restart offline keeps it.
type trust struct {
	roots  artifact.KeySet
	static artifact.KeySet      // guarded by Agent.mu: a reload replaces it
	list   *artifact.Publishers // guarded by Agent.mu
	keys   artifact.KeySet      // the list's keys; guarded by Agent.mu
}

func newTrust(cfg TrustConfig, extra []ed25519.PublicKey) (trust, error) {
	roots, err := artifact.ParseKeySet(cfg.Roots)
	if err != nil {
		return trust{}, fmt.Errorf("trust.roots: %w", err)
	}
	keys := append([]ed25519.PublicKey(nil), extra...)
	for _, s := range cfg.Publishers {
		k, err := artifact.ParsePublicKey(s)
		if err != nil {
			return trust{}, fmt.Errorf("trust.publishers: %w", err)
		}
		keys = append(keys, k)
	}
	return trust{roots: roots, static: artifact.NewKeySet(keys...)}, nil
}

func (t *trust) rooted() bool { return t.roots.Len() > 0 }

// trustedKeys returns the keys releases must be signed by now.
func (a *Agent) trustedKeys() (artifact.KeySet, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.trust.rooted() {
		return a.trust.static, nil
	}
	return a.trustedKeysLocked(a.now())
}

func (a *Agent) trustedKeysLocked(now time.Time) (artifact.KeySet, error) {
	l := a.trust.list
	if l == nil {
		return artifact.KeySet{}, fmt.Errorf("no root-signed publisher list yet: %w", artifact.ErrUntrustedKey)
	}
	// A list past its expiry may be one an attacker keeps the agent from
	// replacing: accept nothing new until a fresh one arrives.
	if !now.Before(l.Expires) {
		return artifact.KeySet{}, fmt.Errorf("publisher list %d expired at %s: %w", l.Sequence, l.Expires.UTC().Format(time.RFC3339), artifact.ErrExpired)
	}
	return a.trust.keys, nil
}

// verifyKeys are the keys to check installed releases against at start:
// an expired list still tells which keys were never revoked.
func (a *Agent) verifyKeys() artifact.KeySet {
	if !a.trust.rooted() {
		return a.trust.static
	}
	return a.trust.keys
}

// loadPublishers restores the accepted publisher list from the store.
func (a *Agent) loadPublishers() error {
	if !a.trust.rooted() {
		return nil
	}
	env, err := a.store.Meta(publishersMeta)
	if errors.Is(err, store.ErrNotFound) {
		a.logger.Warn("trust.roots set but no publisher list yet: releases are refused until the hub sends one")
		return nil
	}
	if err != nil {
		return err
	}
	list, err := artifact.OpenPublishers(env, a.trust.roots)
	if err != nil {
		return fmt.Errorf("stored publisher list: %w", err)
	}
	a.trust.list, a.trust.keys = &list, list.KeySet()
	return nil
}

func (a *Agent) publishersSequence() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.trust.list == nil {
		return 0
	}
	return a.trust.list.Sequence
}

// acceptPublishers makes a verified publisher list current and stops
// serving apps whose releases were signed by a key it no longer names: a
// revoked key may be a stolen one.
func (a *Agent) acceptPublishers(ctx context.Context, list artifact.Publishers, envelope []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.store.PutMeta(publishersMeta, envelope); err != nil {
		return err
	}
	a.trust.list, a.trust.keys = &list, list.KeySet()
	// Releases refused for want of a trusted key get another look.
	a.watcher.Rescan()
	return a.unloadLocked(func(ia *installedApp) bool { return !a.trust.keys.Has(ia.keyID) }, "publisher key revoked; app no longer served")
}

// unloadLocked stops serving the apps for which drop holds. a.mu is held.
func (a *Agent) unloadLocked(drop func(*installedApp) bool, why string) error {
	next := map[string]*installedApp{}
	var gone []*installedApp
	for name, ia := range a.apps {
		if drop(ia) {
			gone = append(gone, ia)
			continue
		}
		next[name] = ia
	}
	if len(gone) == 0 {
		return nil
	}
	tbl, err := buildTable(next, a.originRoutes)
	if err != nil {
		return err
	}
	a.router.Swap(tbl)
	a.apps = next
	for _, ia := range gone {
		a.logger.Warn(why, "app", ia.rel.App, "sequence", ia.rel.Sequence, "key", ia.keyID)
		go ia.close(context.Background())
	}
	a.heartbeats.Nudge()
	return nil
}

// dropExpired stops serving releases past their expiry, for agents whose
// policy is to refuse them.
func (a *Agent) dropExpired() {
	if a.cfg.Expired != "refuse" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.unloadLocked(func(ia *installedApp) bool { return !now.Before(ia.rel.Expires) }, "release expired; no longer served (expired = refuse)")
}

func (a *Agent) trustWatcher() *ternsync.TrustWatcher {
	return ternsync.NewTrustWatcher(ternsync.TrustWatcherConfig{
		Client:    a.client,
		Roots:     a.trust.roots,
		Installed: a.publishersSequence,
		Accept:    a.acceptPublishers,
		Logger:    a.logger.With("component", "trust"),
		Now:       a.now,
	})
}
