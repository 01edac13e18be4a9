package server

import (
	"io"
	"net"
	gosync "sync"

	"github.com/prometheus/client_golang/prometheus"
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

// ConnLimits bound the TCP connections a listener holds open, in total and
// per client IP address. A connection over either bound is closed as soon
// as it is accepted, before its TLS handshake. Zero values take the
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

// limitListener applies ConnLimits to the connections it accepts.
type limitListener struct {
	net.Listener
	l       ConnLimits
	open    prometheus.Gauge
	refused *prometheus.CounterVec

	mu     gosync.Mutex // guards total and byAddr
	total  int
	byAddr map[string]int
}

// limit wraps ln with l; name is the listener label of the metrics.
func (l ConnLimits) limit(ln net.Listener, name string) net.Listener {
	ll := &limitListener{Listener: ln, l: l, byAddr: make(map[string]int)}
	open := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tern_connections_open",
		Help: "TCP connections held open, by listener.",
	}, []string{"listener"})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tern_connections_refused_total",
		Help: "TCP connections closed on accept for going over a connection limit, by listener and limit.",
	}, []string{"listener", "reason"})
	if l.Registerer != nil {
		open = register(l.Registerer, open)
		refused = register(l.Registerer, refused)
	}
	ll.open = open.WithLabelValues(name)
	ll.refused = refused.MustCurryWith(prometheus.Labels{"listener": name})
	return ll
}

// Accept returns the next connection within the limits, closing those
// over them.
func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := c.RemoteAddr().String()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			addr = host
		}
		if reason := ll.admit(addr); reason != "" {
			ll.refused.WithLabelValues(reason).Inc()
			c.Close()
			continue
		}
		return &limitConn{Conn: c, ll: ll, addr: addr}, nil
	}
}

// admit counts a connection from addr in, or returns the limit it would
// go over.
func (ll *limitListener) admit(addr string) string {
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

func (ll *limitListener) release(addr string) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	ll.total--
	if ll.byAddr[addr]--; ll.byAddr[addr] <= 0 {
		delete(ll.byAddr, addr)
	}
	ll.open.Dec()
}

// limitConn gives its place back when closed. It passes ReadFrom and
// CloseWrite on, so that net/http still sends files with sendfile and
// still half-closes connections it refuses.
type limitConn struct {
	net.Conn
	ll   *limitListener
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
