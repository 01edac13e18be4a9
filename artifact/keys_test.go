package artifact

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrivateKeyRoundTrip(t *testing.T) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := MarshalPrivateKey(k)
	if !bytes.HasPrefix(pemBytes, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Fatalf("not a PEM PRIVATE KEY block:\n%s", pemBytes)
	}
	got, err := ParsePrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(k) {
		t.Error("parsed key differs")
	}

	path := filepath.Join(t.TempDir(), "publisher.key")
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadPrivateKeyFile(path); err != nil || !got.Equal(k) {
		t.Errorf("ReadPrivateKeyFile = %v", err)
	}
	if MarshalPrivateKey(ed25519.PrivateKey{1}) != nil {
		t.Error("MarshalPrivateKey accepted a short key")
	}
}

func TestParsePrivateKeyErrors(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	good := MarshalPrivateKey(testKey(t, 1))
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "parse private key: no PEM block"},
		{"wrong type", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), `parse private key: PEM block is "PUBLIC KEY", want "PRIVATE KEY"`},
		{"ecdsa", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), "parse private key: *ecdsa.PrivateKey is not an ed25519 key"},
		{"trailing data", append(bytes.Clone(good), "junk"...), "parse private key: data after the PEM block"},
	} {
		if _, err := ParsePrivateKey(tc.in); err == nil || err.Error() != tc.want {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")})); err == nil {
		t.Error("garbage DER accepted")
	}
}

func TestReadPrivateKeyFileNamesPath(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.key")
	if _, err := ReadPrivateKeyFile(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("err = %v, want it to name %s", err, missing)
	}
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateKeyFile(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("err = %v, want it to name %s", err, bad)
	}
}

func TestPublicKeyFormat(t *testing.T) {
	pub := testKey(t, 1).Public().(ed25519.PublicKey)
	s := FormatPublicKey(pub)
	if !strings.HasPrefix(s, "ed25519:") || strings.ContainsAny(s, "=+/\n") || len(s) != len("ed25519:")+43 {
		t.Errorf("FormatPublicKey = %q", s)
	}
	got, err := ParsePublicKey("  " + s + "\n")
	if err != nil || !got.Equal(pub) {
		t.Errorf("ParsePublicKey = %v, %v", got, err)
	}
	for _, bad := range []string{"", s[len("ed25519:"):], "rsa:" + s[8:], s + "=", s[:len(s)-1], s + "AA", "ed25519:" + strings.Repeat("!", 43)} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) succeeded", bad)
		}
	}
	if id := KeyID(pub); len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("KeyID = %q", id)
	}
}

func TestKeySet(t *testing.T) {
	a := testKey(t, 1).Public().(ed25519.PublicKey)
	b := testKey(t, 2).Public().(ed25519.PublicKey)
	s, err := ParseKeySet([]string{"# publishers", "", FormatPublicKey(a), "  " + FormatPublicKey(b), FormatPublicKey(a)})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 {
		t.Errorf("Len = %d, want 2", s.Len())
	}
	if ids := s.IDs(); len(ids) != 2 || ids[0] > ids[1] {
		t.Errorf("IDs = %v", ids)
	}
	_, err = ParseKeySet([]string{FormatPublicKey(a), "ed25519:short"})
	if err == nil || !strings.HasPrefix(err.Error(), "trusted key 2: ") {
		t.Errorf("ParseKeySet error = %v, want it to name line 2", err)
	}
	if n := NewKeySet(a, ed25519.PublicKey{1, 2}).Len(); n != 1 {
		t.Errorf("NewKeySet kept a short key: Len = %d", n)
	}
	if (KeySet{}).Len() != 0 {
		t.Error("zero KeySet is not empty")
	}
	// With adds to a copy; the zero set takes keys too.
	one := NewKeySet(a)
	if both := one.With(b); both.Len() != 2 || !both.Has(KeyID(b)) || one.Len() != 1 {
		t.Errorf("With: %d keys, original %d", both.Len(), one.Len())
	}
	if z := (KeySet{}).With(a); z.Len() != 1 {
		t.Errorf("zero KeySet With: %d keys", z.Len())
	}
	// The set must not alias the caller's slice.
	c := bytes.Clone(a)
	s2 := NewKeySet(c)
	c[0] ^= 1
	if !s2.keys[KeyID(a)].Equal(a) {
		t.Error("KeySet aliases the caller's key")
	}
}
