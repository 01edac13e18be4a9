package store

import (
	"errors"
	"testing"

	"github.com/tern-edge/tern/cache"
	"github.com/tern-edge/tern/cache/cachetest"
)

func TestCacheStoreConformance(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	cachetest.Storage(t, s.Cache())
}

func TestCacheStoreSurvivesReopenAndSweepsOrphans(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	c := s.Cache()
	big := make([]byte, 1<<20) // reaches the value log
	for i := range big {
		big[i] = byte(i)
	}
	for _, err := range []error{
		c.WriteChunk("live", 0, big),
		c.WriteChunk("live", 1, []byte("tail")),
		c.Commit(cache.Entry{Key: "k", Body: "live", Size: 1<<20 + 4, Meta: []byte("meta")}),
		// A fill that never committed, as after a crash.
		c.WriteChunk("orphan", 0, big),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	c = s.Cache()
	if err := c.Sweep(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadChunk("orphan", 0, nil); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("orphan chunk after sweep: %v", err)
	}
	got, err := c.ReadChunk("live", 0, nil)
	if err != nil || len(got) != 1<<20 || got[12345] != byte(12345%256) {
		t.Fatalf("live chunk after reopen: %d bytes, %v", len(got), err)
	}
	var es []cache.Entry
	if err := c.Walk(func(e cache.Entry) error { es = append(es, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Size != 1<<20+4 || string(es[0].Meta) != "meta" {
		t.Fatalf("entries after reopen = %+v", es)
	}
	// Value log GC runs (nothing to rewrite yet is not an error).
	if err := c.GC(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RunValueLogGC(0.5); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeEntryRejectsGarbage(t *testing.T) {
	for _, v := range [][]byte{nil, {0x80}, {5, 9, 'a'}} {
		if _, err := decodeEntry("k", v); err == nil {
			t.Errorf("decodeEntry(%x) succeeded", v)
		}
	}
	e := cache.Entry{Key: "k", Body: "b", Size: 7, Meta: []byte("m")}
	got, err := decodeEntry("k", encodeEntry(e))
	if err != nil || got.Body != "b" || got.Size != 7 || string(got.Meta) != "m" {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
}
