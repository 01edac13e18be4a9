package artifact

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	gosync "sync"
	"testing"
	"time"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testWasm is the smallest valid module (header only) plus a custom section,
// so that tests can change a byte without changing the header.
var testWasm = []byte("\x00asm\x01\x00\x00\x00\x00\x04\x01xyz")

// fixture is a publisher key, the agent's trust in it, and a release.
type fixture struct {
	key     ed25519.PrivateKey
	trusted KeySet
	release Release
}

func newFixture(t testing.TB) fixture {
	t.Helper()
	key := testKey(t, 1)
	return fixture{
		key:     key,
		trusted: NewKeySet(key.Public().(ed25519.PublicKey)),
		release: newRelease(7, testWasm),
	}
}

// testKey returns a deterministic key, so failures reproduce.
func testKey(t testing.TB, seed byte) ed25519.PrivateKey {
	t.Helper()
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func newRelease(seq uint64, wasm []byte) Release {
	return Release{
		App:      "hello",
		Sequence: seq,
		Digest:   Digest(wasm),
		Size:     int64(len(wasm)),
		Issued:   testNow.Add(-time.Hour),
		Expires:  testNow.Add(24 * time.Hour),
		Manifest: validManifest().WithDefaults(),
	}
}

func sign(t testing.TB, r Release, key ed25519.PrivateKey) []byte {
	t.Helper()
	env, err := Sign(r, key)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return env
}

// rawEnvelope builds an envelope around arbitrary payload bytes, for attacks
// that Sign itself refuses to produce.
func rawEnvelope(t testing.TB, payload []byte, keyID string, sig []byte) []byte {
	t.Helper()
	b, err := json.Marshal(envelope{Payload: payload, KeyID: keyID, Sig: sig})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeEnvelope(t testing.TB, b []byte) envelope {
	t.Helper()
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	return env
}

// install runs the checks an agent runs, in the order it runs them.
func install(env []byte, trusted KeySet, now time.Time, installed uint64, wasm []byte) (Release, error) {
	r, err := Open(env, trusted)
	if err != nil {
		return Release{}, err
	}
	if err := r.CheckFresh(now, installed); err != nil {
		return Release{}, err
	}
	if err := r.CheckBytes(wasm); err != nil {
		return Release{}, err
	}
	return r, nil
}

func TestSignOpenRoundTrip(t *testing.T) {
	f := newFixture(t)
	env := sign(t, f.release, f.key)
	got, err := install(env, f.trusted, testNow, 6, testWasm)
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	want, _ := json.Marshal(f.release)
	gotJSON, _ := json.Marshal(got)
	if !bytes.Equal(gotJSON, want) {
		t.Errorf("opened release:\n%s\nwant:\n%s", gotJSON, want)
	}
	if !got.Issued.Equal(f.release.Issued) || !got.Expires.Equal(f.release.Expires) {
		t.Errorf("times changed: %v %v", got.Issued, got.Expires)
	}
	e := decodeEnvelope(t, env)
	if e.KeyID != KeyID(f.key.Public().(ed25519.PublicKey)) {
		t.Errorf("key_id = %q", e.KeyID)
	}
	if !bytes.Contains(env, []byte(`"payload":"`)) || !bytes.Contains(env, []byte(`"sig":"`)) {
		t.Errorf("envelope is not in the documented form: %s", env)
	}
}

// TestAttacks has a named case for every way an envelope or artifact can be
// forged, replayed or damaged; each must fail with its own sentinel.
func TestAttacks(t *testing.T) {
	f := newFixture(t)
	good := sign(t, f.release, f.key)
	other := testKey(t, 2)
	otherSigned := sign(t, f.release, other)
	trustedID := KeyID(f.key.Public().(ed25519.PublicKey))
	payload := decodeEnvelope(t, good).Payload
	sig := decodeEnvelope(t, good).Sig

	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 1
		return c
	}
	notWasm := []byte("#!/bin/sh\necho pwned\n")
	signedWith := func(r Release) []byte { return sign(t, r, f.key) }
	signRaw := func(p []byte) []byte {
		return rawEnvelope(t, p, trustedID, ed25519.Sign(f.key, signedBytes(p)))
	}

	for _, tc := range []struct {
		name      string
		env       []byte
		trusted   *KeySet // nil: the fixture's
		installed uint64
		now       time.Time
		wasm      []byte
		want      error
		reason    string
	}{
		{name: "valid", env: good, installed: 6},
		{name: "valid first install", env: good, installed: 0},
		{name: "unsigned", env: rawEnvelope(t, payload, trustedID, nil), want: ErrSignature, reason: "signature"},
		{name: "unsigned without key id", env: rawEnvelope(t, payload, "", nil), want: ErrUntrustedKey, reason: "untrusted_key"},
		{name: "untrusted key", env: otherSigned, want: ErrUntrustedKey, reason: "untrusted_key"},
		{name: "no trusted keys", env: good, trusted: &KeySet{}, want: ErrUntrustedKey, reason: "untrusted_key"},
		{name: "tampered payload", env: rawEnvelope(t, bytes.Replace(payload, []byte(`"sequence":7`), []byte(`"sequence":9`), 1), trustedID, sig), want: ErrSignature, reason: "signature"},
		{name: "tampered payload bit", env: rawEnvelope(t, flip(payload, len(payload)/2), trustedID, sig), want: ErrSignature, reason: "signature"},
		{name: "tampered signature", env: rawEnvelope(t, payload, trustedID, flip(sig, 10)), want: ErrSignature, reason: "signature"},
		{name: "truncated signature", env: rawEnvelope(t, payload, trustedID, sig[:32]), want: ErrSignature, reason: "signature"},
		{name: "key id swapped to a trusted one", env: rawEnvelope(t, payload, trustedID, decodeEnvelope(t, otherSigned).Sig), want: ErrSignature, reason: "signature"},
		{name: "signature without domain separation", env: rawEnvelope(t, payload, trustedID, ed25519.Sign(f.key, payload)), want: ErrSignature, reason: "signature"},
		{name: "downgrade equal sequence", env: good, installed: 7, want: ErrDowngrade, reason: "downgrade"},
		{name: "downgrade lower sequence", env: good, installed: 8, want: ErrDowngrade, reason: "downgrade"},
		{name: "expired", env: good, now: f.release.Expires.Add(time.Second), want: ErrExpired, reason: "expired"},
		{name: "expired at the instant", env: good, now: f.release.Expires, want: ErrExpired, reason: "expired"},
		{name: "digest mismatch", env: good, wasm: flip(testWasm, len(testWasm)-1), want: ErrDigest, reason: "digest"},
		{name: "oversize artifact", env: good, wasm: append(bytes.Clone(testWasm), 0), want: ErrSize, reason: "size"},
		{name: "truncated artifact", env: good, wasm: testWasm[:8], want: ErrSize, reason: "size"},
		{name: "not wasm", env: signedWith(newRelease(7, notWasm)), wasm: notWasm, want: ErrNotWasm, reason: "not_wasm"},
		{name: "wasm version 2", env: signedWith(newRelease(7, []byte("\x00asm\x02\x00\x00\x00"))), wasm: []byte("\x00asm\x02\x00\x00\x00"), want: ErrNotWasm, reason: "not_wasm"},
		{name: "trailing garbage", env: append(bytes.Clone(good), "x"...), want: ErrMalformed, reason: "malformed"},
		{name: "trailing second value", env: append(bytes.Clone(good), good...), want: ErrMalformed, reason: "malformed"},
		{name: "oversize envelope", env: append(bytes.Clone(good), bytes.Repeat([]byte(" "), MaxEnvelopeSize)...), want: ErrSize, reason: "size"},
		{name: "not json", env: []byte("hello"), want: ErrMalformed, reason: "malformed"},
		{name: "empty", env: nil, want: ErrMalformed, reason: "malformed"},
		{name: "unknown envelope field", env: bytes.Replace(good, []byte(`{"payload"`), []byte(`{"alg":"none","payload"`), 1), want: ErrMalformed, reason: "malformed"},
		{name: "payload not base64", env: bytes.Replace(good, []byte(`"payload":"`), []byte(`"payload":"!`), 1), want: ErrMalformed, reason: "malformed"},
		{name: "signed payload with unknown field", env: signRaw(bytes.Replace(payload, []byte(`{"app"`), []byte(`{"admin":true,"app"`), 1)), want: ErrMalformed, reason: "malformed"},
		{name: "signed payload with trailing data", env: signRaw(append(bytes.Clone(payload), "{}"...)), want: ErrMalformed, reason: "malformed"},
		{name: "signed payload not json", env: signRaw([]byte("not json")), want: ErrMalformed, reason: "malformed"},
		{name: "signed release for another app", env: signRaw(bytes.Replace(payload, []byte(`"app":"hello"`), []byte(`"app":"other"`), 1)), want: ErrMalformed, reason: "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trusted := f.trusted
			if tc.trusted != nil {
				trusted = *tc.trusted
			}
			now := tc.now
			if now.IsZero() {
				now = testNow
			}
			wasm := tc.wasm
			if wasm == nil {
				wasm = testWasm
			}
			_, err := install(tc.env, trusted, now, tc.installed, wasm)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if got := Reason(err); got != tc.reason {
				t.Errorf("Reason = %q, want %q", got, tc.reason)
			}
		})
	}
}

func TestCheckFreshMessages(t *testing.T) {
	r := newRelease(5, testWasm)
	for _, tc := range []struct {
		installed uint64
		now       time.Time
		want      string
	}{
		{5, testNow, "release hello: sequence 5 is not above installed sequence 5: downgrade"},
		{9, testNow, "release hello: sequence 5 is not above installed sequence 9: downgrade"},
		{0, r.Expires, "release hello@5 expired at 2026-03-02T12:00:00Z (now 2026-03-02T12:00:00Z): release expired"},
	} {
		err := r.CheckFresh(tc.now, tc.installed)
		if err == nil || err.Error() != tc.want {
			t.Errorf("CheckFresh(%v, %d) = %v, want %q", tc.now, tc.installed, err, tc.want)
		}
	}
	if err := r.CheckFresh(testNow, 4); err != nil {
		t.Errorf("CheckFresh(installed 4) = %v", err)
	}
}

func TestCheckBytesMessages(t *testing.T) {
	r := newRelease(3, testWasm)
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"size", testWasm[:4], fmt.Sprintf("release hello@3: artifact is 4 bytes, signed size is %d: bad size", len(testWasm))},
		{"digest", bytes.Repeat([]byte{0}, len(testWasm)), fmt.Sprintf("release hello@3: artifact digest %s, signed digest %s: digest mismatch", Digest(make([]byte, len(testWasm))), r.Digest)},
	} {
		if err := r.CheckBytes(tc.b); err == nil || err.Error() != tc.want {
			t.Errorf("%s: CheckBytes = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestReleaseValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Release)
		want   string
	}{
		{"app mismatch", func(r *Release) { r.App = "other" }, `malformed release: app "other": does not match manifest name "hello"`},
		{"zero sequence", func(r *Release) { r.Sequence = 0 }, `malformed release: sequence: must be at least 1`},
		{"upper-case digest", func(r *Release) { r.Digest = strings.ToUpper(r.Digest) }, `malformed release: digest "SHA256:` + strings.ToUpper(r0().Digest[7:]) + `": want "sha256:" and 64 lower-case hex digits`},
		{"short digest", func(r *Release) { r.Digest = "sha256:abc" }, `malformed release: digest "sha256:abc": want "sha256:" and 64 lower-case hex digits`},
		{"zero size", func(r *Release) { r.Size = 0 }, `malformed release: size 0: must be positive`},
		{"expires before issued", func(r *Release) { r.Expires = r.Issued }, `malformed release: expires 2026-03-01T11:00:00Z: not after issued 2026-03-01T11:00:00Z`},
		{"no issued", func(r *Release) { r.Issued = time.Time{} }, `malformed release: issued: required`},
		{"bad manifest", func(r *Release) { r.Manifest.Wasm = "../x.wasm" }, `malformed release: manifest: wasm "../x.wasm": must not leave the app directory`},
		{"too big", func(r *Release) { r.Size = int64(MaxArtifactSize) + 1 }, `release hello@1: size 268435457 exceeds the limit 256MiB: bad size`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := r0()
			tc.change(&r)
			err := r.Validate()
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Validate = %v\nwant %s", err, tc.want)
			}
			if _, err := Sign(r, testKey(t, 1)); err == nil {
				t.Error("Sign accepted an invalid release")
			}
		})
	}
}

func r0() Release { return newRelease(1, testWasm) }

func TestSignRejectsBadKey(t *testing.T) {
	if _, err := Sign(r0(), ed25519.PrivateKey{1, 2, 3}); err == nil {
		t.Fatal("Sign accepted a 3-byte key")
	}
}

func TestSignOversizeEnvelope(t *testing.T) {
	r := r0()
	r.Manifest.Capabilities.Env = map[string]string{"BIG": strings.Repeat("x", MaxEnvelopeSize)}
	if _, err := Sign(r, testKey(t, 1)); !errors.Is(err, ErrSize) {
		t.Fatalf("Sign = %v, want ErrSize", err)
	}
}

func TestDigest(t *testing.T) {
	if got, want := Digest(nil), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; got != want {
		t.Errorf("Digest(nil) = %s, want %s", got, want)
	}
}

func TestCheckWasm(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("\x00asm"), []byte("\x00asm\x01\x00\x00"), []byte("\x00ASM\x01\x00\x00\x00"), []byte("\x00asm\x0d\x00\x01\x00")} {
		if err := CheckWasm(b); !errors.Is(err, ErrNotWasm) {
			t.Errorf("CheckWasm(%q) = %v, want ErrNotWasm", b, err)
		}
	}
	if err := CheckWasm([]byte(wasmHeader)); err != nil {
		t.Errorf("CheckWasm(header) = %v", err)
	}
}

func TestReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("boom"), "other"},
		{fmt.Errorf("x: %w", ErrSignature), "signature"},
		{fmt.Errorf("x: %w", ErrUntrustedKey), "untrusted_key"},
		{fmt.Errorf("x: %w", ErrExpired), "expired"},
		{fmt.Errorf("x: %w", ErrDowngrade), "downgrade"},
		{fmt.Errorf("x: %w", ErrDigest), "digest"},
		{fmt.Errorf("x: %w", ErrSize), "size"},
		{fmt.Errorf("x: %w", ErrNotWasm), "not_wasm"},
		{fmt.Errorf("x: %w", ErrMalformed), "malformed"},
	} {
		if got := Reason(tc.err); got != tc.want {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestOpenConcurrent hammers one KeySet from many goroutines; run with -race.
func TestOpenConcurrent(t *testing.T) {
	f := newFixture(t)
	env := sign(t, f.release, f.key)
	var wg gosync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := Open(env, f.trusted); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
