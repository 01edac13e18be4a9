package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"go.uber.org/goleak"

	"github.com/tern-edge/tern/localca"
)

// wait bounds every wait in these tests; none should come close.
const wait = 10 * time.Second

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recv receives from c or fails the test at the deadline.
func recv[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// checkGoroutines fails the test if, once it ends and its cleanups ran,
// goroutines it started still run (goleak retries until they end).
// Register it first so that its cleanup runs last.
func checkGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// testCA issues a leaf for the loopback addresses from a CA in a temporary
// directory and returns it with a pool trusting the CA.
func testCA(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	leaf, caPath, err := localca.Ensure(t.TempDir(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in", caPath)
	}
	return leaf, pool
}

type testServer struct {
	*Server
	pool   *x509.CertPool
	url    string
	cancel context.CancelFunc
	done   chan error // Serve's result
}

// startServer serves cfg on a loopback port with a local CA certificate;
// the test's end stops it.
func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	leaf, pool := testCA(t)
	cfg.Addr = "127.0.0.1:0"
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{leaf}}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: s, pool: pool, url: "https://" + s.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ts.done:
		case <-time.After(wait):
			t.Error("Serve did not return")
		}
	})
	return ts
}

// client is an HTTP client that speaks one protocol version.
type client struct {
	name  string
	major int
	rt    http.RoundTripper
}

func (c client) get(url string) (*http.Response, string, error) {
	resp, err := (&http.Client{Transport: c.rt, Timeout: wait}).Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

func (c client) close() {
	switch rt := c.rt.(type) {
	case *http.Transport:
		rt.CloseIdleConnections()
	case *http3.Transport:
		rt.Close()
	}
}

// clients returns one client per protocol version, trusting pool; the
// test's end closes them.
func clients(t *testing.T, pool *x509.CertPool) []client {
	return clientsWith(t, pool, 5*time.Second)
}

// clientsWith is clients with a QUIC handshake timeout: the time an
// HTTP/3 request to a closed port takes to fail.
func clientsWith(t *testing.T, pool *x509.CertPool, handshake time.Duration) []client {
	tlsConf := func() *tls.Config { return &tls.Config{RootCAs: pool} }
	cs := []client{
		{"HTTP/1.1", 1, &http.Transport{
			TLSClientConfig: tlsConf(),
			TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // no h2
		}},
		{"HTTP/2", 2, &http.Transport{TLSClientConfig: tlsConf(), ForceAttemptHTTP2: true}},
		{"HTTP/3", 3, &http3.Transport{
			TLSClientConfig: tlsConf(),
			QUICConfig:      &quic.Config{HandshakeIdleTimeout: handshake},
		}},
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.close()
		}
	})
	return cs
}

func TestProtocols(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, Config{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%d %s", r.ProtoMajor, r.URL.Path)
		}),
		AltSvcMaxAge: time.Hour,
	})
	port := ts.Addr().(*net.TCPAddr).Port
	for _, c := range clients(t, ts.pool) {
		t.Run(c.name, func(t *testing.T) {
			for i := range 2 { // the second request reuses the connection
				resp, body, err := c.get(ts.url + "/p" + strconv.Itoa(i))
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusOK || resp.ProtoMajor != c.major {
					t.Errorf("status %d, protocol %s; want 200 over %s", resp.StatusCode, resp.Proto, c.name)
				}
				if want := fmt.Sprintf("%d /p%d", c.major, i); body != want {
					t.Errorf("body %q, want %q", body, want)
				}
				altSvc := resp.Header.Values("Alt-Svc")
				switch want := fmt.Sprintf(`h3=":%d"; ma=3600`, port); {
				case c.major < 3 && (len(altSvc) != 1 || altSvc[0] != want):
					t.Errorf("Alt-Svc %q, want %q", altSvc, want)
				case c.major == 3 && len(altSvc) != 0:
					t.Errorf("Alt-Svc %q over HTTP/3", altSvc)
				}
			}
		})
	}
}

func TestAltSvcDefault(t *testing.T) {
	ts := startServer(t, Config{Handler: http.NotFoundHandler()})
	resp, _, err := clients(t, ts.pool)[1].get(ts.url)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`h3=":%d"; ma=86400`, ts.Addr().(*net.TCPAddr).Port)
	if got := resp.Header.Get("Alt-Svc"); got != want {
		t.Errorf("Alt-Svc %q, want %q", got, want)
	}
}

// TestALPN checks that the server adds its protocols to a copy of the
// caller's TLS config, keeping the caller's own (an ACME TLS-ALPN
// challenge needs acme-tls/1).
func TestALPN(t *testing.T) {
	leaf, pool := testCA(t)
	callers := &tls.Config{Certificates: []tls.Certificate{leaf}, NextProtos: []string{"acme-tls/1"}}
	ts := startServer(t, Config{Handler: http.NotFoundHandler(), TLSConfig: callers})
	if got := strings.Join(callers.NextProtos, ","); got != "acme-tls/1" {
		t.Errorf("caller's NextProtos changed to %s", got)
	}
	for _, proto := range []string{"h2", "http/1.1", "acme-tls/1"} {
		conn, err := tls.Dial("tcp", ts.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{proto}})
		if err != nil {
			t.Fatalf("ALPN %s: %v", proto, err)
		}
		if got := conn.ConnectionState().NegotiatedProtocol; got != proto {
			t.Errorf("negotiated %q, want %q", got, proto)
		}
		conn.Close()
	}
	resp, _, err := clients(t, pool)[2].get(ts.url)
	if err != nil || resp.ProtoMajor != 3 {
		t.Fatalf("HTTP/3 with the caller's config: %v", err)
	}
}

func TestGracefulShutdown(t *testing.T) {
	checkGoroutines(t)
	for i, name := range []string{"HTTP/1.1", "HTTP/2", "HTTP/3"} {
		t.Run(name, func(t *testing.T) {
			entered, release := make(chan struct{}), make(chan struct{})
			ts := startServer(t, Config{
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/slow" {
						entered <- struct{}{}
						<-release
					}
					fmt.Fprint(w, "done")
				}),
			})
			c := clients(t, ts.pool)[i]

			type result struct {
				resp *http.Response
				body string
				err  error
			}
			results := make(chan result, 1)
			go func() {
				resp, body, err := c.get(ts.url + "/slow")
				results <- result{resp, body, err}
			}()
			recv(t, "the slow request to start", entered)

			ts.cancel()
			addr := ts.Addr().String()
			waitFor(t, "the TCP listener to close", func() bool {
				conn, err := net.Dial("tcp", addr)
				if err == nil {
					conn.Close()
				}
				return err != nil
			})
			select {
			case err := <-ts.done:
				t.Fatalf("Serve returned %v with a request in flight", err)
			default:
			}

			close(release)
			r := recv(t, "the slow response", results)
			if r.err != nil {
				t.Fatalf("in-flight request failed: %v", r.err)
			}
			if r.resp.StatusCode != http.StatusOK || r.body != "done" || r.resp.ProtoMajor != c.major {
				t.Errorf("in-flight request: %s %d %q", r.resp.Proto, r.resp.StatusCode, r.body)
			}
			if err := recv(t, "Serve to return", ts.done); err != nil {
				t.Errorf("Serve = %v, want nil", err)
			}
			ts.done <- nil // for the cleanup

			// New connections are refused over every protocol.
			for _, fresh := range clientsWith(t, ts.pool, 300*time.Millisecond) {
				if _, _, err := fresh.get(ts.url + "/"); err == nil {
					t.Errorf("%s request succeeded after shutdown", fresh.name)
				}
			}
		})
	}
}

func TestShutdownTimeout(t *testing.T) {
	entered := make(chan struct{})
	ts := startServer(t, Config{
		ShutdownTimeout: 100 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-r.Context().Done() // cut off when the server gives up
		}),
	})
	go clients(t, ts.pool)[0].get(ts.url)
	recv(t, "the request to start", entered)
	ts.cancel()
	err := recv(t, "Serve to return", ts.done)
	ts.done <- nil
	want := fmt.Sprintf("shut down %s within 100ms: context deadline exceeded", ts.Addr())
	if err == nil || err.Error() != want {
		t.Errorf("Serve = %v, want %q", err, want)
	}
}

func TestServeCancelledBeforeStart(t *testing.T) {
	checkGoroutines(t)
	leaf, _ := testCA(t)
	s, err := New(Config{Addr: "127.0.0.1:0", Handler: http.NotFoundHandler(),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Serve(ctx); err != nil { // listens itself
		t.Errorf("Serve = %v, want nil", err)
	}
	if err := s.Serve(ctx); err == nil || !strings.Contains(err.Error(), "already served") {
		t.Errorf("second Serve = %v", err)
	}
	rebind(t, s.Addr().String())
}

// rebind fails the test unless both TCP and UDP can bind addr.
func rebind(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("TCP %s still bound: %v", addr, err)
	}
	ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("UDP %s still bound: %v", addr, err)
	}
	pc.Close()
}

func TestCloseWithoutServe(t *testing.T) {
	leaf, _ := testCA(t)
	s, err := New(Config{Addr: "127.0.0.1:0", Handler: http.NotFoundHandler(),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf}}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Error("Addr before Listen is not nil")
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err == nil {
		t.Error("second Listen succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rebind(t, s.Addr().String())
	if err := s.Serve(context.Background()); err == nil {
		t.Error("Serve after Close succeeded")
	}
}

func TestListenErrors(t *testing.T) {
	leaf, _ := testCA(t)
	newServer := func(addr string) *Server {
		s, err := New(Config{Addr: addr, Handler: http.NotFoundHandler(),
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf}}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	t.Run("TCP port taken", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addr := ln.Addr().String()
		err = newServer(addr).Listen()
		if err == nil || !strings.HasPrefix(err.Error(), "listen "+addr+": ") || !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("Listen = %v, want an address-in-use error naming %s", err, addr)
		}
	})

	t.Run("UDP port taken", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		addr := pc.LocalAddr().String()
		if ln, err := net.Listen("tcp", addr); err != nil {
			t.Skipf("TCP %s is taken too: %v", addr, err)
		} else {
			ln.Close()
		}
		err = newServer(addr).Listen()
		if err == nil || !strings.HasPrefix(err.Error(), "listen "+addr+": ") {
			t.Errorf("Listen = %v, want an error naming %s", err, addr)
		}
		// The TCP half must have been released.
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("TCP %s left bound: %v", addr, err)
		}
		ln.Close()
	})
}

func TestNewErrors(t *testing.T) {
	leaf, _ := testCA(t)
	withCert := &tls.Config{Certificates: []tls.Certificate{leaf}}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no handler", Config{TLSConfig: withCert}, "server: no handler"},
		{"no TLS", Config{Handler: http.NotFoundHandler()}, "server: TLS config has no certificates"},
		{"no certificates", Config{Handler: http.NotFoundHandler(), TLSConfig: &tls.Config{}}, "server: TLS config has no certificates"},
		{"bad address", Config{Handler: http.NotFoundHandler(), TLSConfig: withCert, Addr: "8443"},
			`server address "8443": address 8443: missing port in address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Errorf("New = %v, want %q", err, tt.want)
			}
		})
	}
}
