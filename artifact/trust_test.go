package artifact

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"
)

func TestPublisherLists(t *testing.T) {
	root, _ := GenerateKey()
	other, _ := GenerateKey()
	pubKey, _ := GenerateKey()
	roots := NewKeySet(root.Public().(ed25519.PublicKey))
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	list := Publishers{Sequence: 2, Issued: now, Expires: now.Add(24 * time.Hour),
		Keys: []string{FormatPublicKey(pubKey.Public().(ed25519.PublicKey))}}
	env, err := SignPublishers(list, root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenPublishers(env, roots)
	if err != nil {
		t.Fatal(err)
	}
	if got.KeySet().Len() != 1 {
		t.Fatalf("keys = %v", got.Keys)
	}
	// A release signature and a list signature are not interchangeable,
	// even by the same key.
	rel := Release{App: "a", Sequence: 1, Digest: Digest([]byte("\x00asm\x01\x00\x00\x00")), Size: 8, Issued: now, Expires: now.Add(time.Hour),
		Manifest: Manifest{Name: "a", Version: "1.0.0", Wasm: "a.wasm", Routes: []Route{{Path: "/"}}}}
	relEnv, err := Sign(rel, root)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  []byte
		want error
	}{
		{"signed by another key", mustSignPublishers(t, list, other), ErrUntrustedKey},
		{"a release passed off as a list", relEnv, ErrSignature},
		{"not JSON", []byte("{"), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := OpenPublishers(tt.env, roots); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := Open(env, roots); !errors.Is(err, ErrSignature) && !errors.Is(err, ErrMalformed) {
		t.Fatalf("a list passed off as a release: %v", err)
	}
	if err := got.CheckFresh(now, 2); !errors.Is(err, ErrDowngrade) {
		t.Fatalf("replayed list: %v", err)
	}
	if err := got.CheckFresh(now.Add(25*time.Hour), 1); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired list: %v", err)
	}
	if err := got.CheckFresh(now, 1); err != nil {
		t.Fatalf("fresh list: %v", err)
	}
}

func mustSignPublishers(t *testing.T, p Publishers, k ed25519.PrivateKey) []byte {
	env, err := SignPublishers(p, k)
	if err != nil {
		t.Fatal(err)
	}
	return env
}
