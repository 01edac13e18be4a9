package cache_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
)

// TestRangeDuringFill sends Range requests for an object whose fill is
// still streaming from the origin: ranges in stored chunks are answered at
// once, a range in chunks not stored yet waits for them, and what the fill
// cannot answer (several ranges) goes to the origin.
func TestRangeDuringFill(t *testing.T) {
	const size = 3 * cache.ChunkSize
	full := make([]byte, size)
	for i := range full {
		full[i] = byte(i) ^ byte(i>>11)
	}
	clk := newClock()
	release := make(chan struct{})
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("Range") != "" { // only what the cache passes through
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(full))
			return
		}
		// The first chunk and a little more, then wait: the fill stays
		// in progress until the test releases it.
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.Write(full[:cache.ChunkSize+10])
		w.(http.Flusher).Flush()
		<-release
		w.Write(full[cache.ChunkSize+10:])
	})
	var once gosync.Once
	releaseOrigin := func() { once.Do(func() { close(release) }) }
	c, _ := newCache(t, clk, cache.Config{})
	srv := httptest.NewServer(c.Handler(o))
	t.Cleanup(srv.Close)
	// Cleanups run last first: should a check fail, the origin is
	// released before the servers close and wait for their handlers.
	t.Cleanup(releaseOrigin)
	// Bounds every request, so a range that waits on the wrong thing
	// fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	get := func(hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/video", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	check := func(name string, resp *http.Response, code int, contentRange string, want []byte, cacheStatus string) {
		t.Helper()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s: read body: %v", name, err)
		}
		if resp.StatusCode != code || resp.Header.Get("Content-Range") != contentRange {
			t.Errorf("%s: %d, Content-Range %q; want %d, %q", name, resp.StatusCode, resp.Header.Get("Content-Range"), code, contentRange)
		}
		if want != nil && !bytes.Equal(b, want) {
			t.Errorf("%s: body of %d bytes differs from the %d wanted", name, len(b), len(want))
		}
		if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, cacheStatus) {
			t.Errorf("%s: Cache-Status %q, want it to contain %q", name, cs, cacheStatus)
		}
	}

	// The leader: once it has read the first chunk, that chunk is stored.
	leader := get(nil)
	first := make([]byte, cache.ChunkSize)
	if _, err := io.ReadFull(leader.Body, first); err != nil {
		t.Fatal(err)
	}

	check("range in the stored chunk", get(map[string]string{"Range": "bytes=100-199"}),
		206, "bytes 100-199/3145728", full[100:200], "collapsed")
	check("If-Range with the entity tag", get(map[string]string{"Range": "bytes=0-9", "If-Range": `"v1"`}),
		206, "bytes 0-9/3145728", full[:10], "collapsed")
	check("range past the end", get(map[string]string{"Range": "bytes=4000000-"}),
		416, "bytes */3145728", nil, "collapsed")
	check("several ranges", get(map[string]string{"Range": "bytes=0-1,10-11"}),
		206, "", nil, "detail=range-during-fill")
	if got := o.hits.Load(); got != 2 {
		t.Fatalf("origin requests before release: %d, want 2 (the fill and the pass)", got)
	}

	// These wait for chunks not stored yet; their headers come first.
	suffix := get(map[string]string{"Range": "bytes=-10"})
	stale := get(map[string]string{"Range": "bytes=0-9", "If-Range": `"v0"`})
	releaseOrigin()
	check("suffix range", suffix, 206, "bytes 3145718-3145727/3145728", full[size-10:], "collapsed")
	check("If-Range with another entity tag: whole body", stale, 200, "", full, "collapsed")
	check("leader", leader, 200, "", full[cache.ChunkSize:], "fwd=uri-miss")
	if got := o.hits.Load(); got != 2 {
		t.Errorf("origin requests: %d, want 2", got)
	}
}
