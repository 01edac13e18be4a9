package cache

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// bodyRoundTripper answers every request with body, cacheable.
type bodyRoundTripper []byte

func (b bodyRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode:    http.StatusOK,
		Header:        http.Header{"Cache-Control": {"max-age=600"}},
		Body:          io.NopCloser(bytes.NewReader(b)),
		ContentLength: int64(len(b)),
		Request:       r,
	}, nil
}

// TestEarlyCommitsBounded fills every slot for commits that answered their
// clients early: the next fill's client then waits until a slot frees,
// as all did before, instead of the fill holding its buffer behind a
// stalled storage.
func TestEarlyCommitsBounded(t *testing.T) {
	c, err := New(Config{Storage: &MemStorage{}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Wait()
	for range cap(c.commitSlots) {
		c.commitSlots <- struct{}{}
	}
	body := bytes.Repeat([]byte("x"), 1000)
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		w := httptest.NewRecorder()
		c.Handler(bodyRoundTripper(body)).ServeHTTP(w, httptest.NewRequest("GET", "http://example.com/a", nil))
		done <- w
	}()

	// Wait until the fill has the whole body: only a slot is missing.
	var fl *fill
	for deadline := time.Now().Add(time.Minute); fl == nil; {
		if time.Now().After(deadline) {
			t.Fatal("no fill with the whole body")
		}
		c.mu.Lock()
		for f := range c.fills {
			f.mu.Lock()
			if f.arrived == int64(len(body)) {
				fl = f
			}
			f.mu.Unlock()
		}
		c.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("the client was answered with every early-commit slot taken")
	default:
	}
	<-c.commitSlots
	select {
	case w := <-done:
		if !bytes.Equal(w.Body.Bytes(), body) {
			t.Fatalf("client got %d bytes, want %d", w.Body.Len(), len(body))
		}
	case <-time.After(time.Minute):
		t.Fatal("the client was not answered once a slot freed")
	}
	for range cap(c.commitSlots) - 1 {
		<-c.commitSlots
	}
}
