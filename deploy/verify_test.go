package deploy

import (
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tern-edge/tern/artifact"
	ternsync "github.com/tern-edge/tern/sync"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testKey(t testing.TB, seed byte) ed25519.PrivateKey {
	t.Helper()
	return ed25519.NewKeyFromSeed(slices.Repeat([]byte{seed}, ed25519.SeedSize))
}

// signed is a release of app at seq with module tag, signed by key.
func signed(t testing.TB, key ed25519.PrivateKey, app string, seq uint64, tag string, ttl time.Duration) []byte {
	t.Helper()
	wasm := append([]byte("\x00asm\x01\x00\x00\x00"), tag...)
	env, err := artifact.Sign(artifact.Release{
		App: app, Sequence: seq, Digest: artifact.Digest(wasm), Size: int64(len(wasm)),
		Issued: t0, Expires: t0.Add(ttl),
		Manifest: artifact.Manifest{Name: app, Version: "1.0.0", Wasm: "m.wasm", Routes: []artifact.Route{{Path: "/" + app}}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestCheckHistory names each way a hub entry can fail to verify, as an
// agent would see it.
func TestCheckHistory(t *testing.T) {
	key, other := testKey(t, 1), testKey(t, 2)
	trusted := artifact.NewKeySet(key.Public().(ed25519.PublicKey))
	good1 := signed(t, key, "a", 1, "one", time.Hour)
	good2 := signed(t, key, "a", 2, "two", time.Hour)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	tests := []struct {
		name    string
		entries [][]byte
		times   []time.Duration
		want    []string // per entry: "ok", "repeat" or the refusal reason
	}{
		{"verified chain", [][]byte{good1, good2}, nil, []string{"ok", "ok"}},
		{"untrusted key", [][]byte{good1, signed(t, other, "a", 2, "evil", time.Hour)}, nil, []string{"ok", "untrusted_key"}},
		{"another app's release", [][]byte{signed(t, key, "b", 1, "b", time.Hour)}, nil, []string{"malformed"}},
		{"replay of an older release", [][]byte{good1, good2, good1}, nil, []string{"ok", "ok", "downgrade"}},
		{"current written back", [][]byte{good1, good2, signed(t, other, "a", 3, "evil", time.Hour), good2}, nil, []string{"ok", "ok", "untrusted_key", "repeat"}},
		{"stored after expiry", [][]byte{good1, signed(t, key, "a", 2, "late", time.Minute)}, []time.Duration{0, time.Hour}, []string{"ok", "expired"}},
		{"garbage", [][]byte{good1, []byte("{")}, nil, []string{"ok", "malformed"}},
		{"unsigned", [][]byte{[]byte(`{"payload":"e30=","key_id":"` + artifact.KeyID(key.Public().(ed25519.PublicKey)) + `","sig":""}`)}, nil, []string{"signature"}},
		// An entry that does not verify is not the release before the
		// next: sequence 2 after a forged 5 is still an upgrade.
		{"forged high sequence", [][]byte{good1, signed(t, other, "a", 5, "evil", time.Hour), good2}, nil, []string{"ok", "untrusted_key", "ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in []ternsync.Entry
			for i, env := range tt.entries {
				var d time.Duration
				if i < len(tt.times) {
					d = tt.times[i]
				}
				in = append(in, ternsync.Entry{App: "a", Envelope: env, Revision: uint64(i + 1), Updated: at(d)})
			}
			var got []string
			for _, e := range CheckHistory("a", in, trusted) {
				switch {
				case e.Err != nil:
					if !errors.Is(e.Err, ErrUnverified) {
						t.Errorf("revision %d: %v does not wrap ErrUnverified", e.Revision, e.Err)
					}
					got = append(got, artifact.Reason(e.Err))
				case e.Repeat:
					got = append(got, "repeat")
				default:
					got = append(got, "ok")
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("CheckHistory = %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzCheckHistory feeds the publisher-side reader of hub entries
// arbitrary envelopes: it must not panic, and whatever it calls verified
// must open with a trusted key, name the app, and never go down in
// sequence.
func FuzzCheckHistory(f *testing.F) {
	key := testKey(f, 1)
	trusted := artifact.NewKeySet(key.Public().(ed25519.PublicKey))
	good1 := signed(f, key, "a", 1, "one", time.Hour)
	good2 := signed(f, key, "a", 2, "two", time.Hour)
	f.Add(good1, good2)
	f.Add(good2, good1)
	f.Add(good1, signed(f, testKey(f, 2), "a", 2, "evil", time.Hour))
	f.Add([]byte(`{"payload":"","key_id":"","sig":""}`), []byte("null"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		in := []ternsync.Entry{
			{App: "a", Envelope: a, Revision: 1, Updated: t0},
			{App: "a", Envelope: b, Revision: 2, Updated: t0},
			{App: "a", Envelope: a, Revision: 3, Updated: t0},
		}
		var last uint64
		for _, e := range CheckHistory("a", in, trusted) {
			if e.Err != nil {
				continue
			}
			rel, err := artifact.Open(in[e.Revision-1].Envelope, trusted)
			if err != nil || rel.App != "a" || !releaseEqual(rel, e.Release) {
				t.Fatalf("revision %d verified but opens as %+v, %v", e.Revision, rel, err)
			}
			if rel.Sequence < last || (rel.Sequence == last && !e.Repeat) {
				t.Fatalf("revision %d: verified sequence %d after %d", e.Revision, rel.Sequence, last)
			}
			last = rel.Sequence
		}
	})
}

func releaseEqual(a, b artifact.Release) bool {
	return a.App == b.App && a.Sequence == b.Sequence && a.Digest == b.Digest && a.Size == b.Size
}
