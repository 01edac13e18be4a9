package deploy

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tern-edge/tern/artifact"
	ternsync "github.com/tern-edge/tern/sync"
)

// DefaultListTTL is how long a publisher list stays valid when not told:
// agents refuse new releases once the newest list they have expired, so
// the root key holder must re-sign before then.
const DefaultListTTL = 90 * 24 * time.Hour

// TrustChange edits the hub's publisher list.
type TrustChange struct {
	Add    []ed25519.PublicKey
	Revoke []ed25519.PublicKey
	TTL    time.Duration
	Now    func() time.Time
}

// SetPublishers signs, with the root key, a new publisher list: the hub's
// current list plus Add minus Revoke, with the next sequence, and stores
// it on the hub, from where every agent configured with the root picks it
// up.
func SetPublishers(ctx context.Context, c *ternsync.Client, root ed25519.PrivateKey, ch TrustChange) (artifact.Publishers, error) {
	if err := c.EnsureBuckets(ctx, 1); err != nil {
		return artifact.Publishers{}, err
	}
	now := time.Now
	if ch.Now != nil {
		now = ch.Now
	}
	ttl := ch.TTL
	if ttl <= 0 {
		ttl = DefaultListTTL
	}
	roots := artifact.NewKeySet(root.Public().(ed25519.PublicKey))
	for attempt := 0; ; attempt++ {
		env, rev, err := c.Publishers(ctx)
		var cur artifact.Publishers
		switch {
		case errors.Is(err, ternsync.ErrNotFound):
		case err != nil:
			return artifact.Publishers{}, err
		default:
			if cur, err = artifact.OpenPublishers(env, roots); err != nil {
				return artifact.Publishers{}, fmt.Errorf("current publisher list: %w", err)
			}
		}
		keys := slices.Clone(cur.Keys)
		for _, k := range ch.Add {
			if s := artifact.FormatPublicKey(k); !slices.Contains(keys, s) {
				keys = append(keys, s)
			}
		}
		for _, k := range ch.Revoke {
			s := artifact.FormatPublicKey(k)
			keys = slices.DeleteFunc(keys, func(x string) bool { return x == s })
		}
		t := now().UTC().Truncate(time.Second)
		next := artifact.Publishers{Sequence: cur.Sequence + 1, Issued: t, Expires: t.Add(ttl), Keys: keys}
		if next.Keys == nil {
			next.Keys = []string{}
		}
		signed, err := artifact.SignPublishers(next, root)
		if err != nil {
			return artifact.Publishers{}, err
		}
		err = c.PutPublishers(ctx, signed, rev)
		if errors.Is(err, ternsync.ErrRaced) && attempt < 5 {
			continue
		}
		if err != nil {
			return artifact.Publishers{}, err
		}
		return next, nil
	}
}
