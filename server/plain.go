package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	gosync "sync"
	"time"
)

// DefaultPlainAddr is the plain HTTP listener's address when none is given:
// port 80, where ACME CAs send HTTP-01 challenges and browsers send
// requests typed without a scheme.
const DefaultPlainAddr = ":80"

// PlainConfig configures a Plain listener. Zero durations and sizes take
// the defaults of Config.
type PlainConfig struct {
	// Addr is the host:port to listen on; empty means DefaultPlainAddr.
	Addr string
	// Handler serves every request: typically the ACME HTTP-01 challenge
	// handler in front of the router, whose routes redirect to HTTPS or
	// refuse plain HTTP as they ask.
	Handler http.Handler
	// Logger receives the listener's logs; nil discards them.
	Logger *slog.Logger

	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	ShutdownTimeout   time.Duration
	// Limits bound request bodies as on the TLS listener.
	Limits BodyLimits
}

// Plain serves plain HTTP/1.1 on TCP. Create it with NewPlain, bind with
// Listen, run with Serve. A Plain serves once.
type Plain struct {
	cfg    PlainConfig
	logger *slog.Logger
	srv    *http.Server

	mu   gosync.Mutex // guards ln and used
	ln   net.Listener
	used bool // Serve or Close was called
}

// NewPlain validates cfg and builds a Plain; it binds nothing yet.
func NewPlain(cfg PlainConfig) (*Plain, error) {
	if cfg.Handler == nil {
		return nil, errors.New("plain listener: no handler")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultPlainAddr
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("plain listener address %q: %w", cfg.Addr, err)
	}
	setDefault(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&cfg.ShutdownTimeout, DefaultShutdownTimeout)
	cfg.Limits = cfg.Limits.withDefaults()
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Plain{cfg: cfg, logger: logger}
	p.srv = &http.Server{
		Handler:           cfg.Limits.wrap(cfg.Handler),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// Listen binds the address. Errors name it.
func (p *Plain) Listen() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used || p.ln != nil {
		return fmt.Errorf("listen plain %s: already listening or closed", p.cfg.Addr)
	}
	ln, err := net.Listen("tcp", p.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen plain %s: %w", p.cfg.Addr, err)
	}
	p.ln = ln
	p.logger.Info("listening", "addr", ln.Addr().String(), "protocols", "http/1.1 (plain)")
	return nil
}

// Addr returns the bound address, or nil before Listen.
func (p *Plain) Addr() net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return nil
	}
	return p.ln.Addr()
}

// Serve serves until ctx is done, then lets in-flight requests finish
// within ShutdownTimeout. It calls Listen if it has not been called. It
// returns nil after a clean shutdown caused by ctx.
func (p *Plain) Serve(ctx context.Context) error {
	p.mu.Lock()
	if p.used {
		p.mu.Unlock()
		return fmt.Errorf("serve plain %s: already served or closed", p.cfg.Addr)
	}
	needListen := p.ln == nil
	p.mu.Unlock()
	if needListen {
		if err := p.Listen(); err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.used = true
	ln := p.ln
	p.mu.Unlock()

	errc := make(chan error, 1)
	go func() { errc <- p.srv.Serve(ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		serveErr = fmt.Errorf("serve plain %s: %w", ln.Addr(), serveErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownTimeout)
	defer cancel()
	err := p.srv.Shutdown(sctx)
	if err != nil {
		p.srv.Close()
		err = fmt.Errorf("shut down plain %s within %s: %w", ln.Addr(), p.cfg.ShutdownTimeout, err)
	}
	if serveErr == nil {
		<-errc // ErrServerClosed, now that Shutdown has run
	}
	return errors.Join(serveErr, err)
}

// Close releases the listener of a Plain that will not Serve. It does
// nothing once Serve has been called.
func (p *Plain) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used {
		return nil
	}
	p.used = true
	if p.ln == nil {
		return nil
	}
	return p.ln.Close()
}
