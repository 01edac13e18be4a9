package cache

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// bodyRoundTripper answers every request with body, cacheable, and
// closes read once the cache has read all of it.
type bodyRoundTripper struct {
	body []byte
	read chan struct{}
}

func (b bodyRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode:    http.StatusOK,
		Header:        http.Header{"Cache-Control": {"max-age=600"}},
		Body:          io.NopCloser(&eofSignal{r: bytes.NewReader(b.body), eof: b.read}),
		ContentLength: int64(len(b.body)),
		Request:       r,
	}, nil
}

// eofSignal closes eof when r reports io.EOF.
type eofSignal struct {
	r   io.Reader
	eof chan struct{}
}

func (e *eofSignal) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		close(e.eof)
	}
	return n, err
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
	up := bodyRoundTripper{body: body, read: make(chan struct{})}
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		w := httptest.NewRecorder()
		c.Handler(up).ServeHTTP(w, httptest.NewRequest("GET", "http://example.com/a", nil))
		done <- w
	}()

	// The fill has read the whole body and published it: only a slot is
	// missing for its clients' end of body.
	select {
	case <-up.read:
	case <-time.After(time.Minute):
		t.Fatal("the fill did not read the origin's body")
	}
	c.mu.Lock()
	var fl *fill
	for f := range c.fills {
		fl = f
	}
	c.mu.Unlock()
	if fl == nil {
		t.Fatal("no fill in flight")
	}
	for {
		fl.mu.Lock()
		arrived, complete, changed := fl.arrived, fl.complete, fl.changed
		fl.mu.Unlock()
		if complete {
			t.Fatal("the body was complete for its clients with every early-commit slot taken")
		}
		if arrived == int64(len(body)) {
			break
		}
		<-changed
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
