// Package server is Tern's front door: one address that serves HTTP/1.1 and
// HTTP/2 over TLS on TCP and HTTP/3 over QUIC on UDP, announces HTTP/3 with
// Alt-Svc, and shuts down gracefully. It also holds the plain-HTTP admin
// listener (metrics and health) and the request metrics middleware.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	gosync "sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/tern-edge/tern/internal/reqid"
)

// Defaults for the zero values of Config.
const (
	DefaultAddr              = ":8443"
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultAltSvcMaxAge      = 24 * time.Hour
	DefaultShutdownTimeout   = 10 * time.Second
)

// Config configures a Server. Zero durations and sizes take the defaults
// above.
type Config struct {
	// Addr is the host:port to serve on, such as ":8443" or "127.0.0.1:0".
	// The same port serves TCP (HTTP/1.1 and HTTP/2 over TLS) and UDP
	// (HTTP/3). Empty means DefaultAddr.
	Addr string
	// TLSConfig provides the certificates. The server works on clones: it
	// offers ALPN h2 and http/1.1 on TCP (keeping any other protocols the
	// config lists, such as acme-tls/1) and h3 on QUIC.
	TLSConfig *tls.Config
	// Handler serves every request, whatever the protocol.
	Handler http.Handler
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger

	// ReadHeaderTimeout bounds reading a request's headers on TCP, so a
	// slow client cannot hold a connection open for free.
	ReadHeaderTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request, on both TCP and QUIC.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the size of a request's headers.
	MaxHeaderBytes int
	// AltSvcMaxAge is how long clients may remember that HTTP/3 is offered
	// (the ma parameter of the Alt-Svc header on TCP responses).
	AltSvcMaxAge time.Duration
	// ShutdownTimeout bounds the graceful shutdown in Serve; requests still
	// running after it are cut off.
	ShutdownTimeout time.Duration

	// ReadTimeout, when set, bounds reading a whole request (headers and
	// body) on TCP. Zero means none: Limits' minimum body rate cuts off
	// slow senders without capping large uploads at a fixed time.
	ReadTimeout time.Duration
	// MaxConcurrentStreams bounds the requests in flight on one HTTP/2
	// connection and the streams a peer may open on one QUIC connection.
	MaxConcurrentStreams int
	// MaxResetStreams is how many requests an HTTP/2 client may abandon
	// (reset) on one connection before the server sends it GOAWAY;
	// 0 means DefaultMaxResetStreams.
	MaxResetStreams int
	// Limits bound request bodies on every protocol.
	Limits BodyLimits
	// Conns bound the TCP connections held open.
	Conns ConnLimits
	// Allow0RTT accepts QUIC 0-RTT (early data). Early requests can be
	// replayed, so even then only routes that opt in serve them, for safe
	// methods only (see routing.Route.EarlyData); off by default.
	Allow0RTT bool
}

// Server serves one address over TCP and UDP. Create it with New, bind
// with Listen, run with Serve. A Server serves once.
type Server struct {
	cfg    Config
	logger *slog.Logger

	tcpTLS  *tls.Config
	quicTLS *tls.Config
	h1      *http.Server
	h3      *http3.Server

	// mu guards the listeners, which Listen sets and Serve or Close
	// consume.
	mu     gosync.Mutex
	tcp    net.Listener
	udp    net.PacketConn
	altSvc string // Alt-Svc header value, once the UDP port is known
	used   bool   // Serve or Close was called
}

// New validates cfg and builds a Server; it binds nothing yet.
func New(cfg Config) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("server: no handler")
	}
	if cfg.TLSConfig == nil ||
		len(cfg.TLSConfig.Certificates) == 0 && cfg.TLSConfig.GetCertificate == nil && cfg.TLSConfig.GetConfigForClient == nil {
		return nil, errors.New("server: TLS config has no certificates")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("server address %q: %w", cfg.Addr, err)
	}
	setDefault(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&cfg.AltSvcMaxAge, DefaultAltSvcMaxAge)
	setDefault(&cfg.ShutdownTimeout, DefaultShutdownTimeout)
	setDefault(&cfg.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	setDefault(&cfg.MaxResetStreams, DefaultMaxResetStreams)
	cfg.Limits = cfg.Limits.withDefaults()
	cfg.Conns = cfg.Conns.withDefaults()
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	s := &Server{cfg: cfg, logger: logger}
	s.tcpTLS = cfg.TLSConfig.Clone()
	s.tcpTLS.NextProtos = withALPN(cfg.TLSConfig.NextProtos, "h2", "http/1.1")
	// ConfigureTLSConfig initialises session ticket keys on the config it
	// is given before cloning it: give it a copy.
	s.quicTLS = http3.ConfigureTLSConfig(cfg.TLSConfig.Clone())

	// Every request gets an id, so that an error a client is shown can be
	// found in the log.
	handler := reqid.Middleware(cfg.Limits.wrap(cfg.Handler))
	tcpHandler := resetGuard(int64(cfg.MaxResetStreams), cfg.Conns.Registerer, handler)
	s.h1 = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveTCP(w, r, tcpHandler) }),
		ConnContext:       withConnStats,
		TLSConfig:         s.tcpTLS,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: cfg.MaxConcurrentStreams},
		// net/http logs failed handshakes and client mistakes here:
		// noise at Info for a public listener.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	s.h3 = &http3.Server{
		Handler:        handler,
		IdleTimeout:    cfg.IdleTimeout,
		MaxHeaderBytes: cfg.MaxHeaderBytes,
		Logger:         logger,
	}
	return s, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// withALPN returns want followed by the protocols of have not in want.
func withALPN(have []string, want ...string) []string {
	out := slices.Clone(want)
	for _, p := range have {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// listenAttempts bounds the retries when Addr has port 0 and the UDP port
// matching the TCP port the system picked is already taken.
const listenAttempts = 8

// Listen binds the TCP and UDP sockets on Addr's port. With port 0 it binds
// TCP first and then UDP on the port TCP got, trying again with a new port
// if that UDP port is taken. Errors name the address.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used || s.tcp != nil {
		return fmt.Errorf("listen %s: already listening or closed", s.cfg.Addr)
	}
	host, port, _ := net.SplitHostPort(s.cfg.Addr)
	attempts := 1
	if port == "0" {
		attempts = listenAttempts
	}
	var err error
	for range attempts {
		var tcp net.Listener
		var udp net.PacketConn
		tcp, udp, err = listenPair(host, port)
		if err == nil {
			s.tcp, s.udp = tcp, udp
			udpPort := udp.LocalAddr().(*net.UDPAddr).Port
			s.altSvc = fmt.Sprintf(`h3=":%d"; ma=%d`, udpPort, int(s.cfg.AltSvcMaxAge/time.Second))
			s.logger.Info("listening", "addr", tcp.Addr().String(), "protocols", "h1,h2,h3")
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
}

// listenPair binds TCP on host:port, then UDP on the port TCP got.
func listenPair(host, port string) (net.Listener, net.PacketConn, error) {
	tcp, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, nil, err
	}
	bound := tcp.Addr().(*net.TCPAddr)
	udpHost := host
	if host != "" && net.ParseIP(host) == nil {
		// A name may resolve differently twice; bind UDP to the address
		// TCP resolved it to.
		udpHost = bound.IP.String()
	}
	udp, err := net.ListenPacket("udp", net.JoinHostPort(udpHost, strconv.Itoa(bound.Port)))
	if err != nil {
		tcp.Close()
		return nil, nil, err
	}
	return tcp, udp, nil
}

// Addr returns the bound TCP address (the UDP port is the same), or nil
// before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// serveTCP announces HTTP/3 and passes the request on to h.
func (s *Server) serveTCP(w http.ResponseWriter, r *http.Request, h http.Handler) {
	w.Header()["Alt-Svc"] = []string{s.altSvc}
	h.ServeHTTP(w, r)
}

// Serve serves until ctx is done, then shuts down gracefully: QUIC stops
// accepting connections first, so that no client starts one about to be
// cut, then both protocols stop accepting and let in-flight requests
// finish, all within ShutdownTimeout. Serve calls Listen if it has not been
// called.
//
// # Errors
//
// Serve returns nil after a clean shutdown caused by ctx. It returns an
// error if a listener fails while serving, or if requests were still
// running when ShutdownTimeout ran out.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.used {
		s.mu.Unlock()
		return fmt.Errorf("serve %s: already served or closed", s.cfg.Addr)
	}
	needListen := s.tcp == nil
	s.mu.Unlock()
	if needListen {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.used = true
	tcp, udp := s.tcp, s.udp
	s.mu.Unlock()
	addr := tcp.Addr().String()

	// The QUIC transport is ours rather than http3's so that its
	// listener can be closed before the servers shut down.
	tr := &quic.Transport{Conn: udp}
	qln, err := tr.ListenEarly(s.quicTLS, &quic.Config{
		// 0-RTT requests can be replayed; functions are not all
		// idempotent. Off unless configured, and then per route.
		Allow0RTT:          s.cfg.Allow0RTT,
		MaxIncomingStreams: int64(s.cfg.MaxConcurrentStreams),
	})
	if err != nil {
		tcp.Close()
		tr.Close()
		udp.Close()
		return fmt.Errorf("serve %s: quic: %w", addr, err)
	}

	errc := make(chan error, 2)
	limited := s.cfg.Conns.limit(tcp, "tls")
	go func() {
		err := s.h1.ServeTLS(limited, "", "")
		if !errors.Is(err, http.ErrServerClosed) {
			err = fmt.Errorf("serve %s: tcp: %w", addr, err)
		}
		errc <- err
	}()
	go func() {
		err := s.h3.ServeListener(s.cfg.Conns.limitQUIC(qln, "quic"))
		if !errors.Is(err, http.ErrServerClosed) {
			err = fmt.Errorf("serve %s: udp: %w", addr, err)
		}
		errc <- err
	}()

	var serveErr error
	running := 2
	select {
	case <-ctx.Done():
		s.logger.Info("shutting down", "addr", addr)
	case serveErr = <-errc:
		running--
		s.logger.Error("serving failed; shutting down", "addr", addr, "error", serveErr)
	}
	shutdownErr := s.shutdown(addr, qln, tr, udp)
	for ; running > 0; running-- {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) && serveErr == nil {
			serveErr = err
		}
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = fmt.Errorf("serve %s: stopped unexpectedly", addr)
	}
	return errors.Join(serveErr, shutdownErr)
}

// shutdown stops both protocols within ShutdownTimeout, forcing them closed
// if requests outlast it.
func (s *Server) shutdown(addr string, qln *quic.EarlyListener, tr *quic.Transport, udp net.PacketConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := qln.Close(); err != nil {
		s.logger.Debug("close quic listener", "addr", addr, "error", err)
	}
	var h3Err error
	var wg gosync.WaitGroup
	wg.Go(func() { h3Err = s.h3.Shutdown(ctx) }) // closes connections itself on timeout
	h1Err := s.h1.Shutdown(ctx)
	if h1Err != nil {
		s.h1.Close()
	}
	wg.Wait()
	// The transport is closed after the HTTP/3 server so that its
	// connections end with a CONNECTION_CLOSE rather than silence.
	tr.Close()
	udp.Close()
	if err := errors.Join(h1Err, h3Err); err != nil {
		return fmt.Errorf("shut down %s within %s: %w", addr, s.cfg.ShutdownTimeout, err)
	}
	s.logger.Info("stopped", "addr", addr)
	return nil
}

// Close releases the listeners of a Server that will not Serve, such as
// when a later component fails to start. It does nothing once Serve has
// been called: Serve releases them itself.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used {
		return nil
	}
	s.used = true
	return closeAll(s.tcp, s.udp)
}

// closeAll closes the non-nil closers and joins their errors.
func closeAll(cs ...io.Closer) error {
	var errs []error
	for _, c := range cs {
		if c == nil {
			continue
		}
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
