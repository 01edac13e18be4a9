//go:build !race

// The race detector slows a 1 GiB copy several times over; this test runs
// in plain `go test` and is skipped with -short.

package cache_test

import (
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
)

// genReader yields n bytes of a deterministic pattern without holding them.
type genReader struct{ off, n int64 }

func (g *genReader) Read(p []byte) (int, error) {
	if g.off >= g.n {
		return 0, io.EOF
	}
	if rem := g.n - g.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	for i := range p {
		o := g.off + int64(i)
		p[i] = byte(o) ^ byte(o>>11)
	}
	g.off += int64(len(p))
	return len(p), nil
}

func TestStreamsOneGiBWithBoundedHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB stream skipped with -short")
	}
	const size = 1 << 30
	// The whole body in memory would be 1 GiB; chunks are 1 MiB. The
	// bound leaves room for badger's memtables and caches and the HTTP
	// buffers, and is still far below the object size.
	const heapBound = 160 << 20

	clk := newClock()
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Length", fmt.Sprint(size))
		io.Copy(w, &genReader{n: size})
	})
	c, _ := newCache(t, clk, cache.Config{MaxBytes: 2 << 30})
	srv := httptest.NewServer(c.Handler(o))
	defer srv.Close()

	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	start := time.Now()
	resp, err := srv.Client().Get(srv.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	gotCRC := crc32.NewIEEE()
	n, err := io.Copy(gotCRC, resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	if err != nil || n != size {
		t.Fatalf("streamed %d bytes, err %v", n, err)
	}
	want := crc32.NewIEEE()
	io.Copy(want, &genReader{n: size})
	if gotCRC.Sum32() != want.Sum32() {
		t.Fatal("body corrupted in transit")
	}
	t.Logf("1 GiB miss streamed in %s (%.0f MiB/s), peak heap in use %d MiB",
		elapsed.Round(time.Millisecond), float64(size>>20)/elapsed.Seconds(), peak.Load()>>20)
	if p := peak.Load(); p > heapBound {
		t.Errorf("peak heap in use %d MiB, want under %d MiB", p>>20, heapBound>>20)
	}

	// Stored: served from cache, with a range near the end.
	c.Wait()
	req, _ := http.NewRequest("GET", srv.URL+"/big", nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", size-100, size-1))
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tail, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	g := &genReader{off: size - 100, n: size}
	wantTail, _ := io.ReadAll(g)
	if resp.StatusCode != 206 || string(tail) != string(wantTail) || o.hits.Load() != 1 {
		t.Fatalf("range from cache: %d, %d bytes, origin hits %d", resp.StatusCode, len(tail), o.hits.Load())
	}
}
