package deploy

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
	// Last is the list the root key signed last (its envelope, as
	// [SignedList.Envelope] returned it), which the root's holder keeps
	// beside the key; nil when none is recorded. The new list builds on
	// the hub's only when the hub holds exactly this list: a list signed
	// by the root can be replayed to the hub, and building on it would
	// bring its revoked keys back.
	Last []byte
	// From, when set, is a list signed by the root to build on instead of
	// the hub's, for starting over from a known list.
	From []byte
	// Reset builds the new list from Add alone, neither from the hub's
	// list nor from Last.
	Reset bool
}

// ErrListMismatch reports that the hub's publisher list is not the one the
// root key signed last, or that no record says which one that was.
var ErrListMismatch = errors.New("refusing to build on the hub's publisher list")

// SignedList is a publisher list as SetPublishers signed it.
type SignedList struct {
	artifact.Publishers
	// Envelope is the signed list, to keep as the next TrustChange.Last.
	Envelope []byte
}

// SetPublishers signs, with the root key, a new publisher list and stores
// it on the hub, from where every agent configured with the root picks it
// up. The list is the base plus Add minus Revoke, with a sequence above
// every list of the root it knows of (ch.Last, ch.From, those the hub
// keeps). The base is ch.From, or nothing with ch.Reset,
// or else the hub's current list, which must be ch.Last byte for byte
// ([ErrListMismatch] otherwise); with no list on the hub, ch.Last.
func SetPublishers(ctx context.Context, c *ternsync.Client, root ed25519.PrivateKey, ch TrustChange) (SignedList, error) {
	if len(root) != ed25519.PrivateKeySize {
		return SignedList{}, fmt.Errorf("publisher list: root key is %d bytes, want %d", len(root), ed25519.PrivateKeySize)
	}
	if err := c.EnsureBuckets(ctx, 1); err != nil {
		return SignedList{}, err
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
	var last, from *artifact.Publishers
	if len(ch.Last) > 0 {
		l, err := artifact.OpenPublishers(ch.Last, roots)
		if err != nil {
			return SignedList{}, fmt.Errorf("last publisher list signed: %w", err)
		}
		last = &l
	}
	if len(ch.From) > 0 {
		l, err := artifact.OpenPublishers(ch.From, roots)
		if err != nil {
			return SignedList{}, fmt.Errorf("publisher list to build on: %w", err)
		}
		from = &l
	}
	for attempt := 0; ; attempt++ {
		env, rev, err := c.Publishers(ctx)
		onHub := err == nil
		if err != nil && !errors.Is(err, ternsync.ErrNotFound) {
			return SignedList{}, err
		}
		// The sequence goes above every list known to be the root's, so
		// that agents holding any of them accept the new one.
		var seq uint64
		for _, l := range []*artifact.Publishers{last, from} {
			if l != nil {
				seq = max(seq, l.Sequence)
			}
		}
		var hub *artifact.Publishers
		if onHub {
			if l, err := artifact.OpenPublishers(env, roots); err == nil {
				hub = &l
			}
			// A replayed list may hide newer ones, which agents may hold:
			// every list of this root that the hub still keeps counts.
			lists, err := c.PublishersHistory(ctx)
			if err != nil {
				return SignedList{}, err
			}
			for _, b := range lists {
				if l, err := artifact.OpenPublishers(b, roots); err == nil {
					seq = max(seq, l.Sequence)
				}
			}
		}
		var base []string
		switch {
		case ch.Reset:
		case from != nil:
			base = from.Keys
		case onHub && last == nil:
			return SignedList{}, fmt.Errorf("%w: it (%s) may not be the list this root signed last, and nothing records which that was",
				ErrListMismatch, describeList(env, hub))
		case onHub && !bytes.Equal(env, ch.Last):
			return SignedList{}, fmt.Errorf("%w: it (%s) is not the list this root signed last (sequence %d, %s)",
				ErrListMismatch, describeList(env, hub), last.Sequence, listHash(ch.Last))
		case last != nil:
			base = last.Keys
		}
		keys := slices.Clone(base)
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
		next := artifact.Publishers{Sequence: seq + 1, Issued: t, Expires: t.Add(ttl), Keys: keys}
		if next.Keys == nil {
			next.Keys = []string{}
		}
		signed, err := artifact.SignPublishers(next, root)
		if err != nil {
			return SignedList{}, err
		}
		err = c.PutPublishers(ctx, signed, rev)
		if errors.Is(err, ternsync.ErrRaced) && attempt < 5 {
			continue
		}
		if err != nil {
			return SignedList{}, err
		}
		return SignedList{Publishers: next, Envelope: signed}, nil
	}
}

// describeList names a list in errors: its sequence when the root's
// signature verifies, and its hash.
func describeList(env []byte, verified *artifact.Publishers) string {
	if verified == nil {
		return "not signed by this root, " + listHash(env)
	}
	return fmt.Sprintf("sequence %d, %s", verified.Sequence, listHash(env))
}

// listHash identifies a signed list by the digest of its bytes.
func listHash(env []byte) string {
	d := artifact.Digest(env)
	return d[:len("sha256:")+12]
}

// LastListFile is where the holder of the root key at rootKeyPath keeps
// the list it signed last: beside the key, so that whoever can sign with
// the key also knows what it last signed.
func LastListFile(rootKeyPath string) string { return rootKeyPath + ".list" }

// ReadLastList reads the list recorded at path; nil and no error when
// there is none.
func ReadLastList(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("last publisher list signed: %w", err)
	}
	return b, nil
}

// SaveLastList records env, a list just signed, at path. It writes a
// temporary file and renames it into place, so a crash leaves the old
// record or the new one.
func SaveLastList(path string, env []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("record publisher list: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(env); err != nil {
		tmp.Close()
		return fmt.Errorf("record publisher list: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("record publisher list: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("record publisher list: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("record publisher list: %w", err)
	}
	return nil
}
