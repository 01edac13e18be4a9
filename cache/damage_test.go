package cache_test

import (
	"bytes"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tern-edge/tern/cache"
)

// TestDamagedBodyIsRefetched damages stored bodies the way a power cut
// can (chunk files are not synced: one comes back empty, one missing)
// and checks that the cache notices, fetches them anew and serves them
// whole, instead of serving short bodies or failing on every request.
func TestDamagedBodyIsRefetched(t *testing.T) {
	clk := newClock()
	small, big := pattern(100<<10, 3), pattern(5*cache.ChunkSize/2, 7)
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		switch r.URL.Path {
		case "/small":
			w.Write(small)
		case "/big":
			w.Write(big)
		case "/tail":
			w.Write(big)
		}
	})
	dir := t.TempDir()
	s := openStore(t, dir)
	c := storeCache(t, s, clk)
	for _, p := range []string{"/small", "/big", "/tail"} {
		request(c.Handler(o), "GET", "http://example.com"+p, nil)
	}
	c.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Chunk files by size and index: the 100 KB body's only chunk, chunk
	// 0 of one 2.5 MiB body and the last chunk of the other.
	var smallChunk string
	var lastChunks, firstChunks []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(filepath.Base(path), ".") {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.Size() == int64(len(small)):
			smallChunk = path
		case strings.HasSuffix(path, ".0") && fi.Size() == cache.ChunkSize:
			firstChunks = append(firstChunks, path)
		case strings.HasSuffix(path, ".2") && fi.Size() == cache.ChunkSize/2:
			lastChunks = append(lastChunks, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if smallChunk == "" || len(firstChunks) != 2 || len(lastChunks) != 2 {
		t.Fatalf("chunk files: small %q, first %q, last %q", smallChunk, firstChunks, lastChunks)
	}
	// Which 2.5 MiB body is which does not matter: damage the start of
	// one and the end of the other, then find out which URL has which.
	if err := os.Truncate(smallChunk, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(firstChunks[0]); err != nil {
		t.Fatal(err)
	}
	sameBody := func(a, b string) bool { return strings.TrimSuffix(a, ".0") == strings.TrimSuffix(b, ".2") }
	tail := lastChunks[0]
	if sameBody(firstChunks[0], tail) {
		tail = lastChunks[1]
	}
	if err := os.Truncate(tail, 1000); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir)
	defer s.Close()
	c = storeCache(t, s, clk)
	defer c.Wait()
	srv := httptest.NewServer(c.Handler(o))
	defer srv.Close()
	get := func(p string) (*http.Response, []byte, error) {
		return fetch(srv.Client(), srv.URL+p, "example.com")
	}

	// Damage found before the headers went out: answered from the origin.
	// One of /big and /tail is damaged at its start, the other at its end.
	hits := o.hits.Load()
	resp, b, err := get("/small")
	if err != nil || !bytes.Equal(b, small) || !contains(resp.Header.Get("Cache-Status"), "detail=damaged") {
		t.Fatalf("/small with an empty chunk file: %d bytes, %v, Cache-Status %q", len(b), err, resp.Header.Get("Cache-Status"))
	}
	refetched := 0
	for _, p := range []string{"/big", "/tail"} {
		resp, b, err := get(p)
		switch {
		case err == nil && bytes.Equal(b, big):
			if contains(resp.Header.Get("Cache-Status"), "detail=damaged") {
				refetched++
			}
		case err != nil && len(b) < len(big):
			// Damage found after the headers: the connection is cut, so
			// the client cannot take the short body for the whole one.
		default:
			t.Fatalf("%s: %d bytes, %v", p, len(b), err)
		}
	}
	if refetched != 1 || o.hits.Load() != hits+2 {
		t.Fatalf("%d of the 2.5 MiB bodies refetched at once, origin hits %d, want 1 and %d", refetched, o.hits.Load(), hits+2)
	}
	c.Wait()

	// Every damaged entry was dropped: each URL is fetched at most once
	// more, then served whole from the cache.
	for _, p := range []string{"/small", "/big", "/tail", "/small", "/big", "/tail"} {
		_, b, err := get(p)
		want := big
		if p == "/small" {
			want = small
		}
		if err != nil || !bytes.Equal(b, want) {
			t.Fatalf("%s after the damage: %d bytes, %v", p, len(b), err)
		}
		c.Wait()
	}
	if o.hits.Load() != hits+3 {
		t.Fatalf("origin hits %d, want %d: a damaged entry was kept", o.hits.Load(), hits+3)
	}
	for _, p := range []string{"/small", "/big", "/tail"} {
		if resp, _, err := get(p); err != nil || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "tern; hit") {
			t.Fatalf("%s at the end: Cache-Status %q, %v", p, resp.Header.Get("Cache-Status"), err)
		}
	}
}
