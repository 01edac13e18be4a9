package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/tern-edge/tern/cache"
	"github.com/tern-edge/tern/internal/testfs"
)

// TestFullDiskFailsCleanly fills the store's file system to its last
// byte: writes fail with ErrNoSpace instead of badger's memory-mapped
// log killing the process, and after a restart every entry written
// before is there with its bytes.
func TestFullDiskFailsCleanly(t *testing.T) {
	dir := testfs.Small(t, 48<<20)
	s, err := Open(dir+"/store", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := s.Cache()
	entry := func(i int) (cache.Entry, []byte) {
		body := bytes.Repeat([]byte{byte(i)}, 1000)
		return cache.Entry{Key: fmt.Sprint("k", i), Body: fmt.Sprint("b", i), Size: int64(len(body)), Meta: []byte("m")}, body
	}
	for i := range 50 {
		e, body := entry(i)
		if err := c.CommitSmall(e, body); err != nil {
			t.Fatal(err)
		}
	}
	filler := testfs.Fill(t, dir, 0)
	for i := 50; i < 200; i++ {
		e, body := entry(i)
		if err := c.CommitSmall(e, body); !errors.Is(err, ErrNoSpace) {
			t.Fatalf("commit %d on a full disk: %v, want ErrNoSpace", i, err)
		}
	}
	// Space back before the close: badger's close flushes the memtable
	// into a memory-mapped table, which a full disk would fault (see
	// WriteFloor).
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir+"/store", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	if err := s.Cache().Walk(func(e cache.Entry) error {
		n++
		var i int
		fmt.Sscanf(e.Key, "k%d", &i)
		_, want := entry(i)
		got, err := s.Cache().ReadChunk(e.Body, 0, nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("entry %s: %d bytes, %v", e.Key, len(got), err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 50 {
		t.Errorf("%d entries after the restart, want 50", n)
	}
}
