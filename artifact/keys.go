package artifact

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

const (
	publicKeyPrefix = "ed25519:"
	pemPrivateKey   = "PRIVATE KEY"
)

// GenerateKey returns a new publisher signing key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return priv, nil
}

// MarshalPrivateKey encodes k as a PEM "PRIVATE KEY" block (PKCS #8), the
// form openssl and other tools read. It returns nil if k is not an ed25519
// private key of the right length.
func MarshalPrivateKey(k ed25519.PrivateKey) []byte {
	if len(k) != ed25519.PrivateKeySize {
		return nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der})
}

// ParsePrivateKey decodes a PEM "PRIVATE KEY" block holding a PKCS #8
// ed25519 key, as written by [MarshalPrivateKey] or openssl.
func ParsePrivateKey(pemBytes []byte) (ed25519.PrivateKey, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("parse private key: no PEM block")
	}
	if block.Type != pemPrivateKey {
		return nil, fmt.Errorf("parse private key: PEM block is %q, want %q", block.Type, pemPrivateKey)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("parse private key: data after the PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("parse private key: %T is not an ed25519 key", key)
	}
	return priv, nil
}

// ReadPrivateKeyFile reads a private key written by [MarshalPrivateKey].
func ReadPrivateKeyFile(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	k, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("read private key %s: %w", path, err)
	}
	return k, nil
}

// FormatPublicKey returns p as one line, "ed25519:" followed by unpadded
// URL-safe base64, ready to paste into an agent's trusted keys.
func FormatPublicKey(p ed25519.PublicKey) string {
	return publicKeyPrefix + base64.RawURLEncoding.EncodeToString(p)
}

// ParsePublicKey decodes a key written by [FormatPublicKey]. Surrounding
// white space is ignored.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	enc, ok := strings.CutPrefix(s, publicKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("parse public key %q: want prefix %q", s, publicKeyPrefix)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("parse public key %q: %w", s, err)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("parse public key %q: %d bytes, want %d", s, len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// KeyID returns the short identifier of p named in envelopes: the first 16
// hex digits of the SHA-256 of the key.
func KeyID(p ed25519.PublicKey) string {
	sum := sha256.Sum256(p)
	return hex.EncodeToString(sum[:8])
}

// KeySet is a set of trusted publisher public keys, looked up by [KeyID]. It
// is immutable once built, so it is safe for concurrent use; the zero KeySet
// trusts nothing.
type KeySet struct {
	keys map[string]ed25519.PublicKey
}

// NewKeySet returns a set trusting keys. Keys of the wrong length are left
// out: they could never verify a signature.
func NewKeySet(keys ...ed25519.PublicKey) KeySet {
	s := KeySet{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for _, k := range keys {
		if len(k) == ed25519.PublicKeySize {
			s.keys[KeyID(k)] = slices.Clone(k)
		}
	}
	return s
}

// With returns a set trusting the keys of s and keys; s is unchanged.
func (s KeySet) With(keys ...ed25519.PublicKey) KeySet {
	out := NewKeySet(keys...)
	for id, k := range s.keys {
		out.keys[id] = k
	}
	return out
}

// ParseKeySet parses one key per line in [FormatPublicKey] form. Blank lines
// and lines starting with "#" are skipped; an error names the line (from 1).
func ParseKeySet(lines []string) (KeySet, error) {
	var keys []ed25519.PublicKey
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := ParsePublicKey(line)
		if err != nil {
			return KeySet{}, fmt.Errorf("trusted key %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return NewKeySet(keys...), nil
}

// Len returns the number of distinct trusted keys.
func (s KeySet) Len() int { return len(s.keys) }

// Has reports whether the set holds the key with this ID.
func (s KeySet) Has(id string) bool { _, ok := s.keys[id]; return ok }

// IDs returns the key ids in the set, sorted, for logs and status output.
func (s KeySet) IDs() []string {
	ids := make([]string, 0, len(s.keys))
	for id := range s.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
