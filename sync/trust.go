package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tern-edge/tern/artifact"
)

// TrustBucket is the KV bucket holding the root-signed publisher list.
const TrustBucket = "tern-trust"

// publishersKey is the list's key in TrustBucket.
const publishersKey = "publishers"

// PutPublishers stores a signed publisher list, provided the current
// revision is still revision (0: none yet); otherwise ErrRaced.
func (c *Client) PutPublishers(ctx context.Context, envelope []byte, revision uint64) error {
	kv, err := c.js.KeyValue(ctx, TrustBucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", TrustBucket, err)
	}
	if err := casPut(ctx, kv, publishersKey, envelope, revision); err != nil {
		return fmt.Errorf("publisher list: %w", err)
	}
	return nil
}

// Publishers returns the hub's signed publisher list and its revision, or
// an error wrapping ErrNotFound.
func (c *Client) Publishers(ctx context.Context) ([]byte, uint64, error) {
	kv, err := c.js.KeyValue(ctx, TrustBucket)
	if err != nil {
		return nil, 0, fmt.Errorf("bucket %s: %w", TrustBucket, err)
	}
	e, err := kv.Get(ctx, publishersKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("publisher list: %w", ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("publisher list: %w", err)
	}
	return e.Value(), e.Revision(), nil
}

// PublishersHistory returns the publisher lists the hub still holds,
// oldest first (the bucket keeps the last 16), unverified.
func (c *Client) PublishersHistory(ctx context.Context) ([][]byte, error) {
	kv, err := c.js.KeyValue(ctx, TrustBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", TrustBucket, err)
	}
	es, err := kv.History(ctx, publishersKey, jetstream.IgnoreDeletes())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("history of the publisher list: %w", err)
	}
	out := make([][]byte, 0, len(es))
	for _, e := range es {
		if e.Operation() == jetstream.KeyValuePut {
			out = append(out, e.Value())
		}
	}
	return out, nil
}

// TrustWatcherConfig configures a TrustWatcher.
type TrustWatcherConfig struct {
	Client *Client
	// Roots are the keys allowed to sign publisher lists.
	Roots artifact.KeySet
	// Installed returns the sequence of the list the agent holds (0: none).
	Installed func() uint64
	// Accept makes a verified, fresh list current.
	Accept func(ctx context.Context, list artifact.Publishers, envelope []byte) error
	Logger *slog.Logger
	Now    func() time.Time
}

// TrustWatcher follows the hub's publisher list.
type TrustWatcher struct{ cfg TrustWatcherConfig }

// NewTrustWatcher returns a TrustWatcher; Run starts it.
func NewTrustWatcher(cfg TrustWatcherConfig) *TrustWatcher {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &TrustWatcher{cfg: cfg}
}

// Run watches the list until ctx is done, retrying while the hub (or the
// local mirror) is unavailable, with a jittered backoff that starts again
// from its shortest delay once a watch has caught up.
func (t *TrustWatcher) Run(ctx context.Context) error {
	b := backoff{min: watchRetryMin, max: watchRetryMax}
	for {
		err := t.watch(ctx, b.reset)
		if ctx.Err() != nil {
			return nil
		}
		d := b.next()
		t.cfg.Logger.Info("publisher list watch interrupted; retrying", "err", err, "in", d.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
}

func (t *TrustWatcher) watch(ctx context.Context, caughtUp func()) error {
	kv, err := t.cfg.Client.js.KeyValue(ctx, TrustBucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", TrustBucket, err)
	}
	w, err := kv.Watch(ctx, publishersKey)
	if err != nil {
		return fmt.Errorf("watch %s: %w", TrustBucket, err)
	}
	return follow(ctx, w, TrustBucket, func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut {
			return
		}
		list, err := artifact.OpenPublishers(e.Value(), t.cfg.Roots)
		if err == nil && list.Sequence == t.cfg.Installed() {
			return
		}
		if err == nil {
			err = list.CheckFresh(t.cfg.Now(), t.cfg.Installed())
		}
		if err == nil {
			err = t.cfg.Accept(ctx, list, e.Value())
		}
		if err != nil {
			t.cfg.Logger.Warn("publisher list refused", "sequence", list.Sequence, "reason", artifact.Reason(err), "err", err)
			return
		}
		t.cfg.Logger.Info("publisher list accepted", "sequence", list.Sequence, "keys", len(list.Keys), "expires", list.Expires)
	}, caughtUp)
}
