package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// TestConnLimits holds connections open without sending a request, as a
// slow-body or slowloris client does, and checks that the listener closes
// those over the per-address and total bounds at once, counts them, and
// takes new ones again once held ones close.
func TestConnLimits(t *testing.T) {
	reg := prometheus.NewRegistry()
	ts := startServer(t, Config{Handler: http.NotFoundHandler(), Conns: ConnLimits{Max: 3, MaxPerAddr: 2, Registerer: reg}})
	addr := ts.Addr().String()
	dialFrom := func(ip string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: wait}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial from %s: %v", ip, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// held completes a TLS handshake, which only an accepted
	// connection can.
	held := func(ip string) (*tls.Conn, error) {
		c := tls.Client(dialFrom(ip), &tls.Config{RootCAs: ts.pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
		c.SetDeadline(time.Now().Add(wait))
		return c, c.Handshake()
	}
	refused := func(ip string) {
		t.Helper()
		c := dialFrom(ip)
		c.SetDeadline(time.Now().Add(wait))
		var ne net.Error
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection from %s over the limit: read %v, want it closed", ip, err)
		}
	}
	first, err := held("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := held("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	refused("127.0.0.1")
	if _, err := held("127.0.0.2"); err != nil {
		t.Fatal(err)
	}
	refused("127.0.0.3")

	if got := counterValue(t, reg, "tern_connections_refused_total", "per_address"); got != 1 {
		t.Errorf("refused per address: %v, want 1", got)
	}
	if got := counterValue(t, reg, "tern_connections_refused_total", "total"); got != 1 {
		t.Errorf("refused in total: %v, want 1", got)
	}
	first.Close()
	waitFor(t, "a place to come free", func() bool {
		c, err := held("127.0.0.3")
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// counterValue is the value of counter name with the listener label "tls"
// and reason in reg, 0 when it has none.
func counterValue(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	return counterOn(t, reg, name, "tls", reason)
}

// counterOn is counterValue for another listener.
func counterOn(t *testing.T, reg *prometheus.Registry, name, listener, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["listener"] == listener && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestQUICConnLimits checks that HTTP/3 is no way around the connection
// limits: QUIC connections over the per-address bound are closed with
// H3_EXCESSIVE_LOAD and counted, and a place comes free when a held
// connection ends.
func TestQUICConnLimits(t *testing.T) {
	reg := prometheus.NewRegistry()
	ts := startServer(t, Config{Handler: http.NotFoundHandler(), Conns: ConnLimits{Max: 100, MaxPerAddr: 2, Registerer: reg}})
	url := "https://" + ts.Addr().String() + "/"
	// get makes one request on a connection of its own, which the
	// returned transport holds open.
	get := func() (*http3.Transport, error) {
		tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.pool, ServerName: "127.0.0.1"}}
		t.Cleanup(func() { tr.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return tr, err
		}
		resp.Body.Close()
		return tr, nil
	}
	first, err := get()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(); err != nil {
		t.Fatal(err)
	}
	_, err = get()
	// Closed during the handshake, the code travels as a bare
	// APPLICATION_ERROR (RFC 9000 §10.2.3); after it, as itself.
	var ae *quic.ApplicationError
	var te *quic.TransportError
	if !(errors.As(err, &ae) && ae.ErrorCode == h3ExcessiveLoad) && !(errors.As(err, &te) && te.Remote && te.ErrorCode == quic.ApplicationErrorErrorCode) {
		t.Fatalf("third QUIC connection from one address: %v, want it closed by the server with H3_EXCESSIVE_LOAD", err)
	}
	// The client may try a refused connection again before it gives up.
	if got := counterOn(t, reg, "tern_connections_refused_total", "quic", "per_address"); got < 1 {
		t.Errorf("refused per address on quic: %v, want at least 1", got)
	}
	first.Close()
	waitFor(t, "a QUIC place to come free", func() bool {
		_, err := get()
		return err == nil
	})
}
