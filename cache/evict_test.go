package cache_test

import (
	"bytes"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
)

// stuckDeletes is a storage whose deletes wait until release is closed,
// as an unlink does behind a disk busy writing back.
type stuckDeletes struct {
	cache.MemStorage
	release chan struct{}
	stuck   atomic.Int64
}

func (s *stuckDeletes) Delete(key, body string) error {
	s.stuck.Add(1)
	<-s.release
	return s.MemStorage.Delete(key, body)
}

// TestEvictionDoesNotHoldCommits checks that fills that evict commit
// their entries without waiting for the evicted entries' deletes, and
// that the deletes still happen: Wait returns only once storage holds
// exactly what the index does. Were each fill to wait for its deletes,
// the 33rd client would wait too (maxEarlyCommits), here for ever.
func TestEvictionDoesNotHoldCommits(t *testing.T) {
	const size, room, extra = 100, 400, 50
	clk := newClock()
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write(bytes.Repeat([]byte{'x'}, size))
	})
	st := &stuckDeletes{release: make(chan struct{})}
	// A quarter of the budget, 100 bodies, may wait to be deleted.
	c, err := cache.New(cache.Config{Storage: st, Now: clk.Now, MaxBytes: room * size})
	if err != nil {
		t.Fatal(err)
	}
	h := c.Handler(o)
	get := func(i int) string {
		return request(h, "GET", fmt.Sprintf("http://example.com/%d", i), nil).Header().Get("Cache-Status")
	}
	for i := range room {
		get(i)
	}
	c.Wait()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := room; i < room+extra; i++ {
			get(i) // each evicts one, and the first delete is stuck
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("fills that evict wait for the evicted entries' deletes")
	}
	if cs := get(room + extra - 1); !contains(cs, "hit") {
		t.Fatalf("last body while deletes are stuck: Cache-Status %q, want a hit", cs)
	}
	if n := st.stuck.Load(); n != 1 {
		t.Fatalf("%d deletes started, want one (stuck) and the rest queued", n)
	}
	if st := c.Stats(); st.Entries != room {
		t.Fatalf("index holds %d entries, want %d", st.Entries, room)
	}
	close(st.release)
	c.Wait()
	if got := len(st.Bodies()); got != room {
		t.Fatalf("storage holds %d bodies after Wait, want the %d indexed", got, room)
	}
	if cs := get(0); !contains(cs, "miss") {
		t.Fatalf("evicted entry: Cache-Status %q, want a miss", cs)
	}
	c.Wait()
}

// TestShedEvictsLeastRecentlyUsed: Shed removes the least recently used
// entries holding at least the bytes asked for, from the index and from
// storage, and leaves the rest.
func TestShedEvictsLeastRecentlyUsed(t *testing.T) {
	const size = 100
	clk := newClock()
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write(bytes.Repeat([]byte{'x'}, size))
	})
	st := &cache.MemStorage{}
	c, err := cache.New(cache.Config{Storage: st, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	h := c.Handler(o)
	status := func(i int) string {
		return request(h, "GET", fmt.Sprintf("http://example.com/%d", i), nil).Header().Get("Cache-Status")
	}
	for i := range 10 {
		status(i)
		// Commits run in the background: wait for each, so that the
		// entries enter the index, and its recency order, one by one.
		c.Wait()
	}
	if n := c.Shed(250); n != 300 {
		t.Fatalf("Shed(250) evicted %d bytes, want 300: three entries", n)
	}
	if s := c.Stats(); s.Entries != 7 || s.Bytes != 700 {
		t.Fatalf("stats after shedding = %+v, want 7 entries, 700 bytes", s)
	}
	var stored int
	st.Walk(func(cache.Entry) error { stored++; return nil })
	if stored != 7 {
		t.Errorf("storage holds %d entries after shedding, want 7", stored)
	}
	for i := range 10 {
		hit := contains(status(i), "hit")
		if hit != (i >= 3) {
			t.Errorf("entry %d: hit %v after shedding the three oldest", i, hit)
		}
	}
}
