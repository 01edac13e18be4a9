package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAdminAddr is the admin listener's address when none is given:
// loopback, since metrics and admin handlers are not for the public.
const DefaultAdminAddr = "127.0.0.1:9090"

// Admin serves plain HTTP for operators: /metrics (Prometheus exposition
// of a registry), /healthz (200 "ok"), and handlers mounted with Handle.
type Admin struct {
	tcpServer // Listen, Addr, Serve, Close
	logger    *slog.Logger
	mux       *http.ServeMux
}

// NewAdmin builds an admin server for addr (DefaultAdminAddr when empty)
// exposing the metrics gathered from g. A nil logger discards logs.
func NewAdmin(addr string, g prometheus.Gatherer, logger *slog.Logger) (*Admin, error) {
	if addr == "" {
		addr = DefaultAdminAddr
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("admin address %q: %w", addr, err)
	}
	if g == nil {
		return nil, errors.New("admin: no metrics gatherer")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Admin{logger: logger, mux: http.NewServeMux()}
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError, // a broken collector must not hide the rest
	}))
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
	})
	a.tcpServer = tcpServer{
		name: "admin",
		addr: addr,
		srv: &http.Server{
			Handler:           a.mux,
			ReadHeaderTimeout: DefaultReadHeaderTimeout,
			IdleTimeout:       DefaultIdleTimeout,
			MaxHeaderBytes:    DefaultMaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		},
		shutdown: DefaultShutdownTimeout,
		onListen: func(addr net.Addr) {
			if ip := addr.(*net.TCPAddr).IP; !ip.IsLoopback() {
				logger.Warn("admin listener is reachable beyond this machine", "addr", addr.String())
			} else {
				logger.Info("listening", "addr", addr.String())
			}
		},
	}
	return a, nil
}

// Handle mounts h on the admin mux under pattern (http.ServeMux syntax,
// such as "POST /purge"). It is safe to call while serving; like
// http.ServeMux.Handle it panics if pattern conflicts with another.
func (a *Admin) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }
