// Package certs owns the agent's certificates for public host names: it
// obtains and renews them from an ACME CA (Let's Encrypt unless told
// otherwise) with certmagic, keeps them in the agent's store so a restart
// reuses them, and answers TLS handshakes. A certificate is obtained only
// for a host the agent's routing table claims, on the first handshake that
// asks for it; any other name gets no certificate and causes no ACME
// traffic. Local names (localhost, IP literals, no SNI) are served the
// local CA's certificate when one is given.
package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
)

// LetsEncrypt is the default ACME directory.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// acmeTLS1 is the ALPN protocol of TLS-ALPN-01 challenges (RFC 8737).
const acmeTLS1 = "acme-tls/1"

// ErrNoCertificate reports a handshake for a name the agent has no
// certificate for and will not obtain one for.
var ErrNoCertificate = errors.New("no certificate for this name")

// EAB is an ACME external account binding, which some CAs require to tie
// the agent's ACME account to an account with them.
type EAB struct {
	// KeyID is the key identifier the CA gave.
	KeyID string
	// MACKey is the HMAC key the CA gave, base64url-encoded.
	MACKey string
}

// Config configures a Manager.
type Config struct {
	// Storage keeps certificates, keys, ACME accounts and locks; it must
	// outlive the Manager. Required.
	Storage certmagic.Storage
	// Allow reports whether host (lower-case, no port, no trailing dot)
	// may have a certificate: the agent answers from its routing table.
	// It is called during handshakes, so it must be fast and safe for
	// concurrent use. Required.
	Allow func(host string) bool
	// Directory is the ACME directory URL; empty means LetsEncrypt.
	Directory string
	// Email is the contact address of the ACME account; may be empty.
	Email string
	// EAB is the external account binding, when the CA requires one.
	EAB *EAB
	// DisableHTTP01 and DisableTLSALPN01 turn a challenge type off. At
	// least one must stay on. HTTP-01 needs the plain listener on port 80
	// with HTTPHandler in front; TLS-ALPN-01 needs the TLS listener on 443.
	DisableHTTP01, DisableTLSALPN01 bool
	// HTTPPort and TLSPort are the ports the agent's listeners hold for
	// challenges (default 80 and 443). certmagic tries to bind them itself
	// and, finding them taken, leaves the challenges to our listeners.
	HTTPPort, TLSPort int
	// DirectoryRoots, when set, are the only roots trusted for the ACME
	// directory's own TLS certificate (a private or test CA).
	DirectoryRoots *x509.CertPool
	// LocalCert, when set, is served for local names: an empty SNI, an IP
	// literal, or a name in LocalHosts. Without it they fail the handshake.
	LocalCert *tls.Certificate
	// LocalHosts are the names LocalCert covers, such as "localhost".
	LocalHosts []string
	// Logger receives certmagic's logs; nil discards them.
	Logger *slog.Logger
}

// Manager answers TLS handshakes with managed certificates and obtains and
// renews them. It is safe for concurrent use. Close stops its renewals.
type Manager struct {
	allow  func(string) bool
	local  *tls.Certificate
	locals map[string]bool
	cache  *certmagic.Cache
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer
	closed gosync.Once
}

// New builds a Manager. It contacts no CA: certificates are obtained on
// the first handshake for an allowed name, and renewed in the background.
func New(cfg Config) (*Manager, error) {
	if cfg.Storage == nil {
		return nil, errors.New("certs: no storage")
	}
	if cfg.Allow == nil {
		return nil, errors.New("certs: no host policy (Allow)")
	}
	if cfg.DisableHTTP01 && cfg.DisableTLSALPN01 {
		return nil, errors.New("certs: both HTTP-01 and TLS-ALPN-01 disabled: no challenge left to solve")
	}
	if cfg.Directory == "" {
		cfg.Directory = LetsEncrypt
	}
	if cfg.EAB != nil && (cfg.EAB.KeyID == "" || cfg.EAB.MACKey == "") {
		return nil, errors.New("certs: external account binding needs both a key ID and a MAC key")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	zl := newZapLogger(logger)

	m := &Manager{allow: cfg.Allow, local: cfg.LocalCert, locals: map[string]bool{}}
	for _, h := range cfg.LocalHosts {
		m.locals[normalize(h)] = true
	}
	var magic *certmagic.Config
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		Logger:           zl,
	})
	magic = certmagic.New(m.cache, certmagic.Config{
		Storage: cfg.Storage,
		Logger:  zl,
		OnDemand: &certmagic.OnDemandConfig{
			DecisionFunc: func(_ context.Context, name string) error {
				if !m.allow(normalize(name)) {
					return fmt.Errorf("certificate for %q: %w", name, ErrNoCertificate)
				}
				return nil
			},
		},
	})
	var eab *acme.EAB
	if cfg.EAB != nil {
		eab = &acme.EAB{KeyID: cfg.EAB.KeyID, MACKey: cfg.EAB.MACKey}
	}
	m.issuer = certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:                      cfg.Directory,
		TestCA:                  cfg.Directory, // no silent switch to a staging CA on retries
		Email:                   cfg.Email,
		Agreed:                  true,
		ExternalAccount:         eab,
		DisableHTTPChallenge:    cfg.DisableHTTP01,
		DisableTLSALPNChallenge: cfg.DisableTLSALPN01,
		AltHTTPPort:             cfg.HTTPPort,
		AltTLSALPNPort:          cfg.TLSPort,
		TrustedRoots:            cfg.DirectoryRoots,
		Logger:                  zl,
	})
	magic.Issuers = []certmagic.Issuer{quietIssuer{m.issuer}}
	m.magic = magic
	return m, nil
}

// quietIssuer keeps certmagic from ever prompting on standard input for an
// email address: certmagic does so for interactive operations without one,
// and an agent has no one at its terminal.
type quietIssuer struct{ *certmagic.ACMEIssuer }

// PreCheck runs the ACME issuer's checks, never interactively.
func (q quietIssuer) PreCheck(ctx context.Context, names []string, _ bool) error {
	return q.ACMEIssuer.PreCheck(ctx, names, false)
}

// TLSConfig returns a config for the agent's TLS listener: its
// GetCertificate serves managed and local certificates, and it offers the
// TLS-ALPN-01 protocol besides whatever the server adds.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		GetCertificate: m.GetCertificate,
		NextProtos:     []string{acmeTLS1},
		MinVersion:     tls.VersionTLS12,
	}
}

// GetCertificate answers one handshake: a TLS-ALPN-01 challenge, a local
// name, or an allowed host (obtaining its certificate if it has none yet).
// Any other name is an error wrapping ErrNoCertificate, and the handshake
// fails without reaching the CA.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if slices.Contains(hello.SupportedProtos, acmeTLS1) {
		return m.magic.GetCertificate(hello)
	}
	name := normalize(hello.ServerName)
	if name == "" || net.ParseIP(name) != nil || m.locals[name] {
		if m.local != nil {
			return m.local, nil
		}
		return nil, fmt.Errorf("certificate for %q: %w", name, ErrNoCertificate)
	}
	if !m.allow(name) {
		return nil, fmt.Errorf("certificate for %q: %w", name, ErrNoCertificate)
	}
	return m.magic.GetCertificate(hello)
}

// SetChallengePorts records the ports the agent's listeners hold for
// HTTP-01 and TLS-ALPN-01 once they are bound (a configured port of 0 is
// only known then); zero leaves a port as it was. Call it before serving:
// it is not safe for use during handshakes.
func (m *Manager) SetChallengePorts(httpPort, tlsPort int) {
	if httpPort != 0 {
		m.issuer.AltHTTPPort = httpPort
	}
	if tlsPort != 0 {
		m.issuer.AltTLSALPNPort = tlsPort
	}
}

// HTTPHandler wraps next, the plain listener's handler, to answer HTTP-01
// challenges of this Manager's ACME issuer.
func (m *Manager) HTTPHandler(next http.Handler) http.Handler {
	return m.issuer.HTTPChallengeHandler(next)
}

// Renew renews host's certificate now, whatever its expiry, and serves the
// new one from the next handshake. host must already have a certificate.
func (m *Manager) Renew(ctx context.Context, host string) error {
	host = normalize(host)
	if err := m.magic.RenewCertSync(ctx, host, true); err != nil {
		return fmt.Errorf("renew certificate for %s: %w", host, err)
	}
	old := m.cache.AllMatchingCertificates(host)
	fresh, err := m.magic.CacheManagedCertificate(ctx, host)
	if err != nil {
		return fmt.Errorf("renew certificate for %s: load renewed: %w", host, err)
	}
	var stale []string
	for _, c := range old {
		if c.Hash() != fresh.Hash() {
			stale = append(stale, c.Hash())
		}
	}
	m.cache.Remove(stale)
	return nil
}

// Obtain obtains host's certificate now if storage has none, and caches
// it, rather than waiting for the first handshake. host must be allowed.
func (m *Manager) Obtain(ctx context.Context, host string) error {
	host = normalize(host)
	if !m.allow(host) {
		return fmt.Errorf("obtain certificate for %s: %w", host, ErrNoCertificate)
	}
	if err := m.magic.ObtainCertSync(ctx, host); err != nil {
		return fmt.Errorf("obtain certificate for %s: %w", host, err)
	}
	if _, err := m.magic.CacheManagedCertificate(ctx, host); err != nil {
		return fmt.Errorf("obtain certificate for %s: load: %w", host, err)
	}
	return nil
}

// NotAfter returns the expiry of the certificate host is served now, for
// status and tests; ok is false when none is cached.
func (m *Manager) NotAfter(host string) (notAfter time.Time, ok bool) {
	for _, c := range m.cache.AllMatchingCertificates(normalize(host)) {
		if c.Leaf != nil && (!ok || c.Leaf.NotAfter.After(notAfter)) {
			notAfter, ok = c.Leaf.NotAfter, true
		}
	}
	return notAfter, ok
}

// Close stops the background renewals; calling it again does nothing.
// Handshakes after Close still get cached certificates.
func (m *Manager) Close() { m.closed.Do(m.cache.Stop) }

// normalize lower-cases a host name and drops a port and a trailing dot.
func normalize(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}
