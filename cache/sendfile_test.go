//go:build linux

package cache_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
)

// bodyOf is the origin's body for path: different for every path and at
// every offset, so a body sent from the wrong file or offset shows.
func bodyOf(path string, size int) []byte { return pattern(size, path[len(path)-1]) }

// memfds returns the inodes of the process's open cache-body memfds (a
// memfd and the descriptions opened on it share one).
func memfds(t *testing.T) map[uint64]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[uint64]bool{}
	for _, e := range ents {
		p := "/proc/self/fd/" + e.Name()
		if dst, err := os.Readlink(p); err != nil || !strings.HasPrefix(dst, "/memfd:tern-cache-body") {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			inodes[fi.Sys().(*syscall.Stat_t).Ino] = true
		}
	}
	return inodes
}

// newMemfds counts the memfds open now that were not in before: caches
// of earlier tests in this process may still hold some.
func newMemfds(t *testing.T, before map[uint64]bool) int {
	n := 0
	for ino := range memfds(t) {
		if !before[ino] {
			n++
		}
	}
	return n
}

// TestSendfileHits serves RAM-tier hits of 100 KB through a real server:
// over plain HTTP/1.1 they go out with sendfile from a sealed memfd, over
// TLS from memory, and every body is right, also while purges and the
// tier's budget evict bodies with sends in flight. No memfd outlives the
// bodies.
func TestSendfileHits(t *testing.T) {
	const size = 100 << 10
	before := memfds(t)
	clk := newClock()
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", fmt.Sprintf(`"%d"`, n))
		if r.URL.Path == "/small" {
			w.Write(bodyOf(r.URL.Path, 1000))
			return
		}
		w.Write(bodyOf(r.URL.Path, size))
	})
	// Room for two bodies with their copies, not for four.
	c, _ := newCache(t, clk, cache.Config{MemoryBytes: 5 * size})
	h := c.Handler(o)
	plain := httptest.NewServer(h)
	defer plain.Close()
	secure := httptest.NewTLSServer(h)
	defer secure.Close()

	get := func(client *http.Client, base, path string) ([]byte, string) {
		t.Helper()
		resp, b, err := fetch(client, base+path, "")
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
		}
		if resp == nil {
			return nil, ""
		}
		return b, resp.Header.Get("Cache-Status")
	}
	check := func(path string, b []byte) {
		t.Helper()
		want := bodyOf(path, size)
		if path == "/small" {
			want = bodyOf(path, 1000)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("GET %s: wrong body of %d bytes", path, len(b))
		}
	}

	pc := plain.Client()
	hit := func() {
		t.Helper()
		b, status := get(pc, plain.URL, "/a")
		check("/a", b)
		if !strings.HasPrefix(status, "tern; hit") {
			t.Fatalf("GET /a: %q, want a hit", status)
		}
	}
	b, _ := get(pc, plain.URL, "/a") // the miss
	check("/a", b)
	c.Wait()
	// The first hit may still race the body into the RAM tier; from the
	// first one sent with sendfile on, every plain hit is.
	// The server counts a send once it is written, after the client has
	// the body: wait for the count to move past n, for a while.
	settled := func(n int64) cache.Stats {
		deadline := time.Now().Add(2 * time.Second)
		for {
			st := c.Stats()
			if st.SendfileHits != n || time.Now().After(deadline) {
				return st
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatalf("20 plain hits, none sent with sendfile")
		}
		hit()
		if settled(0).SendfileHits != 0 {
			break
		}
	}
	hit()
	st := settled(1)
	if st.SendfileHits != 2 || st.SendfileBytes != 2*size {
		t.Errorf("after two plain hits from the RAM tier: %d hits, %d bytes sent with sendfile; want 2, %d", st.SendfileHits, st.SendfileBytes, 2*size)
	}
	if st.MemoryBytes != 2*size {
		t.Errorf("RAM tier holds %d bytes, want the body and its copy, %d", st.MemoryBytes, 2*size)
	}
	get(pc, plain.URL, "/small")
	b, _ = get(pc, plain.URL, "/small")
	check("/small", b)
	sc := secure.Client()
	for range 2 {
		b, _ = get(sc, secure.URL, "/a")
		check("/a", b)
	}
	if got := c.Stats().SendfileHits; got != 2 {
		t.Errorf("a small body and a TLS hit sent with sendfile: %d hits, want 2", got)
	}

	// Concurrent hits while the budget and purges evict bodies.
	paths := []string{"/a", "/b", "/c", "/d", "/small"}
	var wg gosync.WaitGroup
	for g := range 8 {
		client := pc
		base := plain.URL
		if g == 0 {
			client, base = sc, secure.URL
		}
		wg.Go(func() {
			for i := range 40 {
				p := paths[(g+i)%len(paths)]
				b, _ := get(client, base, p)
				check(p, b)
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			if _, err := c.Purge(cache.PurgeRequest{URLs: []string{plain.URL + paths[i%4]}}); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if c.Stats().SendfileHits < 10 {
		t.Errorf("only %d hits sent with sendfile under load", c.Stats().SendfileHits)
	}
	for range 2 {
		b, _ := get(pc, plain.URL, "/a")
		check("/a", b)
	}
	if n := newMemfds(t, before); n == 0 {
		t.Error("no memfd open while a body sent with sendfile is in the RAM tier")
	}
	for _, p := range paths {
		if _, err := c.Purge(cache.PurgeRequest{URLs: []string{plain.URL + p, secure.URL + p}}); err != nil {
			t.Fatal(err)
		}
	}
	// A handler may still hold a file description after its client has
	// read the whole body; Close waits for every handler to return.
	plain.Close()
	secure.Close()
	if n := newMemfds(t, before); n != 0 {
		t.Errorf("%d memfds open after every body was purged", n)
	}
	if c.Stats().MemoryBytes != 0 {
		t.Errorf("RAM tier holds %d bytes after every body was purged", c.Stats().MemoryBytes)
	}
}

// TestSendfileFromChunkFiles serves hits of a body too large for the RAM
// tier through a real server: over plain HTTP/1.1 its chunks go out with
// sendfile from the storage's chunk files (a short last chunk, kept in
// badger, is written from memory), over TLS they are read and written;
// every body is right, ranges included.
func TestSendfileFromChunkFiles(t *testing.T) {
	size := 2*cache.ChunkSize + 1000 // two chunk files and a small last chunk
	clk := newClock()
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write(bodyOf(r.URL.Path, size))
	})
	c, _ := newCache(t, clk, cache.Config{})
	h := c.Handler(o)
	plain := httptest.NewServer(h)
	defer plain.Close()
	secure := httptest.NewTLSServer(h)
	defer secure.Close()
	get := func(client *http.Client, base, path string) ([]byte, error) {
		_, b, err := fetch(client, base+path, "")
		return b, err
	}
	check := func(what string, got []byte, err error) {
		t.Helper()
		if err != nil || !bytes.Equal(got, bodyOf("/a", size)) {
			t.Fatalf("%s: %d bytes, %v", what, len(got), err)
		}
	}
	b, err := get(plain.Client(), plain.URL, "/a")
	check("miss", b, err)
	c.Wait()
	for range 2 {
		b, err := get(plain.Client(), plain.URL, "/a")
		check("plain hit", b, err)
	}
	st := c.Stats()
	if st.SendfileHits != 2 || st.SendfileBytes != 2*2*cache.ChunkSize {
		t.Errorf("after two plain hits: %d hits, %d bytes sent with sendfile; want 2, %d", st.SendfileHits, st.SendfileBytes, 2*2*cache.ChunkSize)
	}
	b, err = get(secure.Client(), secure.URL, "/a")
	check("TLS hit", b, err)
	req, _ := http.NewRequest("GET", plain.URL+"/a", nil)
	req.Header.Set("Range", "bytes=1048570-1048580")
	resp, err := plain.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(rb, bodyOf("/a", size)[1048570:1048581]) {
		t.Fatalf("range across chunk files: %d %q", resp.StatusCode, rb)
	}
	if got := c.Stats().SendfileHits; got != 2 {
		t.Errorf("a TLS hit or a range sent with sendfile: %d hits, want 2", got)
	}
}
