package server

import (
	"context"
	"io"
	"net"
	gosync "sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
)

// Defaults for ConnLimits.
const (
	// DefaultMaxConns bounds the TCP connections one listener holds
	// open.
	DefaultMaxConns = 10000
	// DefaultMaxConnsPerAddr bounds those from one client address: far
	// above the handful a browser opens, and room for a NAT, yet short
	// of what one host needs to starve the rest.
	DefaultMaxConnsPerAddr = 256
)

// ConnLimits bound the connections a listener holds open, in total and
// per client IP address: TCP and QUIC each have their own count. A TCP
// connection over either bound is closed as soon as it is accepted, before
// its TLS handshake; a QUIC one as soon as quic-go hands it over. Zero values take the
// defaults above.
type ConnLimits struct {
	Max        int
	MaxPerAddr int
	// Registerer, when set, receives tern_connections_open{listener} and
	// tern_connections_refused_total{listener,reason}, reason "total" or
	// "per_address".
	Registerer prometheus.Registerer
}

func (l ConnLimits) withDefaults() ConnLimits {
	setDefault(&l.Max, DefaultMaxConns)
	setDefault(&l.MaxPerAddr, DefaultMaxConnsPerAddr)
	return l
}

// connCounter counts a listener's open connections against ConnLimits.
type connCounter struct {
	l       ConnLimits
	open    prometheus.Gauge
	refused *prometheus.CounterVec

	mu     gosync.Mutex // guards total and byAddr
	total  int
	byAddr map[string]int
}

// counter returns a connCounter for l; name is the listener label of the
// metrics ("tls", "plain", "quic").
func (l ConnLimits) counter(name string) *connCounter {
	cc := &connCounter{l: l, byAddr: make(map[string]int)}
	open := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tern_connections_open",
		Help: "Connections held open (TCP, or QUIC for the quic listener), by listener.",
	}, []string{"listener"})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tern_connections_refused_total",
		Help: "Connections closed on accept for going over a connection limit, by listener and limit.",
	}, []string{"listener", "reason"})
	if l.Registerer != nil {
		open = register(l.Registerer, open)
		refused = register(l.Registerer, refused)
	}
	cc.open = open.WithLabelValues(name)
	cc.refused = refused.MustCurryWith(prometheus.Labels{"listener": name})
	return cc
}

// limitListener applies ConnLimits to the TCP connections it accepts.
type limitListener struct {
	net.Listener
	*connCounter
}

// limit wraps ln with l; name is the listener label of the metrics.
func (l ConnLimits) limit(ln net.Listener, name string) net.Listener {
	return &limitListener{Listener: ln, connCounter: l.counter(name)}
}

// Accept returns the next connection within the limits, closing those
// over them.
func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := hostOf(c.RemoteAddr())
		if reason := ll.admit(addr); reason != "" {
			ll.refused.WithLabelValues(reason).Inc()
			c.Close()
			continue
		}
		return &limitConn{Conn: c, ll: ll.connCounter, addr: addr}, nil
	}
}

// hostOf is a remote address without its port: what the per-address
// limit counts.
func hostOf(a net.Addr) string {
	addr := a.String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// admit counts a connection from addr in, or returns the limit it would
// go over.
func (ll *connCounter) admit(addr string) string {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	switch {
	case ll.total >= ll.l.Max:
		return "total"
	case ll.byAddr[addr] >= ll.l.MaxPerAddr:
		return "per_address"
	}
	ll.total++
	ll.byAddr[addr]++
	ll.open.Inc()
	return ""
}

func (ll *connCounter) release(addr string) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	ll.total--
	if ll.byAddr[addr]--; ll.byAddr[addr] <= 0 {
		delete(ll.byAddr, addr)
	}
	ll.open.Dec()
}

// quicLimitListener applies ConnLimits to the QUIC connections an HTTP/3
// listener accepts, so that UDP is no way around the TCP bounds. A
// connection over them is closed with H3_EXCESSIVE_LOAD as soon as
// quic-go hands it over, still during its handshake (where QUIC carries
// the code as a bare APPLICATION_ERROR).
type quicLimitListener struct {
	*quic.EarlyListener
	*connCounter
}

// h3ExcessiveLoad is the HTTP/3 error code for a peer that generates
// excessive load (RFC 9114 §8.1).
const h3ExcessiveLoad quic.ApplicationErrorCode = 0x0107

// limitQUIC wraps ln with l; name is the listener label of the metrics.
func (l ConnLimits) limitQUIC(ln *quic.EarlyListener, name string) *quicLimitListener {
	return &quicLimitListener{EarlyListener: ln, connCounter: l.counter(name)}
}

// Accept returns the next connection within the limits, closing those
// over them; a connection's place comes free when it ends.
func (ql *quicLimitListener) Accept(ctx context.Context) (*quic.Conn, error) {
	for {
		c, err := ql.EarlyListener.Accept(ctx)
		if err != nil {
			return nil, err
		}
		addr := hostOf(c.RemoteAddr())
		if reason := ql.admit(addr); reason != "" {
			ql.refused.WithLabelValues(reason).Inc()
			c.CloseWithError(h3ExcessiveLoad, "connection limit")
			continue
		}
		go func() {
			<-c.Context().Done()
			ql.release(addr)
		}()
		return c, nil
	}
}

// limitConn gives its place back when closed. It passes ReadFrom and
// CloseWrite on, so that net/http still sends files with sendfile and
// still half-closes connections it refuses.
type limitConn struct {
	net.Conn
	ll   *connCounter
	addr string
	once gosync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.ll.release(c.addr) })
	return err
}

func (c *limitConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
