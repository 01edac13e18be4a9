package artifact

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzOpen checks that envelope decoding never panics and that anything it
// accepts is a valid release.
func FuzzOpen(f *testing.F) {
	fx := newFixture(f)
	good := sign(f, fx.release, fx.key)
	payload := decodeEnvelope(f, good).Payload
	for _, seed := range [][]byte{
		good,
		append(bytes.Clone(good), '}'),
		rawEnvelope(f, payload, KeyID(fx.key.Public().(ed25519.PublicKey)), nil),
		[]byte(`{}`),
		[]byte(`{"payload":null,"key_id":null,"sig":null}`),
		[]byte(`{"payload":"","key_id":"","sig":""}`),
		[]byte(`[]`),
		[]byte(`"`),
		nil,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, env []byte) {
		// Peek shares the envelope decoder; it must not panic either.
		_, _ = Peek(env)
		_ = PeekKeyID(env)
		r, err := Open(env, fx.trusted)
		if err != nil {
			if Reason(err) == "other" {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("Open accepted an invalid release: %v", err)
		}
	})
}

// FuzzDecodeRelease reaches the payload decoder directly, since FuzzOpen
// cannot forge the signature that guards it.
func FuzzDecodeRelease(f *testing.F) {
	fx := newFixture(f)
	payload := decodeEnvelope(f, sign(f, fx.release, fx.key)).Payload
	f.Add(payload)
	f.Add([]byte(`{"app":"a","sequence":1}`))
	f.Add([]byte(`{"manifest":{"limits":{"memory":"1GiB","timeout":"1s"}}}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := decodeRelease(p)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("decodeRelease accepted an invalid release: %v", err)
		}
		// What decodes must survive the publisher's encoding unchanged.
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeRelease(b); err != nil {
			t.Fatalf("re-encoded release does not decode: %v\n%s", err, b)
		}
	})
}

// FuzzParseManifest checks that manifest parsing never panics and that an
// accepted manifest is valid and survives a TOML round trip unchanged.
func FuzzParseManifest(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "manifest", dir, "*.toml"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("ParseManifest accepted an invalid manifest: %v", err)
		}
		if err := m.WithDefaults().Validate(); err != nil {
			t.Fatalf("defaults broke a valid manifest: %v", err)
		}
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(m); err != nil {
			t.Fatalf("encode: %v", err)
		}
		m2, err := ParseManifest(buf.Bytes())
		if err != nil {
			t.Fatalf("re-encoded manifest does not parse: %v\n%s", err, buf.Bytes())
		}
		j1, _ := json.Marshal(m)
		j2, _ := json.Marshal(m2)
		if !bytes.Equal(j1, j2) {
			t.Fatalf("round trip changed the manifest:\n%s\n%s", j1, j2)
		}
	})
}
