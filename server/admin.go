package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	gosync "sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAdminAddr is the admin listener's address when none is given:
// loopback, since metrics and admin handlers are not for the public.
const DefaultAdminAddr = "127.0.0.1:9090"

// Admin serves plain HTTP for operators: /metrics (Prometheus exposition
// of a registry), /healthz (200 "ok"), and handlers mounted with Handle.
type Admin struct {
	addr   string
	logger *slog.Logger
	mux    *http.ServeMux
	srv    *http.Server

	mu   gosync.Mutex // guards ln and used
	ln   net.Listener
	used bool // Serve or Close was called
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
	a := &Admin{addr: addr, logger: logger, mux: http.NewServeMux()}
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError, // a broken collector must not hide the rest
	}))
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
	})
	a.srv = &http.Server{
		Handler:           a.mux,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return a, nil
}

// Handle mounts h on the admin mux under pattern (http.ServeMux syntax,
// such as "POST /purge"). It is safe to call while serving; like
// http.ServeMux.Handle it panics if pattern conflicts with another.
func (a *Admin) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// Listen binds the admin address. Errors name it.
func (a *Admin) Listen() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.used || a.ln != nil {
		return fmt.Errorf("listen admin %s: already listening or closed", a.addr)
	}
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		return fmt.Errorf("listen admin %s: %w", a.addr, err)
	}
	a.ln = ln
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		a.logger.Warn("admin listener is reachable beyond this machine", "addr", ln.Addr().String())
	} else {
		a.logger.Info("listening", "addr", ln.Addr().String())
	}
	return nil
}

// Addr returns the bound address, or nil before Listen.
func (a *Admin) Addr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		return nil
	}
	return a.ln.Addr()
}

// Serve serves until ctx is done, then lets in-flight requests finish
// within DefaultShutdownTimeout. It calls Listen if it has not been
// called. It returns nil after a clean shutdown caused by ctx.
func (a *Admin) Serve(ctx context.Context) error {
	a.mu.Lock()
	if a.used {
		a.mu.Unlock()
		return fmt.Errorf("serve admin %s: already served or closed", a.addr)
	}
	needListen := a.ln == nil
	a.mu.Unlock()
	if needListen {
		if err := a.Listen(); err != nil {
			return err
		}
	}
	a.mu.Lock()
	a.used = true
	ln := a.ln
	a.mu.Unlock()

	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		serveErr = fmt.Errorf("serve admin %s: %w", ln.Addr(), serveErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), DefaultShutdownTimeout)
	defer cancel()
	err := a.srv.Shutdown(sctx)
	if err != nil {
		a.srv.Close()
		err = fmt.Errorf("shut down admin %s: %w", ln.Addr(), err)
	}
	if serveErr == nil {
		<-errc // ErrServerClosed, now that Shutdown has run
	}
	return errors.Join(serveErr, err)
}

// Close releases the listener of an Admin that will not Serve. It does
// nothing once Serve has been called.
func (a *Admin) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.used {
		return nil
	}
	a.used = true
	if a.ln == nil {
		return nil
	}
	return a.ln.Close()
}
