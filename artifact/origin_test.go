package artifact

import (
	"crypto/ed25519"
	"errors"
	"testing"
)

// originRelease is a valid release of an origin app: no module.
func originRelease() Release {
	m := validManifest()
	m.Wasm = ""
	m.Origin = &Origin{Upstreams: []string{"http://127.0.0.1:8000"}}
	r := newRelease(4, nil)
	r.Digest, r.Size, r.Manifest = "", 0, m.WithDefaults()
	return r
}

func TestOriginReleaseRoundTrip(t *testing.T) {
	r := originRelease()
	if r.HasModule() {
		t.Fatal("an origin release claims a module")
	}
	if r.Manifest.Limits != (Limits{}) {
		t.Errorf("WithDefaults gave an origin app limits: %+v", r.Manifest.Limits)
	}
	key := testKey(t, 1)
	got, err := install(sign(t, r, key), NewKeySet(key.Public().(ed25519.PublicKey)), testNow, 3, nil)
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	if got.Manifest.Origin == nil || got.Manifest.Origin.Upstreams[0] != "http://127.0.0.1:8000" {
		t.Errorf("opened manifest lost its origin: %+v", got.Manifest)
	}
}

func TestOriginReleaseMessages(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Release)
		want   string
	}{
		{"digest", func(r *Release) { r.Digest = Digest(testWasm) }, `malformed release: digest "` + Digest(testWasm) + `": an origin app has no module; want none`},
		{"size", func(r *Release) { r.Size = 9 }, `malformed release: size 9: an origin app has no module; want 0`},
		{"wasm module without digest", func(r *Release) { r.Manifest.Origin, r.Manifest.Wasm = nil, "hello.wasm" }, `malformed release: digest "": want "sha256:" and 64 lower-case hex digits; size 0: must be positive`},
		{"no upstreams", func(r *Release) { r.Manifest.Origin = &Origin{} }, `malformed release: manifest: origin.upstreams: at least one upstream is required`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := originRelease()
			tc.change(&r)
			if err := r.Validate(); err == nil || err.Error() != tc.want {
				t.Fatalf("Validate = %v\nwant %s", err, tc.want)
			}
		})
	}
	r := originRelease()
	if err := r.CheckBytes(nil); err != nil {
		t.Errorf("CheckBytes(nil) = %v", err)
	}
	err := r.CheckBytes(testWasm)
	if want := "release hello@4: origin app has no module, got 14 bytes: bad size"; err == nil || err.Error() != want || !errors.Is(err, ErrSize) {
		t.Errorf("CheckBytes(module) = %v, want %q", err, want)
	}
}
