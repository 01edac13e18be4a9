package cache_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tern-edge/tern/cache"
)

// FuzzOpenStored checks what a restarted cache does with the entries it
// reads back from storage: whatever the metadata record and size hold
// (truncated, corrupt, or valid but lying), opening the cache and serving
// a request for the entry never panics, and a 200 from the cache carries
// exactly the bytes its Content-Length announces.
func FuzzOpenStored(f *testing.F) {
	st := &cache.MemStorage{}

	// Seeds: the records a real fill commits, whole and cut short.
	clk := newClock()
	origin := roundTripper(func(r *http.Request) (*http.Response, error) {
		h := http.Header{"Cache-Control": {"max-age=600"}, "Vary": {"Accept-Encoding"}, "Etag": {`"v1"`},
			"Date": {clk.Now().UTC().Format(http.TimeFormat)}, "Content-Length": {"19"}}
		return &http.Response{StatusCode: http.StatusOK, Header: h, ContentLength: 19,
			Body: io.NopCloser(strings.NewReader("hello, stored world")), Request: r}, nil
	})
	c, err := cache.New(cache.Config{Storage: st, Now: clk.Now})
	if err != nil {
		f.Fatal(err)
	}
	request(c.Handler(origin), "GET", "http://example.com/x", nil)
	c.Wait()
	var seeds []cache.Entry
	if err := st.Walk(func(e cache.Entry) error { seeds = append(seeds, e); return nil }); err != nil || len(seeds) != 1 {
		f.Fatalf("walk: %d entries, %v", len(seeds), err)
	}
	for _, e := range seeds {
		f.Add(e.Meta, e.Size, "")
		f.Add(e.Meta[:len(e.Meta)/2], e.Size, "bytes=0-3")
		f.Add(e.Meta, e.Size+100, "bytes=-4")
	}
	f.Add([]byte("{}"), int64(-1), "")

	const key, body = "example.com/x", "fuzzbody"
	payload := []byte("hello, stored world")
	f.Fuzz(func(t *testing.T, meta []byte, size int64, rng string) {
		st := &cache.MemStorage{}
		if err := st.WriteChunk(body, 0, payload); err != nil {
			t.Fatal(err)
		}
		if err := st.Commit(cache.Entry{Key: key, Body: body, Size: size, Meta: meta}); err != nil {
			t.Fatal(err)
		}
		c, err := cache.New(cache.Config{Storage: st, Now: clk.Now})
		if err != nil {
			t.Fatalf("open over one stored entry: %v", err)
		}
		upstream := roundTripper(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Length": {"5"}},
				Body: io.NopCloser(strings.NewReader("fresh")), ContentLength: 5, Request: r}, nil
		})
		hdr := map[string]string{}
		if rng != "" {
			hdr["Range"] = rng
		}
		w := request(c.Handler(upstream), "GET", "http://example.com/x", hdr)
		c.Wait()
		got, _ := io.ReadAll(w.Result().Body)
		if w.Code == http.StatusOK {
			if cl := w.Header().Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(got)) {
				t.Fatalf("200 with Content-Length %s and %d bytes", cl, len(got))
			}
		}
	})
}

// roundTripper adapts a function to http.RoundTripper.
type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
