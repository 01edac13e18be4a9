package cache_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
)

// gatedStorage holds every Commit until gate is closed, and says on
// entered when one is waiting: a storage write stalled as badger stalls
// when it rotates a value-log file.
type gatedStorage struct {
	cache.Storage
	gate    chan struct{}
	entered chan struct{}
}

func (g *gatedStorage) Commit(e cache.Entry) error {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.gate
	return g.Storage.Commit(e)
}

// async runs a request through h in a goroutine; the recorder arrives on
// the channel.
func async(h http.Handler, target string) <-chan *httptest.ResponseRecorder {
	ch := make(chan *httptest.ResponseRecorder, 1)
	go func() { ch <- request(h, "GET", target, nil) }()
	return ch
}

// await returns the response from ch, failing the test if none comes in
// a minute: the request is stuck.
func await(t *testing.T, what string, ch <-chan *httptest.ResponseRecorder) *httptest.ResponseRecorder {
	t.Helper()
	select {
	case w := <-ch:
		return w
	case <-time.After(time.Minute):
		t.Fatalf("%s: no response", what)
		return nil
	}
}

// TestClientDoesNotWaitForStorage stalls the storage's commit: the client
// that caused the fill still gets the whole body, and a request that
// comes while the commit is pending waits for it and is a hit.
func TestClientDoesNotWaitForStorage(t *testing.T) {
	const size = 100 << 10
	clk := newClock()
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write(pattern(size, byte(n)))
	})
	s := openStore(t, t.TempDir())
	defer s.Close()
	g := &gatedStorage{Storage: s.Cache(), gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	c, err := cache.New(cache.Config{Storage: g, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Wait()
	var open gosync.Once
	release := func() { open.Do(func() { close(g.gate) }) }
	defer release() // before the Wait, also when the test fails
	h := c.Handler(o)

	w := await(t, "the first request, with its commit stalled", async(h, "http://example.com/a"))
	if !bytes.Equal(w.Body.Bytes(), pattern(size, 1)) || !strings.Contains(w.Header().Get("Cache-Status"), "fwd=uri-miss") {
		t.Fatalf("first request: %d bytes, %q", w.Body.Len(), w.Header().Get("Cache-Status"))
	}
	<-g.entered
	second := async(h, "http://example.com/a")
	release()
	w = await(t, "the second request", second)
	if !bytes.Equal(w.Body.Bytes(), pattern(size, 1)) || !strings.HasPrefix(w.Header().Get("Cache-Status"), "tern; hit") {
		t.Fatalf("second request: %d bytes, %q; want the stored body, a hit", w.Body.Len(), w.Header().Get("Cache-Status"))
	}
	if n := o.hits.Load(); n != 1 {
		t.Fatalf("origin saw %d requests, want 1", n)
	}
}

// TestPurgeDuringFill purges a URL while its body streams in: the purge
// counts it, a request after the purge fetches anew instead of joining
// the old fetch, the client of the old fetch still gets its whole body,
// and the old body, fetched before the purge, is not stored over the new
// one.
func TestPurgeDuringFill(t *testing.T) {
	const size = 3 * cache.ChunkSize / 2
	clk := newClock()
	halfway, more := make(chan struct{}), make(chan struct{})
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		b := pattern(size, byte(n))
		if n == 1 {
			w.Write(b[:cache.ChunkSize+10])
			w.(http.Flusher).Flush()
			close(halfway)
			<-more
			b = b[cache.ChunkSize+10:]
		}
		w.Write(b)
	})
	c, _ := newCache(t, clk, cache.Config{})
	var once gosync.Once
	release := func() { once.Do(func() { close(more) }) }
	t.Cleanup(release) // before newCache's cleanup waits for the fill
	h := c.Handler(o)

	first := async(h, "http://example.com/big")
	<-halfway
	res, err := c.Purge(cache.PurgeRequest{URLs: []string{"example.com/big"}})
	if err != nil || res.Purged != 1 {
		t.Fatalf("Purge = %+v, %v; want the fill in flight purged", res, err)
	}
	w := await(t, "a request after the purge", async(h, "http://example.com/big"))
	if !bytes.Equal(w.Body.Bytes(), pattern(size, 2)) || o.hits.Load() != 2 {
		t.Fatalf("after the purge: %d bytes, origin requests %d, %q; want a new fetch", w.Body.Len(), o.hits.Load(), w.Header().Get("Cache-Status"))
	}
	release()
	if w := await(t, "the request before the purge", first); !bytes.Equal(w.Body.Bytes(), pattern(size, 1)) {
		t.Fatalf("the fill's own client got %d bytes, not its body", w.Body.Len())
	}
	c.Wait()
	w = request(h, "GET", "http://example.com/big", nil)
	if !bytes.Equal(w.Body.Bytes(), pattern(size, 2)) || !strings.HasPrefix(w.Header().Get("Cache-Status"), "tern; hit") || o.hits.Load() != 2 {
		t.Fatalf("later: %q, origin requests %d, %d bytes; want a hit on the body fetched after the purge",
			w.Header().Get("Cache-Status"), o.hits.Load(), w.Body.Len())
	}
}
