package store

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

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
	big := make([]byte, 1<<20) // a chunk file
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
	if _, err := os.Stat(c.chunkPath("orphan", 0)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("orphan chunk file after sweep: %v", err)
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

func TestCacheStoreChunkPlacement(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	c := s.Cache()
	big := bytes.Repeat([]byte("0123456789abcdef"), fileChunkMin/16)
	small := []byte("small body")
	// An odd body name is encoded, and cannot leave the cache's directory.
	odd := "../x.1/y"
	for _, err := range []error{
		c.WriteChunk("big", 0, big),
		c.WriteChunk("big", 1, small), // a short last chunk stays in badger
		c.CommitSmall(cache.Entry{Key: "k1", Body: "one", Size: int64(len(big))}, big),
		c.CommitSmall(cache.Entry{Key: "k2", Body: "tiny", Size: int64(len(small))}, small),
		c.WriteChunk(odd, 0, big),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		body string
		idx  int
		file bool
		want []byte
	}{
		{"big", 0, true, big},
		{"big", 1, false, small},
		{"one", 0, true, big},
		{"tiny", 0, false, small},
		{odd, 0, true, big},
	} {
		_, err := os.Stat(c.chunkPath(tc.body, tc.idx))
		if (err == nil) != tc.file {
			t.Errorf("%s/%d: chunk file exists %v, want %v", tc.body, tc.idx, err == nil, tc.file)
		}
		got, err := c.ReadChunk(tc.body, tc.idx, nil)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("ReadChunk %s/%d = %d bytes, %v", tc.body, tc.idx, len(got), err)
		}
	}
	// ChunkFile opens the chunks that are files, and only those.
	for _, tc := range []struct {
		body string
		idx  int
		file bool
	}{{"big", 0, true}, {"big", 1, false}, {"tiny", 0, false}, {"absent", 0, false}} {
		f, err := c.ChunkFile(tc.body, tc.idx)
		if err != nil || (f != nil) != tc.file {
			t.Errorf("ChunkFile %s/%d = %v, %v; want a file: %v", tc.body, tc.idx, f, err, tc.file)
		}
		if f != nil {
			if fi, err := f.Stat(); err != nil || fi.Size() != int64(len(big)) {
				t.Errorf("ChunkFile %s/%d: %v, %v", tc.body, tc.idx, fi, err)
			}
			f.Close()
		}
	}
	root := filepath.Join(s.dir, cacheFilesDir)
	if p := c.chunkPath(odd, 0); !strings.HasPrefix(p, root+string(filepath.Separator)) || strings.Count(p[len(root):], string(filepath.Separator)) != 2 {
		t.Errorf("chunk path of %q is %s, want one directory under %s", odd, p, root)
	}

	// A chunk file lost in a crash reads as absent.
	if err := os.Remove(c.chunkPath("one", 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadChunk("one", 0, nil); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("ReadChunk of a lost chunk file: %v", err)
	}

	// Deleting a body removes its files and its badger chunks.
	if err := c.DeleteBody("big"); err != nil {
		t.Fatal(err)
	}
	for idx := range 2 {
		if _, err := c.ReadChunk("big", idx, nil); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("chunk %d after DeleteBody: %v", idx, err)
		}
	}
	if _, err := os.Stat(c.chunkPath("big", 0)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("chunk file after DeleteBody: %v", err)
	}

	// Large chunks that earlier versions kept in badger's value log stay
	// readable.
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(chunkKey("old", 0), big) }); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReadChunk("old", 0, nil); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("ReadChunk of a value-log chunk = %d bytes, %v", len(got), err)
	}
}
