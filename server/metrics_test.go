package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// exposition is reg's metrics in the text format.
func exposition(t *testing.T, reg prometheus.Gatherer) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func hasLines(t *testing.T, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(text, "\n"+l+"\n") {
			t.Errorf("metrics lack %q in:\n%s", l, text)
		}
	}
}

func TestInstrumentStatus(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		code    string
	}{
		{"nothing written", func(http.ResponseWriter, *http.Request) {}, "200"},
		{"body only", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "x") }, "200"},
		{"not found", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, "404"},
		{"twice", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503); w.WriteHeader(200) }, "503"},
		{"early hints first", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(103); w.WriteHeader(201) }, "201"},
		{"flush first", func(w http.ResponseWriter, _ *http.Request) { w.(http.Flusher).Flush(); w.WriteHeader(500) }, "200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			h := Instrument(reg, func(*http.Request) string { return "app1" }, tt.handler)
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
			hasLines(t, exposition(t, reg),
				`tern_requests_total{app="app1",code="`+tt.code+`",proto="1.1"} 1`,
				`tern_request_seconds_count{app="app1"} 1`)
		})
	}
}

func TestInstrumentFlusher(t *testing.T) {
	h := Instrument(prometheus.NewRegistry(), func(*http.Request) string { return "" },
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "part")
			f, ok := w.(http.Flusher)
			if !ok {
				t.Fatal("wrapped writer is not an http.Flusher")
			}
			f.Flush()
		}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if !rec.Flushed {
		t.Error("Flush did not reach the underlying writer")
	}
}

func TestInstrumentLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	appOf := func(r *http.Request) string { return strings.TrimPrefix(r.URL.Path, "/") }
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	// Two handlers on one registry share the metrics instead of panicking.
	h1, h2 := Instrument(reg, appOf, ok), Instrument(reg, appOf, ok)
	for _, req := range []struct {
		h           http.Handler
		path, proto string
		major, min  int
	}{
		{h1, "/", "HTTP/1.1", 1, 1},
		{h1, "/shop", "HTTP/2.0", 2, 0},
		{h2, "/shop", "HTTP/2.0", 2, 0},
		{h2, "/shop", "HTTP/3.0", 3, 0},
		{h2, "/old", "HTTP/1.0", 1, 0},
	} {
		r := httptest.NewRequest("GET", req.path, nil)
		r.Proto, r.ProtoMajor, r.ProtoMinor = req.proto, req.major, req.min
		req.h.ServeHTTP(httptest.NewRecorder(), r)
	}
	hasLines(t, exposition(t, reg),
		`tern_requests_total{app="none",code="200",proto="1.1"} 1`,
		`tern_requests_total{app="shop",code="200",proto="2"} 2`,
		`tern_requests_total{app="shop",code="200",proto="3"} 1`,
		`tern_requests_total{app="old",code="200",proto="1.0"} 1`,
		`tern_request_seconds_count{app="shop"} 3`,
	)
}

func TestInstrumentConflictPanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "tern_requests_total", Help: "other"}))
	defer func() {
		if recover() == nil {
			t.Error("Instrument accepted a registry holding a different tern_requests_total")
		}
	}()
	Instrument(reg, func(*http.Request) string { return "" }, http.NotFoundHandler())
}

// BenchmarkInstrument is the cost the middleware adds to every request.
func BenchmarkInstrument(b *testing.B) {
	h := Instrument(prometheus.NewRegistry(), func(*http.Request) string { return "app" },
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest("GET", "/", nil)
		w := httptest.NewRecorder()
		for pb.Next() {
			h.ServeHTTP(w, r)
		}
	})
}
