package cache_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
)

// TestAbandonedMissCancelsOriginFetch: a client that goes away (an HTTP/2
// reset) while its miss is being fetched cancels the origin request when no
// other client joined it, and leaves nothing stored; a fetch another client
// joined goes on for that client.
func TestAbandonedMissCancelsOriginFetch(t *testing.T) {
	clk := newClock()
	arrived := make(chan struct{}, 4)
	release := make(chan struct{})
	var released bool
	t.Cleanup(func() {
		if !released {
			close(release) // let a fetch that was not cancelled end
		}
	})
	cancelled := make(chan struct{}, 4)
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
			cancelled <- struct{}{}
			return
		case <-release:
		}
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write([]byte("shared"))
	})
	c, _ := newCache(t, clk, cache.Config{})
	h := c.Handler(o)
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
		}
	}
	get := func(ctx context.Context) chan *httptest.ResponseRecorder {
		done := make(chan *httptest.ResponseRecorder, 1)
		go func() {
			r := httptest.NewRequest("GET", "http://example.com/unique", nil).WithContext(ctx)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			done <- w
		}()
		return done
	}

	// Alone: the reset cancels the fetch.
	ctx, cancel := context.WithCancel(context.Background())
	done := get(ctx)
	wait("the origin request", arrived)
	cancel()
	<-done
	wait("the origin request to be cancelled", cancelled)

	// Joined: one client leaving does not cancel the other's fetch.
	ctx, cancel = context.WithCancel(context.Background())
	first := get(ctx)
	wait("the origin request", arrived)
	second := get(context.Background())
	// Nothing outside shows the second client joining the flight; give
	// it time, and check below that it did (no third origin request).
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-first
	close(release)
	released = true
	w := <-second
	if w.Code != 200 || w.Body.String() != "shared" || o.hits.Load() != 2 {
		t.Fatalf("the client that stayed: %d %q (%s) after %d origin requests, want the shared fetch's response after 2",
			w.Code, w.Body.String(), w.Header().Get("Cache-Status"), o.hits.Load())
	}
	select {
	case <-cancelled:
		t.Error("a fetch another client waited on was cancelled")
	default:
	}
}
