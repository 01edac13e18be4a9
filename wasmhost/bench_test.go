package wasmhost

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// Cold-start benchmarks: every op instantiates a fresh instance, runs the
// guest's _start, parses its CGI output, writes the response to an
// httptest recorder and closes the instance, all through Serve. Besides
// ns/op they report the p50 and p99 of the per-op latencies.

func BenchmarkColdStartHello(b *testing.B) {
	benchColdStart(b, "hello/hello.wasm", "/hello")
}

func BenchmarkColdStartEcho(b *testing.B) {
	benchColdStart(b, "echo/echo.wasm", "/echo")
}

func BenchmarkColdStartHelloParallel(b *testing.B) {
	benchColdStartParallel(b, "hello/hello.wasm", "/hello")
}

func BenchmarkColdStartEchoParallel(b *testing.B) {
	benchColdStartParallel(b, "echo/echo.wasm", "/echo")
}

// benchApp loads a guest for a benchmark and serves it once, so that
// compiling is not measured.
func benchApp(b *testing.B, path, route string) *App {
	b.Helper()
	h := newHost(b)
	app := h.load(b, route, path, Limits{})
	if w := serve(app, newBenchRequest(route), route); w.Code != 200 {
		b.Fatalf("warm-up request: %d %s", w.Code, w.Body)
	}
	return app
}

// newBenchRequest is a typical small GET, with the headers a browser or
// curl sends.
func newBenchRequest(route string) *http.Request {
	r := httptest.NewRequest("GET", "http://example.com"+route+"/item?id=42", nil)
	r.Header.Set("User-Agent", "curl/8.5.0")
	r.Header.Set("Accept", "*/*")
	r.Header.Set("Accept-Encoding", "gzip")
	return r
}

func benchColdStart(b *testing.B, path, route string) {
	app := benchApp(b, path, route)
	r := newBenchRequest(route)
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		w := httptest.NewRecorder()
		app.Serve(w, r, route)
		lat = append(lat, time.Since(start))
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	b.StopTimer()
	reportPercentiles(b, lat)
	_ = app.Close(context.Background())
}

func benchColdStartParallel(b *testing.B, path, route string) {
	app := benchApp(b, path, route)
	var mu sync.Mutex
	var lat []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := newBenchRequest(route)
		var mine []time.Duration
		for pb.Next() {
			start := time.Now()
			w := httptest.NewRecorder()
			app.Serve(w, r, route)
			mine = append(mine, time.Since(start))
			if w.Code != 200 {
				b.Errorf("status %d: %s", w.Code, w.Body)
				return
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	reportPercentiles(b, lat)
}

// reportPercentiles reports the p50 and p99 of per-op latencies.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkGrowToCap serves the grow guest, which adds one 64 KiB page at
// a time until memory.grow fails at the 64 MiB cap. Goal: under 2x the
// cap allocated (Go heap B/op, and mapped-B/op for what is reserved
// outside it) and under 50 ms per request.
func BenchmarkGrowToCap(b *testing.B) {
	h := newHost(b)
	app := h.load(b, "grow", "faults/grow.wasm", Limits{MemoryBytes: 64 << 20, Timeout: time.Minute})
	r := httptest.NewRequest("GET", "/grow", nil)
	if w := serve(app, r, "/grow"); w.Code != 500 {
		b.Fatalf("warm-up: %d %s", w.Code, w.Body)
	}
	mapped := h.mem.mapped.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if w := serve(app, r, "/grow"); w.Code != 500 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(h.mem.mapped.Load()-mapped)/float64(b.N), "mapped-B/op")
}

// BenchmarkStackOverflow serves the recurse guest, which recurses until
// the call stack overflows.
func BenchmarkStackOverflow(b *testing.B) {
	h := newHost(b)
	app := h.load(b, "recurse", "faults/recurse.wasm", Limits{})
	r := httptest.NewRequest("GET", "/r", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if w := serve(app, r, "/r"); w.Code != 500 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
