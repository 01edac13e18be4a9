package server

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxResetStreams bounds the streams an HTTP/2 client may reset on
// one connection before the server sends GOAWAY. A browser resets a few
// when a page is left mid-load; a rapid-reset attacker resets thousands,
// each of which costs a handler and perhaps an origin fetch.
const DefaultMaxResetStreams = 500

// connStats are the per-connection counts the handlers keep, reached from
// every request's context.
type connStats struct {
	resets atomic.Int64
	goaway atomic.Bool
}

type connStatsKey struct{}

// withConnStats is http.Server.ConnContext: each connection gets its own
// counts. HTTP/2 request contexts derive from it.
func withConnStats(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connStatsKey{}, &connStats{})
}

// resetGuard counts the HTTP/2 requests whose client went away before
// their handler finished (RST_STREAM, in the main) and, once a connection
// has had max of them, answers its requests with "Connection: close",
// which net/http's HTTP/2 server turns into a GOAWAY. The reset stream's
// own handler does so too, so that a client that only resets gets its
// GOAWAY as well.
func resetGuard(max int64, reg prometheus.Registerer, h http.Handler) http.Handler {
	goaways := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tern_http2_reset_goaways_total",
		Help: "HTTP/2 connections sent GOAWAY for resetting too many streams.",
	})
	if reg != nil {
		goaways = register(reg, goaways)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, _ := r.Context().Value(connStatsKey{}).(*connStats)
		if st == nil || r.ProtoMajor != 2 {
			h.ServeHTTP(w, r)
			return
		}
		if st.resets.Load() >= max {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
		if r.Context().Err() != nil && st.resets.Add(1) >= max {
			w.Header().Set("Connection", "close")
			if !st.goaway.Swap(true) {
				goaways.Inc()
			}
		}
	})
}
