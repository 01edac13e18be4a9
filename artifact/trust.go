package artifact

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// trustContext separates publisher-list signatures from release
// signatures: a root key's signature over a list can never pass as a
// release, and a publisher's over a release never as a list.
const trustContext = "tern-publishers-v1\n"

// ErrRevoked reports a release signed by a key that the current publisher
// list no longer names.
var ErrRevoked = errors.New("publisher key revoked")

// Publishers is the root-signed list of publisher keys an agent trusts.
// Agents configured with a root key trust exactly the keys of the newest
// valid list: adding, rotating or revoking a publisher is publishing a
// new list, with no change on the agents.
type Publishers struct {
	// Sequence increases with every list, so an old list cannot be
	// replayed to bring back a revoked key.
	Sequence uint64    `json:"sequence"`
	Issued   time.Time `json:"issued"`
	// Expires bounds how long a list is good for: an agent that sees no
	// newer list by then refuses new releases rather than trust a list an
	// attacker may be freezing in place.
	Expires time.Time `json:"expires"`
	Keys    []string  `json:"keys"` // "ed25519:…" public keys
}

// Validate checks the list's fields.
func (p Publishers) Validate() error {
	if p.Sequence == 0 {
		return fmt.Errorf("%w publisher list: sequence must be at least 1", ErrMalformed)
	}
	if !p.Expires.After(p.Issued) {
		return fmt.Errorf("%w publisher list: expires %s is not after issued %s", ErrMalformed, p.Expires.Format(time.RFC3339), p.Issued.Format(time.RFC3339))
	}
	if _, err := ParseKeySet(p.Keys); err != nil {
		return fmt.Errorf("%w publisher list: %v", ErrMalformed, err)
	}
	return nil
}

// KeySet returns the list's keys as a set.
func (p Publishers) KeySet() KeySet {
	ks, _ := ParseKeySet(p.Keys)
	return ks
}

// CheckFresh checks the list against the agent's clock and the sequence of
// the list it holds (0 for none).
func (p Publishers) CheckFresh(now time.Time, installed uint64) error {
	if !now.Before(p.Expires) {
		return fmt.Errorf("publisher list %d expired at %s: %w", p.Sequence, p.Expires.UTC().Format(time.RFC3339), ErrExpired)
	}
	if p.Sequence <= installed {
		return fmt.Errorf("publisher list: sequence %d is not above installed sequence %d: %w", p.Sequence, installed, ErrDowngrade)
	}
	return nil
}

// SignPublishers signs a publisher list with a root key.
func SignPublishers(p Publishers, root ed25519.PrivateKey) ([]byte, error) {
	if len(root) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign publisher list %d: root key is %d bytes, want %d", p.Sequence, len(root), ed25519.PrivateKeySize)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("sign publisher list %d: %w", p.Sequence, err)
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("sign publisher list %d: %w", p.Sequence, err)
	}
	env, err := json.Marshal(envelope{
		Payload: payload,
		KeyID:   KeyID(root.Public().(ed25519.PublicKey)),
		Sig:     ed25519.Sign(root, append([]byte(trustContext), payload...)),
	})
	if err != nil {
		return nil, fmt.Errorf("sign publisher list %d: %w", p.Sequence, err)
	}
	return env, nil
}

// OpenPublishers decodes a publisher list and verifies that a key in roots
// signed it; it does not check expiry or sequence.
func OpenPublishers(envelopeBytes []byte, roots KeySet) (Publishers, error) {
	if len(envelopeBytes) > MaxEnvelopeSize {
		return Publishers{}, fmt.Errorf("open publisher list: envelope of %d bytes exceeds the limit %d: %w", len(envelopeBytes), MaxEnvelopeSize, ErrSize)
	}
	var env envelope
	if err := decodeStrict(envelopeBytes, &env); err != nil {
		return Publishers{}, fmt.Errorf("open publisher list: %w envelope: %v", ErrMalformed, err)
	}
	pub, ok := roots.keys[env.KeyID]
	if !ok {
		return Publishers{}, fmt.Errorf("open publisher list: key %q is not a trusted root: %w", env.KeyID, ErrUntrustedKey)
	}
	if len(env.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, append([]byte(trustContext), env.Payload...), env.Sig) {
		return Publishers{}, fmt.Errorf("open publisher list: signature by root %s does not verify: %w", env.KeyID, ErrSignature)
	}
	var p Publishers
	if err := decodeStrict(env.Payload, &p); err != nil {
		return Publishers{}, fmt.Errorf("open publisher list: %w list: %v", ErrMalformed, err)
	}
	if err := p.Validate(); err != nil {
		return Publishers{}, fmt.Errorf("open publisher list: %w", err)
	}
	return p, nil
}

// PeekPublishers decodes a publisher list without verifying it, for
// display only; agents use [OpenPublishers].
func PeekPublishers(envelopeBytes []byte) (Publishers, error) {
	var env envelope
	if err := decodeStrict(envelopeBytes, &env); err != nil {
		return Publishers{}, fmt.Errorf("peek publisher list: %w envelope: %v", ErrMalformed, err)
	}
	var p Publishers
	if err := decodeStrict(env.Payload, &p); err != nil {
		return Publishers{}, fmt.Errorf("peek publisher list: %w list: %v", ErrMalformed, err)
	}
	return p, nil
}
