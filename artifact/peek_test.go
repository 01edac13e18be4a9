package artifact

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
)

func TestPeek(t *testing.T) {
	f := newFixture(t)
	env := sign(t, f.release, f.key)

	r, err := Peek(env)
	if err != nil || r.Sequence != f.release.Sequence || r.App != f.release.App {
		t.Fatalf("Peek = %+v, %v", r, err)
	}
	if id := PeekKeyID(env); id != KeyID(f.key.Public().(ed25519.PublicKey)) {
		t.Errorf("PeekKeyID = %q", id)
	}
	// Peek reads what Open would refuse, which is why it must never decide
	// what runs.
	unsigned := rawEnvelope(t, decodeEnvelope(t, env).Payload, "", nil)
	if _, err := Peek(unsigned); err != nil {
		t.Errorf("Peek(unsigned) = %v", err)
	}
	if _, err := Open(unsigned, f.trusted); err == nil {
		t.Error("Open accepted what only Peek should read")
	}

	for _, tc := range []struct {
		name string
		env  []byte
		want error
	}{
		{"not json", []byte("x"), ErrMalformed},
		{"trailing garbage", append(bytes.Clone(env), 'x'), ErrMalformed},
		{"payload not a release", rawEnvelope(t, []byte(`{"bogus":1}`), "", nil), ErrMalformed},
		{"oversize", make([]byte, MaxEnvelopeSize+1), ErrSize},
	} {
		if _, err := Peek(tc.env); !errors.Is(err, tc.want) {
			t.Errorf("%s: Peek = %v, want %v", tc.name, err, tc.want)
		}
	}
	if id := PeekKeyID([]byte("x")); id != "" {
		t.Errorf("PeekKeyID(garbage) = %q, want empty", id)
	}
}
