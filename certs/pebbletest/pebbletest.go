// Package pebbletest runs Pebble, Let's Encrypt's test ACME server, inside a
// test process on loopback, with a DNS server that resolves every name to
// 127.0.0.1, so that Pebble's validation authority checks HTTP-01 and
// TLS-ALPN-01 challenges against listeners of the test itself.
package pebbletest

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// Options configure a Pebble.
type Options struct {
	// HTTPPort and TLSPort are where the validation authority connects for
	// HTTP-01 and TLS-ALPN-01 challenges (on 127.0.0.1).
	HTTPPort, TLSPort int
	// EAB, when not empty, maps key IDs to base64url HMAC keys and makes
	// external account binding mandatory.
	EAB map[string]string
	// Logs receives Pebble's logs; nil discards them.
	Logs io.Writer
}

// Pebble is an in-process ACME server.
type Pebble struct {
	// URL is the ACME directory URL.
	URL string
	// ClientRoots trusts the directory's own TLS certificate, for the ACME
	// client; ClientRootPEM is that certificate in PEM, for configs that
	// name a file.
	ClientRoots   *x509.CertPool
	ClientRootPEM []byte
	// Roots trusts the certificates Pebble issues, for TLS clients of the
	// server under test; set by Run.
	Roots *x509.CertPool

	t       testing.TB
	handler atomic.Pointer[http.Handler]

	mu       gosync.Mutex
	orders   int
	requests int
}

// Start runs Pebble with opts until the test ends: New, then Run.
func Start(t testing.TB, opts Options) *Pebble {
	t.Helper()
	p := New(t)
	p.Run(opts)
	return p
}

// New starts Pebble's HTTPS endpoint, so that its directory URL and
// certificate are known, but answers 503 until Run: the ports Pebble
// validates challenges on are only known once the server under test has
// bound them, and the server under test may need the URL first.
func New(t testing.TB) *Pebble {
	t.Helper()
	p := &Pebble{t: t}
	srv := httptest.NewUnstartedServer(p.count(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := p.handler.Load()
		if h == nil {
			http.Error(w, "pebble not running yet", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	})))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.URL = srv.URL + wfe.DirectoryPath
	p.ClientRoots = x509.NewCertPool()
	p.ClientRoots.AddCert(srv.Certificate())
	p.ClientRootPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return p
}

// Run starts the ACME server proper. Pebble reads its tuning from the
// environment; Run sets it with t.Setenv, so tests using it cannot be
// parallel: no random sleeps before validation, no nonces rejected for
// practice, no authorization reuse (every order validates afresh).
func (p *Pebble) Run(opts Options) {
	t := p.t
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	logs := opts.Logs
	if logs == nil {
		logs = io.Discard
	}
	logger := log.New(logs, "pebble ", log.Lmicroseconds)

	resolver := startDNS(t)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, opts.HTTPPort, opts.TLSPort, false, resolver, store)
	for kid, key := range opts.EAB {
		if err := store.AddExternalAccountKeyByID(kid, key); err != nil {
			t.Fatalf("pebble: EAB key %s: %v", kid, err)
		}
	}
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, len(opts.EAB) > 0, 0, 0)
	p.Roots = x509.NewCertPool()
	p.Roots.AddCert(authority.GetRootCert(0).Cert)
	h := front.Handler()
	p.handler.Store(&h)
}

// count records requests and new orders.
func (p *Pebble) count(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.requests++
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/order-plz") {
			p.orders++
		}
		p.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// Orders returns how many new orders Pebble has received.
func (p *Pebble) Orders() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.orders
}

// Requests returns how many requests of any kind Pebble has received.
func (p *Pebble) Requests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests
}

// startDNS serves DNS over TCP on an ephemeral loopback port, answering
// every A query with 127.0.0.1 and every other query with nothing, and
// returns its address. Pebble's validation authority asks it over TCP.
func startDNS(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pebble dns: %v", err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// Port returns the port of a host:port address.
func Port(t testing.TB, addr net.Addr) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
