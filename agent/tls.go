package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/certs"
	"github.com/tern-edge/tern/server"
	"github.com/tern-edge/tern/store"
)

// Challenge types for ACMEConfig.Challenges.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// ACMEConfig configures automatic certificates from an ACME CA for the
// hosts the agent's routes claim. Off unless Enabled.
type ACMEConfig struct {
	// Enabled turns ACME on.
	Enabled bool `toml:"enabled"`
	// Directory is the CA's ACME directory URL; empty means Let's Encrypt.
	Directory string `toml:"directory"`
	// DirectoryCA is a PEM file of the roots that the directory's own TLS
	// certificate chains to, for a private CA; empty trusts the system's.
	DirectoryCA string `toml:"directory_ca"`
	// Email is the ACME account's contact address.
	Email string `toml:"email"`
	// EABKeyID and EABHMAC are the CA's external account binding, when it
	// requires one (the HMAC key base64url-encoded, as CAs hand it out).
	EABKeyID string `toml:"eab_kid"`
	EABHMAC  string `toml:"eab_hmac"`
	// HTTPListen is the plain HTTP listener (HTTP-01 challenges and
	// redirects to HTTPS). Empty means ":80" when ACME is on outside
	// `tern up`, and no plain listener otherwise.
	HTTPListen string `toml:"http_listen"`
	// Challenges lists the challenge types to use; empty means both.
	Challenges []string `toml:"challenges"`
}

// LimitsConfig bounds the public listeners; zero values take the server's
// defaults (see docs/CONFIG.md).
type LimitsConfig struct {
	// MaxHeader bounds a request's headers.
	MaxHeader artifact.Size `toml:"max_header"`
	// MaxBody bounds a request's body.
	MaxBody artifact.Size `toml:"max_body"`
	// BodyMinRate (bytes per second) and BodyGrace cut off clients that
	// send their bodies too slowly.
	BodyMinRate artifact.Size     `toml:"body_min_rate"`
	BodyGrace   artifact.Duration `toml:"body_grace"`
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout artifact.Duration `toml:"read_header_timeout"`
	// ReadTimeout, when set, bounds reading a whole request on TCP.
	ReadTimeout artifact.Duration `toml:"read_timeout"`
	// IdleTimeout is how long a keep-alive connection may stay idle.
	IdleTimeout artifact.Duration `toml:"idle_timeout"`
	// MaxConcurrentStreams bounds requests in flight per HTTP/2 or HTTP/3
	// connection.
	MaxConcurrentStreams int `toml:"max_concurrent_streams"`
	// Allow0RTT accepts QUIC early data, for the routes that opt in.
	Allow0RTT bool `toml:"allow_0rtt"`
	// MaxConns and MaxConnsPerAddr bound the TCP connections each
	// listener holds open, in total and per client IP address.
	MaxConns        int `toml:"max_conns"`
	MaxConnsPerAddr int `toml:"max_conns_per_addr"`
	// MaxResetStreams is how many requests an HTTP/2 client may reset on
	// one connection before it is sent GOAWAY.
	MaxResetStreams int `toml:"max_reset_streams"`
}

// validate checks the [acme] table.
func (c ACMEConfig) validate() error {
	if c.Directory != "" {
		u, err := url.Parse(c.Directory)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("acme.directory = %q: want an https URL", c.Directory)
		}
	}
	if (c.EABKeyID == "") != (c.EABHMAC == "") {
		return errors.New("acme: eab_kid and eab_hmac go together")
	}
	if c.HTTPListen != "" {
		if _, _, err := net.SplitHostPort(c.HTTPListen); err != nil {
			return fmt.Errorf("acme.http_listen = %q: %w", c.HTTPListen, err)
		}
	}
	for _, ch := range c.Challenges {
		if ch != ChallengeHTTP01 && ch != ChallengeTLSALPN01 {
			return fmt.Errorf("acme.challenges: %q: want %q or %q", ch, ChallengeHTTP01, ChallengeTLSALPN01)
		}
	}
	return nil
}

// validate checks the [limits] table.
func (c LimitsConfig) validate() error {
	for name, d := range map[string]artifact.Duration{
		"body_grace": c.BodyGrace, "read_header_timeout": c.ReadHeaderTimeout,
		"read_timeout": c.ReadTimeout, "idle_timeout": c.IdleTimeout,
	} {
		if d < 0 {
			return fmt.Errorf("limits.%s = %s: must not be negative", name, d)
		}
	}
	if c.MaxHeader > 1<<30 {
		return fmt.Errorf("limits.max_header = %d: at most 1GiB", c.MaxHeader)
	}
	for name, n := range map[string]int{
		"max_concurrent_streams": c.MaxConcurrentStreams,
		"max_conns":              c.MaxConns,
		"max_conns_per_addr":     c.MaxConnsPerAddr,
		"max_reset_streams":      c.MaxResetStreams,
	} {
		if n < 0 {
			return fmt.Errorf("limits.%s = %d: must not be negative", name, n)
		}
	}
	return nil
}

// tlsParts are the agent's ACME certificates and plain HTTP listener, both
// nil unless configured.
type tlsParts struct {
	certs *certs.Manager
	plain *server.Plain
}

// frontTLS returns the public listener's TLS config: the local CA's leaf
// for every name, or, with ACME on, ACME certificates for the hosts routes
// claim and the leaf for local names (cfg.TLS.Hosts, IP literals, no SNI).
func (a *Agent) frontTLS(leaf tls.Certificate) (*tls.Config, error) {
	acme := a.cfg.ACME
	if !acme.Enabled {
		return &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}, nil
	}
	cfg := certs.Config{
		Storage:          a.store.CertStorage(store.CertStorageOptions{}),
		Allow:            a.router.ClaimsHost,
		Directory:        acme.Directory,
		Email:            acme.Email,
		DisableHTTP01:    len(acme.Challenges) > 0 && !slices.Contains(acme.Challenges, ChallengeHTTP01),
		DisableTLSALPN01: len(acme.Challenges) > 0 && !slices.Contains(acme.Challenges, ChallengeTLSALPN01),
		HTTPPort:         addrPort(a.plainAddr()),
		TLSPort:          addrPort(a.cfg.Listen),
		LocalCert:        &leaf,
		LocalHosts:       a.cfg.TLS.Hosts,
		Logger:           a.logger.With("component", "acme"),
	}
	if acme.DirectoryCA != "" {
		b, err := os.ReadFile(acme.DirectoryCA)
		if err != nil {
			return nil, fmt.Errorf("acme.directory_ca: %w", err)
		}
		cfg.DirectoryRoots = x509.NewCertPool()
		if !cfg.DirectoryRoots.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("acme.directory_ca %s: no PEM certificate in it", acme.DirectoryCA)
		}
	}
	if acme.EABKeyID != "" {
		cfg.EAB = &certs.EAB{KeyID: acme.EABKeyID, MACKey: acme.EABHMAC}
	}
	m, err := certs.New(cfg)
	if err != nil {
		return nil, err
	}
	a.certs = m
	a.onUndo(m.Close)
	return m.TLSConfig(), nil
}

// plainAddr is the plain listener's address, or "" for none.
func (a *Agent) plainAddr() string {
	switch {
	case a.cfg.ACME.HTTPListen != "":
		return a.cfg.ACME.HTTPListen
	case a.cfg.ACME.Enabled && a.cfg.Hub.URL != "": // not `tern up`
		return server.DefaultPlainAddr
	}
	return ""
}

// addrPort is the port of host:port, or 0.
func addrPort(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// withLimits applies the [limits] table to a listener's config.
func (a *Agent) withLimits(sc server.Config) server.Config {
	l := a.cfg.Limits
	sc.MaxHeaderBytes = int(l.MaxHeader)
	sc.ReadHeaderTimeout = time.Duration(l.ReadHeaderTimeout)
	sc.ReadTimeout = time.Duration(l.ReadTimeout)
	sc.IdleTimeout = time.Duration(l.IdleTimeout)
	sc.MaxConcurrentStreams = l.MaxConcurrentStreams
	sc.MaxResetStreams = l.MaxResetStreams
	sc.Allow0RTT = l.Allow0RTT
	sc.Limits = server.BodyLimits{MaxBytes: int64(l.MaxBody), MinRate: int64(l.BodyMinRate), Grace: time.Duration(l.BodyGrace)}
	sc.Conns = server.ConnLimits{Max: l.MaxConns, MaxPerAddr: l.MaxConnsPerAddr, Registerer: a.reg}
	return sc
}

// listenPlain binds the plain HTTP listener when one is configured, with
// h (the public handler) behind the ACME challenge handler, and points
// HTTPS redirects at the public listener's port.
func (a *Agent) listenPlain(h http.Handler) error {
	if port := a.front.Addr().(*net.TCPAddr).Port; port != 443 {
		a.router.HTTPSPort = port
	}
	addr := a.plainAddr()
	if addr == "" {
		if a.certs != nil {
			a.certs.SetChallengePorts(0, a.front.Addr().(*net.TCPAddr).Port)
		}
		return nil
	}
	if a.certs != nil {
		h = a.certs.HTTPHandler(h)
	}
	sc := a.withLimits(server.Config{})
	p, err := server.NewPlain(server.PlainConfig{
		Addr:              addr,
		Handler:           h,
		Logger:            a.logger.With("component", "http-plain"),
		ReadHeaderTimeout: sc.ReadHeaderTimeout,
		IdleTimeout:       sc.IdleTimeout,
		MaxHeaderBytes:    sc.MaxHeaderBytes,
		Limits:            sc.Limits,
		Conns:             sc.Conns,
	})
	if err != nil {
		return err
	}
	if err := p.Listen(); err != nil {
		return err
	}
	a.plain = p
	a.onUndo(func() { p.Close() })
	if a.certs != nil {
		a.certs.SetChallengePorts(p.Addr().(*net.TCPAddr).Port, a.front.Addr().(*net.TCPAddr).Port)
	}
	return nil
}
