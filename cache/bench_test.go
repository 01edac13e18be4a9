package cache_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tern-edge/tern/cache"
)

// BenchmarkHit serves cache hits over loopback HTTP/1.1 keep-alive, the
// path an edge node spends most of its time on.
func BenchmarkHit(b *testing.B) {
	for _, size := range []int{1 << 10, 100 << 10} {
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			clk := newClock()
			o := newOriginB(b, clk, size)
			c, _ := newCache(b, clk, cache.Config{})
			srv := httptest.NewServer(c.Handler(o))
			defer srv.Close()
			client := srv.Client()
			client.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
			fetch := func() error {
				resp, err := client.Get(srv.URL + "/obj")
				if err != nil {
					return err
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != int64(size) {
					return fmt.Errorf("read %d bytes: %v", n, err)
				}
				return nil
			}
			if err := fetch(); err != nil { // prime
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := fetch(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			if o.hits.Load() != 1 {
				b.Fatalf("origin hits %d, want 1", o.hits.Load())
			}
		})
	}
}

// BenchmarkHitHandler measures the handler alone, without the network.
func BenchmarkHitHandler(b *testing.B) {
	for _, size := range []int{1 << 10, 100 << 10} {
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			clk := newClock()
			o := newOriginB(b, clk, size)
			c, _ := newCache(b, clk, cache.Config{})
			h := c.Handler(o)
			request(h, "GET", "http://example.com/obj", nil)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := httptest.NewRequest("GET", "http://example.com/obj", nil)
				for pb.Next() {
					w := discardWriter{h: http.Header{}}
					h.ServeHTTP(&w, r)
					if w.n != size {
						b.Errorf("wrote %d bytes", w.n)
						return
					}
				}
			})
		})
	}
}

type discardWriter struct {
	h http.Header
	n int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

func newOriginB(b *testing.B, clk *clock, size int) *origin {
	o := &origin{clk: clk}
	body := make([]byte, size)
	serve := func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=86400")
		w.Write(body)
	}
	o.serve.Store(&serve)
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		(*o.serve.Load())(0, w, r)
	}))
	b.Cleanup(o.srv.Close)
	o.rt = o.srv.Client().Transport
	return o
}
