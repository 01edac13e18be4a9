package artifact

import "errors"

// Sentinel errors that callers branch on. Errors returned by this package wrap
// at most one of them, with context naming the app, field or limit involved.
var (
	// ErrSignature means an envelope is unsigned or its signature does not verify.
	ErrSignature = errors.New("invalid signature")
	// ErrUntrustedKey means an envelope names a key that is not in the trusted set.
	ErrUntrustedKey = errors.New("untrusted key")
	// ErrExpired means a release is past its expiry time.
	ErrExpired = errors.New("release expired")
	// ErrDowngrade means a release's sequence is not above the installed one (downgrade or replay).
	ErrDowngrade = errors.New("downgrade")
	// ErrDigest means artifact bytes do not match the signed digest.
	ErrDigest = errors.New("digest mismatch")
	// ErrSize means a size is over its limit or differs from the signed size.
	ErrSize = errors.New("bad size")
	// ErrNotWasm means artifact bytes are not a WebAssembly version 1 binary module.
	ErrNotWasm = errors.New("not a wasm module")
	// ErrMalformed means an envelope, release or manifest is not well-formed or not valid.
	ErrMalformed = errors.New("malformed")
)

// Reason maps an error to a short, stable label for metrics and logs:
// "signature", "untrusted_key", "expired", "downgrade", "digest", "size",
// "not_wasm", "malformed", or "other". It returns "" for a nil error.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrRevoked):
		return "revoked"
	case errors.Is(err, ErrSignature):
		return "signature"
	case errors.Is(err, ErrUntrustedKey):
		return "untrusted_key"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrDowngrade):
		return "downgrade"
	case errors.Is(err, ErrDigest):
		return "digest"
	case errors.Is(err, ErrSize):
		return "size"
	case errors.Is(err, ErrNotWasm):
		return "not_wasm"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	default:
		return "other"
	}
}
