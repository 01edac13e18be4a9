package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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
	// Limits bound request bodies and Conns the connections, as on the
	// TLS listener.
	Limits BodyLimits
	Conns  ConnLimits
}

// Plain serves plain HTTP/1.1 on TCP. Create it with NewPlain, bind with
// Listen, run with Serve. A Plain serves once.
type Plain struct {
	tcpServer // Listen, Addr, Serve, Close
	cfg       PlainConfig
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
	cfg.Conns = cfg.Conns.withDefaults()
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Plain{cfg: cfg, tcpServer: tcpServer{
		name: "plain",
		addr: cfg.Addr,
		srv: &http.Server{
			Handler:           cfg.Limits.wrap(cfg.Handler),
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			IdleTimeout:       cfg.IdleTimeout,
			MaxHeaderBytes:    cfg.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		},
		shutdown: cfg.ShutdownTimeout,
		wrap:     func(ln net.Listener) net.Listener { return cfg.Conns.limit(ln, "plain") },
		onListen: func(addr net.Addr) {
			logger.Info("listening", "addr", addr.String(), "protocols", "http/1.1 (plain)")
		},
	}}, nil
}
