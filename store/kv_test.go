package store

import (
	"errors"
	"strings"
	"testing"
)

func TestKVNamespacesAreDisjoint(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	// "a" + "bc" and "ab" + "c" must not collide.
	if err := s.KVSet("a", "bc", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KVGet("ab", "c"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other namespace sees the key: %v", err)
	}
	if v, err := s.KVGet("a", "bc"); err != nil || string(v) != "1" {
		t.Fatalf("get = %q, %v", v, err)
	}
	if err := s.KVDelete("a", "bc"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KVGet("a", "bc"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := s.KVDelete("a", "never"); err != nil {
		t.Fatalf("delete absent key: %v", err)
	}
}

func TestKVSetRefusesValueOverLimit(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	err := s.KVSet("a", "big", make([]byte, MaxValueBytes+1))
	if err == nil || !strings.Contains(err.Error(), "at most 16777216") {
		t.Fatalf("KVSet of %d bytes = %v, want a refusal naming the limit", MaxValueBytes+1, err)
	}
	if err := s.KVSet("a", "max", make([]byte, MaxValueBytes)); err != nil {
		t.Fatalf("KVSet of exactly the limit: %v", err)
	}
}
