// Package cachetest checks that a cache.Storage keeps the contract its
// documentation states, so every implementation is held to the same one.
package cachetest

import (
	"errors"
	"fmt"
	"sort"
	"testing"

	"github.com/tern-edge/tern/cache"
)

// Storage runs the conformance checks against an empty s.
func Storage(t *testing.T, s cache.Storage) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	notFound := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("%s: got %v, want ErrNotFound", what, err)
		}
	}

	// Chunks are readable before commit (fills are followed as they
	// land) and the input slice may be reused.
	buf := []byte("chunk0")
	must(s.WriteChunk("b1", 0, buf))
	copy(buf, "XXXXXX")
	must(s.WriteChunk("b1", 1, []byte("chunk1")))
	got, err := s.ReadChunk("b1", 0, make([]byte, 0, 2))
	if err != nil || string(got) != "chunk0" {
		t.Fatalf("ReadChunk b1/0 = %q, %v", got, err)
	}
	_, err = s.ReadChunk("b1", 2, nil)
	notFound("ReadChunk past the end", err)
	_, err = s.ReadChunk("nope", 0, nil)
	notFound("ReadChunk of an unknown body", err)

	var walked []cache.Entry
	walk := func() []cache.Entry {
		walked = walked[:0]
		must(s.Walk(func(e cache.Entry) error { walked = append(walked, e); return nil }))
		sort.Slice(walked, func(i, j int) bool { return walked[i].Key < walked[j].Key })
		return walked
	}
	if es := walk(); len(es) != 0 {
		t.Fatalf("uncommitted body visible: %+v", es)
	}
	key := "example.com/a\x00Accept-Encoding=gzip"
	must(s.Commit(cache.Entry{Key: key, Body: "b1", Size: 12, Meta: []byte("m1")}))
	if es := walk(); len(es) != 1 || es[0].Key != key || es[0].Body != "b1" || es[0].Size != 12 || string(es[0].Meta) != "m1" {
		t.Fatalf("Walk after Commit = %+v", es)
	}

	// UpdateMeta lands only on the body it names.
	must(s.UpdateMeta(key, "b1", []byte("m1'")))
	notFound("UpdateMeta of another body", s.UpdateMeta(key, "b0", []byte("x")))
	notFound("UpdateMeta of an absent key", s.UpdateMeta("absent", "b1", []byte("x")))

	// Replacing keeps the old body until it is deleted.
	must(s.WriteChunk("b2", 0, []byte("new")))
	must(s.Commit(cache.Entry{Key: key, Body: "b2", Size: 3, Meta: []byte("m2")}))
	if got, err := s.ReadChunk("b1", 1, nil); err != nil || string(got) != "chunk1" {
		t.Fatalf("replaced body gone before delete: %q, %v", got, err)
	}
	// A late delete of the old body never removes the newer entry.
	must(s.Delete(key, "b1"))
	_, err = s.ReadChunk("b1", 0, nil)
	notFound("ReadChunk of a deleted body", err)
	if es := walk(); len(es) != 1 || es[0].Body != "b2" || string(es[0].Meta) != "m2" {
		t.Fatalf("Walk after late delete = %+v", es)
	}
	must(s.Delete(key, "b2"))
	if es := walk(); len(es) != 0 {
		t.Fatalf("Walk after delete = %+v", es)
	}
	must(s.Delete(key, "b2")) // absent: not an error
	must(s.DeleteBody("never-written"))

	// The optional one-write commit of a small body, when implemented,
	// is WriteChunk then Commit.
	if sc, ok := s.(interface {
		CommitSmall(cache.Entry, []byte) error
	}); ok {
		p := []byte("tiny")
		must(sc.CommitSmall(cache.Entry{Key: "small", Body: "b3", Size: 4, Meta: []byte("m3")}, p))
		copy(p, "XXXX")
		if got, err := s.ReadChunk("b3", 0, nil); err != nil || string(got) != "tiny" {
			t.Fatalf("ReadChunk after CommitSmall = %q, %v", got, err)
		}
		if es := walk(); len(es) != 1 || es[0].Key != "small" || es[0].Body != "b3" || es[0].Size != 4 || string(es[0].Meta) != "m3" {
			t.Fatalf("Walk after CommitSmall = %+v", es)
		}
		must(sc.CommitSmall(cache.Entry{Key: "empty", Body: "b4", Meta: []byte{}}, nil))
		_, err := s.ReadChunk("b4", 0, nil)
		notFound("ReadChunk of an empty body", err)
		must(s.Delete("small", "b3"))
		must(s.Delete("empty", "b4"))
		_, err = s.ReadChunk("b3", 0, nil)
		notFound("ReadChunk of a deleted small body", err)
	}

	// Walk stops at fn's error.
	for i := range 3 {
		must(s.Commit(cache.Entry{Key: fmt.Sprint("k", i), Body: fmt.Sprint("x", i), Meta: []byte{}}))
	}
	stop := errors.New("stop")
	n := 0
	if err := s.Walk(func(cache.Entry) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("Walk did not stop: %v after %d", err, n)
	}
}
