package agent

import (
	"io"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tern-edge/tern/cache"
)

// cacheMetrics counts what the cache answered, by origin route: the
// labels are the configured origin names and a fixed set of results, never
// a URL or a client.
type cacheMetrics struct {
	requests *prometheus.CounterVec // origin, result
	revalid  *prometheus.CounterVec // origin
	served   *prometheus.CounterVec // origin
}

func newCacheMetrics(reg prometheus.Registerer, c *cache.Cache) *cacheMetrics {
	m := &cacheMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tern_cache_requests_total",
			Help: "Requests the cache answered, by origin and result: hit, miss (fetched and stored if storable), stale (served stale: stale-while-revalidate, stale-if-error, offline) or pass (not cacheable).",
		}, []string{"origin", "result"}),
		revalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tern_cache_revalidations_total",
			Help: "Stale entries the cache asked the origin about before answering, by origin.",
		}, []string{"origin"}),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tern_cache_served_bytes_total",
			Help: "Body bytes the cache's routes sent clients, by origin.",
		}, []string{"origin"}),
	}
	stat := func(name, help string, counter bool, f func(cache.Stats) int64) prometheus.Collector {
		v := func() float64 { return float64(f(c.Stats())) }
		if counter {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, v)
		}
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, v)
	}
	reg.MustRegister(m.requests, m.revalid, m.served,
		stat("tern_cache_stored_bytes", "Bytes the cache's entries hold in storage.", false, func(s cache.Stats) int64 { return s.Bytes }),
		stat("tern_cache_entries", "Entries the cache holds.", false, func(s cache.Stats) int64 { return int64(s.Entries) }),
		stat("tern_cache_evictions_total", "Entries evicted to stay within the cache's budget or the disk's reserve.", true, func(s cache.Stats) int64 { return s.Evictions }),
		stat("tern_cache_purges_total", "Purge requests applied.", true, func(s cache.Stats) int64 { return s.Purges }),
		stat("tern_cache_purged_total", "Entries and fetches purges removed or marked stale.", true, func(s cache.Stats) int64 { return s.Purged }),
	)
	return m
}

// wrap counts h's answers for origin. The result is read from the
// Cache-Status header the cache sets, so the counts are what clients were
// told.
func (m *cacheMetrics) wrap(origin string, h http.Handler) http.Handler {
	served, revalid := m.served.WithLabelValues(origin), m.revalid.WithLabelValues(origin)
	results := map[string]prometheus.Counter{} // each present from the start
	for _, r := range []string{"hit", "miss", "stale", "pass"} {
		results[r] = m.requests.WithLabelValues(origin, r)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w}
		var rw http.ResponseWriter = cw
		if rf, ok := w.(io.ReaderFrom); ok {
			rw = &countingReaderFrom{countingWriter: cw, rf: rf}
		}
		h.ServeHTTP(rw, r)
		status := w.Header().Get("Cache-Status")
		results[cacheResult(status)].Inc()
		if strings.Contains(status, "fwd=stale") {
			revalid.Inc()
		}
		served.Add(float64(cw.n))
	})
}

// cacheResult classifies a Cache-Status value (docs/CACHE.md).
func cacheResult(status string) string {
	switch {
	case strings.Contains(status, "; hit") && (strings.Contains(status, "detail=stale") || strings.Contains(status, "detail=offline")):
		return "stale"
	case strings.Contains(status, "; hit"):
		return "hit"
	case strings.Contains(status, "fwd=miss"), strings.Contains(status, "fwd=uri-miss"), strings.Contains(status, "fwd=vary-miss"), strings.Contains(status, "fwd=stale"):
		return "miss"
	default:
		return "pass"
	}
}

// countingWriter counts the body bytes written through it.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes a flush on: streamed bodies must not wait in a buffer.
func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// countingReaderFrom keeps the connection's ReadFrom visible, which the
// cache's sendfile path looks for.
type countingReaderFrom struct {
	*countingWriter
	rf io.ReaderFrom
}

func (w *countingReaderFrom) ReadFrom(r io.Reader) (int64, error) {
	n, err := w.rf.ReadFrom(r)
	w.n += n
	return n, err
}
