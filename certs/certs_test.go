package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/tern-edge/tern/certs"
	"github.com/tern-edge/tern/certs/pebbletest"
	"github.com/tern-edge/tern/localca"
	"github.com/tern-edge/tern/server"
	"github.com/tern-edge/tern/store"
)

// rig is an agent's front door with a Pebble behind it: a plain HTTP
// listener for HTTP-01, the TLS/QUIC server for TLS-ALPN-01 and traffic,
// both answering through whichever Manager is current.
type rig struct {
	t                 *testing.T
	pebble            *pebbletest.Pebble
	mgr               atomic.Pointer[certs.Manager]
	addr              string // TLS and QUIC
	httpPort, tlsPort int
	dir               string // store directory
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("TERN_TEST_LOGS") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newRig(t *testing.T, eab map[string]string) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())

	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plain := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		m := r.mgr.Load()
		if m == nil {
			http.NotFound(w, req)
			return
		}
		m.HTTPHandler(http.NotFoundHandler()).ServeHTTP(w, req)
	})}
	go plain.Serve(plainLn)

	srv, err := server.New(server.Config{
		Addr: "127.0.0.1:0",
		TLSConfig: &tls.Config{
			NextProtos: []string{"acme-tls/1"},
			GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
				m := r.mgr.Load()
				if m == nil {
					return nil, errors.New("no manager yet")
				}
				return m.GetCertificate(h)
			},
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			fmt.Fprintf(w, "hello %s over %s", req.Host, req.Proto)
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		plain.Close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	r.addr = srv.Addr().String()
	r.httpPort = pebbletest.Port(t, plainLn.Addr())
	r.tlsPort = pebbletest.Port(t, srv.Addr())
	r.pebble = pebbletest.Start(t, pebbletest.Options{HTTPPort: r.httpPort, TLSPort: r.tlsPort, EAB: eab})
	return r
}

// open opens the rig's store; it is closed when the test ends unless the
// caller closes it first.
func (r *rig) open() *store.Store {
	r.t.Helper()
	st, err := store.Open(r.dir, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { st.Close() })
	return st
}

// manager builds a Manager over st that allows hosts ending in ".test"
// except "evil.test", and makes it the rig's current one.
func (r *rig) manager(st *store.Store, mod func(*certs.Config)) *certs.Manager {
	r.t.Helper()
	cfg := certs.Config{
		Storage:        st.CertStorage(store.CertStorageOptions{}),
		Allow:          func(h string) bool { return strings.HasSuffix(h, ".test") && h != "evil.test" },
		Directory:      r.pebble.URL,
		Email:          "ops@example.org",
		HTTPPort:       r.httpPort,
		TLSPort:        r.tlsPort,
		DirectoryRoots: r.pebble.ClientRoots,
		Logger:         testLogger(r.t),
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := certs.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(m.Close)
	r.mgr.Store(m)
	return m
}

// get fetches https://host/ over proto ("h1", "h2" or "h3") with a client
// that trusts only Pebble's roots, and returns the body and the serial of
// the certificate the server presented.
func (r *rig) get(proto, host string) (string, string, error) {
	r.t.Helper()
	tlsCfg := &tls.Config{RootCAs: r.pebble.Roots, ServerName: host}
	var rt http.RoundTripper
	switch proto {
	case "h1", "h2":
		tr := &http.Transport{
			TLSClientConfig: tlsCfg,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, r.addr)
			},
			Protocols: new(http.Protocols),
		}
		if proto == "h1" {
			tr.Protocols.SetHTTP1(true)
		} else {
			tr.Protocols.SetHTTP2(true)
		}
		defer tr.CloseIdleConnections()
		rt = tr
	case "h3":
		tr := &http3.Transport{
			TLSClientConfig: tlsCfg,
			Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
				return quic.DialAddrEarly(ctx, r.addr, tlsCfg, cfg)
			},
		}
		defer tr.Close()
		rt = tr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/", nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	return string(b), resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
}

func TestObtainServeRenewRestart(t *testing.T) {
	r := newRig(t, nil)
	st := r.open()
	m := r.manager(st, func(c *certs.Config) { c.DisableTLSALPN01 = true }) // HTTP-01 only

	// The first handshake for a routed name obtains its certificate.
	want := map[string]string{"h1": "HTTP/1.1", "h2": "HTTP/2.0", "h3": "HTTP/3.0"}
	var serial string
	for _, proto := range []string{"h1", "h2", "h3"} {
		body, s, err := r.get(proto, "app.test")
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if body != "hello app.test over "+want[proto] {
			t.Errorf("%s: body %q", proto, body)
		}
		if serial != "" && s != serial {
			t.Errorf("%s: served certificate %s, want the same %s", proto, s, serial)
		}
		serial = s
	}
	if n := r.pebble.Orders(); n != 1 {
		t.Fatalf("orders after first certificate = %d, want 1", n)
	}

	// Forced renewal orders a new certificate and serves it.
	before, _ := m.NotAfter("app.test")
	if err := m.Renew(context.Background(), "app.test"); err != nil {
		t.Fatal(err)
	}
	if n := r.pebble.Orders(); n != 2 {
		t.Fatalf("orders after renewal = %d, want 2", n)
	}
	_, renewed, err := r.get("h2", "app.test")
	if err != nil {
		t.Fatal(err)
	}
	if renewed == serial {
		t.Errorf("still serving certificate %s after renewal", serial)
	}
	if after, ok := m.NotAfter("app.test"); !ok || after.Before(before) {
		t.Errorf("NotAfter after renewal = %v, %v; before %v", after, ok, before)
	}

	// A restarted agent serves the renewed certificate from badger without
	// a word to the CA.
	m.Close()
	st.Close()
	requests := r.pebble.Requests()
	st = r.open()
	r.manager(st, nil)
	for _, proto := range []string{"h1", "h2", "h3"} {
		_, s, err := r.get(proto, "app.test")
		if err != nil {
			t.Fatalf("after restart, %s: %v", proto, err)
		}
		if s != renewed {
			t.Errorf("after restart, %s: certificate %s, want the stored %s", proto, s, renewed)
		}
	}
	if n := r.pebble.Requests() - requests; n != 0 {
		t.Errorf("after restart, %d requests reached the CA, want 0", n)
	}
}

func TestTLSALPN01(t *testing.T) {
	r := newRig(t, nil)
	r.manager(r.open(), func(c *certs.Config) { c.DisableHTTP01 = true })
	if body, _, err := r.get("h1", "alpn.test"); err != nil || body != "hello alpn.test over HTTP/1.1" {
		t.Fatalf("get = %q, %v", body, err)
	}
	if n := r.pebble.Orders(); n != 1 {
		t.Errorf("orders = %d, want 1", n)
	}
}

func TestUnroutedNameGetsNoCertificateAndNoOrder(t *testing.T) {
	r := newRig(t, nil)
	r.manager(r.open(), nil)
	for _, proto := range []string{"h1", "h2", "h3"} {
		_, _, err := r.get(proto, "evil.test")
		if err == nil {
			t.Fatalf("%s: unrouted name was served", proto)
		}
	}
	conn, err := tls.Dial("tcp", r.addr, &tls.Config{ServerName: "evil.test", InsecureSkipVerify: true})
	if err == nil {
		conn.Close()
		t.Fatal("handshake for an unrouted name succeeded")
	}
	if !strings.Contains(err.Error(), "handshake failure") && !strings.Contains(err.Error(), "internal error") {
		t.Errorf("handshake error = %v, want a TLS alert", err)
	}
	if n := r.pebble.Requests(); n != 0 {
		t.Errorf("%d requests reached the CA for an unrouted name, want 0", n)
	}
}

func TestLocalNamesGetLocalCertificate(t *testing.T) {
	r := newRig(t, nil)
	local, _, err := localca.Ensure(t.TempDir(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r.manager(r.open(), func(c *certs.Config) {
		c.LocalCert = &local
		c.LocalHosts = []string{"localhost"}
	})
	for _, sni := range []string{"", "localhost", "127.0.0.1"} {
		conn, err := tls.Dial("tcp", r.addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("SNI %q: %v", sni, err)
		}
		got := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		if want, _ := x509.ParseCertificate(local.Certificate[0]); !got.Equal(want) {
			t.Errorf("SNI %q: served %s, want the local certificate", sni, got.Subject)
		}
	}
	if n := r.pebble.Requests(); n != 0 {
		t.Errorf("%d requests reached the CA for local names, want 0", n)
	}
}

func TestExternalAccountBinding(t *testing.T) {
	// base64url of 32 bytes.
	const kid, mac = "kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	r := newRig(t, map[string]string{kid: mac})
	st := r.open()
	m := r.manager(st, nil)
	if err := m.Obtain(context.Background(), "noeab.test"); err == nil || !strings.Contains(err.Error(), "externalAccountRequired") {
		t.Fatalf("obtain without external account binding from a CA requiring it: %v", err)
	}
	orders := r.pebble.Orders()
	r.manager(st, func(c *certs.Config) { c.EAB = &certs.EAB{KeyID: kid, MACKey: mac}; c.Email = "eab@example.org" })
	if _, _, err := r.get("h1", "eab.test"); err != nil {
		t.Fatalf("with external account binding: %v", err)
	}
	if r.pebble.Orders() != orders+1 {
		t.Errorf("orders = %d, want %d", r.pebble.Orders(), orders+1)
	}
}

func TestNewRejects(t *testing.T) {
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cs := st.CertStorage(store.CertStorageOptions{})
	allow := func(string) bool { return true }
	tests := []struct {
		name string
		cfg  certs.Config
		want string
	}{
		{"no storage", certs.Config{Allow: allow}, "certs: no storage"},
		{"no policy", certs.Config{Storage: cs}, "certs: no host policy (Allow)"},
		{"no challenge", certs.Config{Storage: cs, Allow: allow, DisableHTTP01: true, DisableTLSALPN01: true}, "certs: both HTTP-01 and TLS-ALPN-01 disabled: no challenge left to solve"},
		{"half an EAB", certs.Config{Storage: cs, Allow: allow, EAB: &certs.EAB{KeyID: "k"}}, "certs: external account binding needs both a key ID and a MAC key"},
	}
	for _, tt := range tests {
		if _, err := certs.New(tt.cfg); err == nil || err.Error() != tt.want {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}
