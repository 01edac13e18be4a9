package server

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// NoApp is the app label of requests that no app serves.
const NoApp = "none"

// requestBuckets reach below the client library's defaults: a cached
// response or a small function answers in well under 5ms.
var requestBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Instrument wraps next so that every request counts in
// tern_requests_total{app,code,proto} and its duration in the histogram
// tern_request_seconds{app}. appOf names the app serving a request; ""
// counts as NoApp. proto is "1.1", "2" or "3" (or "1.0").
//
// Wrapping several handlers with the same registerer shares the metrics.
// Instrument panics if reg already holds different metrics under these
// names, as prometheus.MustRegister does.
func Instrument(reg prometheus.Registerer, appOf func(*http.Request) string, next http.Handler) http.Handler {
	requests := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tern_requests_total",
		Help: "HTTP requests served, by app, status code and protocol version.",
	}, []string{"app", "code", "proto"}))
	seconds := register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tern_request_seconds",
		Help:    "Time to serve an HTTP request, by app.",
		Buckets: requestBuckets,
	}, []string{"app"}))

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		app := appOf(r)
		if app == "" {
			app = NoApp
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		code := sw.code
		if code == 0 {
			code = http.StatusOK // the handler wrote nothing
		}
		requests.WithLabelValues(app, strconv.Itoa(code), proto(r)).Inc()
		seconds.WithLabelValues(app).Observe(time.Since(start).Seconds())
	})
}

// register registers c with reg, or returns the collector already
// registered in its place.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// proto is the protocol version label: few values, unlike r.Proto, which
// a client chooses.
func proto(r *http.Request) string {
	switch {
	case r.ProtoMajor >= 2:
		return strconv.Itoa(r.ProtoMajor)
	case r.ProtoMinor == 0:
		return "1.0"
	default:
		return "1.1"
	}
}

// statusWriter records the final status code a handler sends.
type statusWriter struct {
	http.ResponseWriter
	code int
}

// WriteHeader records code unless it is informational (1xx), which a
// final status follows.
func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom passes a body on to the server's ReadFrom, which sends a file
// with sendfile; without it io.Copy would copy through a buffer.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

// Flush keeps streaming responses streaming; a type assertion on the
// wrapper must still find http.Flusher.
func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer's other
// abilities (deadlines, hijacking, HTTP/3 streams).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var _ http.Flusher = (*statusWriter)(nil)
