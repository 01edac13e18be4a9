package artifact

import "fmt"

// Peek decodes an envelope's release without verifying its signature. It
// is for display and for numbering the next release, never for deciding
// what to run: agents use [Open].
func Peek(envelopeBytes []byte) (Release, error) {
	if len(envelopeBytes) > MaxEnvelopeSize {
		return Release{}, fmt.Errorf("peek release: envelope of %d bytes exceeds the limit %d: %w", len(envelopeBytes), MaxEnvelopeSize, ErrSize)
	}
	var env envelope
	if err := decodeStrict(envelopeBytes, &env); err != nil {
		return Release{}, fmt.Errorf("peek release: %w envelope: %v", ErrMalformed, err)
	}
	var r Release
	if err := decodeStrict(env.Payload, &r); err != nil {
		return Release{}, fmt.Errorf("peek release: %w release: %v", ErrMalformed, err)
	}
	return r, nil
}

// PeekKeyID returns the key ID an envelope claims to be signed by, or ""
// when it cannot be decoded.
func PeekKeyID(envelopeBytes []byte) string {
	var env envelope
	if len(envelopeBytes) > MaxEnvelopeSize || decodeStrict(envelopeBytes, &env) != nil {
		return ""
	}
	return env.KeyID
}
