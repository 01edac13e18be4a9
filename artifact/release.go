package artifact

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

const (
	// MaxEnvelopeSize bounds an envelope before any decoding, so that a hub
	// or a peer cannot make an agent allocate without limit.
	MaxEnvelopeSize = 1 << 20
	// MaxArtifactSize bounds a wasm module.
	MaxArtifactSize = 256 * MiB

	// signingContext separates release signatures from anything else a
	// publisher key might ever sign.
	signingContext = "tern-release-v1\n"
	digestPrefix   = "sha256:"
)

// Release is the signed statement "app App, at sequence Sequence, is the wasm
// module with this digest and size, under this manifest". The release of
// an origin app (a manifest with an [origin] table) has no module: its
// digest is empty and its size 0.
type Release struct {
	App      string    `json:"app"`
	Sequence uint64    `json:"sequence"` // strictly increasing per app; at least 1
	Digest   string    `json:"digest"`   // "sha256:<64 lower-case hex digits>", or "" without a module
	Size     int64     `json:"size"`     // bytes, at most MaxArtifactSize; 0 without a module
	Issued   time.Time `json:"issued"`
	Expires  time.Time `json:"expires"` // agents refuse to install it afterwards
	Manifest Manifest  `json:"manifest"`
}

// envelope is the stored form of a signed release. The payload is kept as
// the exact bytes that were signed, so verification never depends on
// re-encoding JSON the same way twice.
type envelope struct {
	Payload []byte `json:"payload"` // Release JSON; standard base64 in the envelope
	KeyID   string `json:"key_id"`
	Sig     []byte `json:"sig"` // ed25519 over signingContext + Payload; base64
}

// Digest returns the content digest of b: "sha256:" and 64 lower-case hex digits.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return digestPrefix + hex.EncodeToString(sum[:])
}

// Sign validates r, encodes it and signs it with key. The result is the
// envelope stored in the hub and passed to [Open].
func Sign(r Release, key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign release %s@%d: private key is %d bytes, want %d", r.App, r.Sequence, len(key), ed25519.PrivateKeySize)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("sign release %s@%d: %w", r.App, r.Sequence, err)
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("sign release %s@%d: %w", r.App, r.Sequence, err)
	}
	env, err := json.Marshal(envelope{
		Payload: payload,
		KeyID:   KeyID(key.Public().(ed25519.PublicKey)),
		Sig:     ed25519.Sign(key, signedBytes(payload)),
	})
	if err != nil {
		return nil, fmt.Errorf("sign release %s@%d: %w", r.App, r.Sequence, err)
	}
	if len(env) > MaxEnvelopeSize {
		return nil, fmt.Errorf("sign release %s@%d: envelope of %d bytes exceeds the limit %d: %w", r.App, r.Sequence, len(env), MaxEnvelopeSize, ErrSize)
	}
	return env, nil
}

func signedBytes(payload []byte) []byte {
	return append([]byte(signingContext), payload...)
}

// Open decodes an envelope, checks that it is signed by a key in trusted and
// returns the release, validated. The payload is decoded only after its
// signature verifies, so untrusted bytes never reach the release decoder.
// Open does not check expiry or sequence: see [Release.CheckFresh].
//
// # Errors
//
// [ErrSize] for an envelope over [MaxEnvelopeSize]; [ErrMalformed] for bad
// JSON, unknown fields or trailing data; [ErrUntrustedKey] for a key id not in
// trusted; [ErrSignature] for a missing or wrong signature.
func Open(envelopeBytes []byte, trusted KeySet) (Release, error) {
	if len(envelopeBytes) > MaxEnvelopeSize {
		return Release{}, fmt.Errorf("open release: envelope of %d bytes exceeds the limit %d: %w", len(envelopeBytes), MaxEnvelopeSize, ErrSize)
	}
	var env envelope
	if err := decodeStrict(envelopeBytes, &env); err != nil {
		return Release{}, fmt.Errorf("open release: %w envelope: %v", ErrMalformed, err)
	}
	if env.KeyID == "" {
		return Release{}, fmt.Errorf("open release: no key id: %w", ErrUntrustedKey)
	}
	pub, ok := trusted.keys[env.KeyID]
	if !ok {
		return Release{}, fmt.Errorf("open release: key %q is not among %d trusted keys: %w", env.KeyID, trusted.Len(), ErrUntrustedKey)
	}
	if len(env.Sig) == 0 {
		return Release{}, fmt.Errorf("open release: unsigned: %w", ErrSignature)
	}
	if len(env.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, signedBytes(env.Payload), env.Sig) {
		return Release{}, fmt.Errorf("open release: signature by key %s does not verify: %w", env.KeyID, ErrSignature)
	}
	r, err := decodeRelease(env.Payload)
	if err != nil {
		return Release{}, fmt.Errorf("open release: %w", err)
	}
	return r, nil
}

// decodeRelease decodes and validates a signed payload.
func decodeRelease(payload []byte) (Release, error) {
	var r Release
	if err := decodeStrict(payload, &r); err != nil {
		return Release{}, fmt.Errorf("%w release: %v", ErrMalformed, err)
	}
	if err := r.Validate(); err != nil {
		return Release{}, err
	}
	return r, nil
}

// decodeStrict decodes exactly one JSON value into v, rejecting unknown
// fields and anything after the value.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// CheckFresh checks r against the agent's clock and the sequence of the
// release it has installed for the app (0 for none). Expiry stops a captured
// envelope from being replayed to a new agent forever; the sequence stops it
// being replayed to one that has moved on.
func (r Release) CheckFresh(now time.Time, installed uint64) error {
	if !now.Before(r.Expires) {
		return fmt.Errorf("release %s@%d expired at %s (now %s): %w",
			r.App, r.Sequence, r.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), ErrExpired)
	}
	if r.Sequence <= installed {
		return fmt.Errorf("release %s: sequence %d is not above installed sequence %d: %w", r.App, r.Sequence, installed, ErrDowngrade)
	}
	return nil
}

// HasModule reports whether r carries a wasm module. An origin app's
// release does not, so there is nothing to fetch, store or compile.
func (r Release) HasModule() bool { return r.Manifest.Origin == nil }

// CheckBytes checks that b is the module r signs for: its size ([ErrSize]),
// then its digest ([ErrDigest]), then that it is a wasm module ([ErrNotWasm]).
// For a release without a module, b must be empty ([ErrSize]).
func (r Release) CheckBytes(b []byte) error {
	if !r.HasModule() {
		if len(b) != 0 {
			return fmt.Errorf("release %s@%d: origin app has no module, got %d bytes: %w", r.App, r.Sequence, len(b), ErrSize)
		}
		return nil
	}
	if int64(len(b)) != r.Size || int64(len(b)) > int64(MaxArtifactSize) {
		return fmt.Errorf("release %s@%d: artifact is %d bytes, signed size is %d: %w", r.App, r.Sequence, len(b), r.Size, ErrSize)
	}
	if d := Digest(b); d != r.Digest {
		return fmt.Errorf("release %s@%d: artifact digest %s, signed digest %s: %w", r.App, r.Sequence, d, r.Digest, ErrDigest)
	}
	if err := CheckWasm(b); err != nil {
		return fmt.Errorf("release %s@%d: %w", r.App, r.Sequence, err)
	}
	return nil
}

// wasmHeader is the binary module magic "\0asm" followed by version 1.
const wasmHeader = "\x00asm\x01\x00\x00\x00"

// CheckWasm cheaply checks that b starts like a WebAssembly version 1 binary
// module. It does not validate the module: the runtime does when compiling.
func CheckWasm(b []byte) error {
	if !bytes.HasPrefix(b, []byte(wasmHeader)) {
		return fmt.Errorf("missing the \\0asm version 1 header: %w", ErrNotWasm)
	}
	return nil
}

// Validate checks that r is well-formed: the app matches the manifest name,
// the digest and size are well-formed (empty and 0 exactly when the manifest
// is an origin app's), the release expires after it is issued, and the
// manifest is valid. Errors wrap [ErrMalformed], or [ErrSize]
// for a size over [MaxArtifactSize].
func (r Release) Validate() error {
	var p problems
	if r.App != r.Manifest.Name {
		p.add("app %q: does not match manifest name %q", r.App, r.Manifest.Name)
	}
	if r.Sequence == 0 {
		p.add("sequence: must be at least 1")
	}
	switch {
	case !r.HasModule():
		if r.Digest != "" {
			p.add("digest %q: an origin app has no module; want none", r.Digest)
		}
		if r.Size != 0 {
			p.add("size %d: an origin app has no module; want 0", r.Size)
		}
	default:
		if hexPart, ok := strings.CutPrefix(r.Digest, digestPrefix); !ok || !isLowerHex(hexPart, 2*sha256.Size) {
			p.add("digest %q: want \"sha256:\" and 64 lower-case hex digits", r.Digest)
		}
		if r.Size <= 0 {
			p.add("size %d: must be positive", r.Size)
		}
	}
	switch {
	case r.Issued.IsZero():
		p.add("issued: required")
	case r.Expires.IsZero():
		p.add("expires: required")
	case !r.Expires.After(r.Issued):
		p.add("expires %s: not after issued %s", r.Expires.Format(time.RFC3339), r.Issued.Format(time.RFC3339))
	}
	if err := r.Manifest.Validate(); err != nil {
		// The manifest error already says "malformed manifest"; keep its text.
		p.add("%s", strings.TrimPrefix(err.Error(), ErrMalformed.Error()+" "))
	}
	if err := p.err("release"); err != nil {
		return err
	}
	if r.Size > int64(MaxArtifactSize) {
		return fmt.Errorf("release %s@%d: size %d exceeds the limit %s: %w", r.App, r.Sequence, r.Size, MaxArtifactSize, ErrSize)
	}
	return nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}
