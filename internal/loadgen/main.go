// Command loadgen measures an HTTPS server from the client side, for
// scripts/bench-tls.sh: requests per second and latency percentiles over
// HTTP/2 (net/http) or HTTP/3 (quic-go), or TLS handshakes per second over
// new TCP connections. wrk covers HTTP/1.1; this covers what wrk cannot.
//
//	loadgen -proto h2 -c 64 -conns 4 -d 10s https://127.0.0.1:8443/static
//	loadgen -proto h3 -c 64 -conns 4 -d 10s https://127.0.0.1:8443/static
//	loadgen -proto handshake -c 16 -d 10s https://127.0.0.1:8443/
//
// Certificates are not verified: the benchmark compares servers holding
// certificates from different local CAs, and verification costs the
// client, not the server.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// config is one measurement.
type config struct {
	proto    string // h2, h3 or handshake
	workers  int
	conns    int
	duration time.Duration
	url      *url.URL
	sni      string
	x25519   bool
}

// result is what a measurement found.
type result struct {
	requests int64
	errors   int64
	elapsed  time.Duration
	lat      []time.Duration // sorted
}

func (r result) perSecond() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r result) percentile(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat)-1) * p)
	return r.lat[i]
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.proto, "proto", "h2", "h2, h3, or handshake (new TLS connections)")
	fs.IntVar(&c.workers, "c", 64, "concurrent requests (or handshakes)")
	fs.IntVar(&c.conns, "conns", 4, "connections the requests share (h2, h3)")
	fs.DurationVar(&c.duration, "d", 10*time.Second, "duration")
	fs.BoolVar(&c.x25519, "x25519", false, "offer only X25519 key exchange, not the post-quantum hybrid Go offers by default")
	fs.StringVar(&c.sni, "sni", "", "TLS server name to send (default: the URL's host; IP literals send none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("want one URL")
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil || u.Scheme != "https" {
		return fmt.Errorf("URL %q: want https://host:port/path", fs.Arg(0))
	}
	c.url = u
	if c.workers < 1 || c.conns < 1 || c.conns > c.workers {
		return fmt.Errorf("-c %d -conns %d: want 1 <= conns <= c", c.workers, c.conns)
	}
	res, err := measure(context.Background(), c)
	if err != nil {
		return err
	}
	unit := "requests/s"
	if c.proto == "handshake" {
		unit = "handshakes/s"
	}
	if c.x25519 {
		c.proto += "+x25519"
	}
	fmt.Fprintf(stdout, "proto=%s c=%d conns=%d d=%s %s=%.0f p50=%s p99=%s errors=%d\n",
		c.proto, c.workers, c.conns, c.duration, unit, res.perSecond(),
		res.percentile(0.50).Round(time.Microsecond), res.percentile(0.99).Round(time.Microsecond), res.errors)
	return nil
}

// measure runs c's load for c.duration and collects the result.
func measure(ctx context.Context, c config) (result, error) {
	sni := c.sni
	if sni == "" {
		sni = c.url.Hostname()
	}
	tlsConf := &tls.Config{InsecureSkipVerify: true, ServerName: sni}
	if c.x25519 {
		// Servers built with an older Go know no hybrid key exchange;
		// pinning X25519 makes every server do the same work.
		tlsConf.CurvePreferences = []tls.CurveID{tls.X25519}
	}
	var do func(worker int) error
	var closers []func()
	switch c.proto {
	case "h2", "h3":
		rts := make([]http.RoundTripper, c.conns)
		for i := range rts {
			if c.proto == "h2" {
				tr := &http.Transport{TLSClientConfig: tlsConf.Clone(), Protocols: new(http.Protocols), MaxIdleConnsPerHost: c.workers}
				tr.Protocols.SetHTTP2(true)
				rts[i] = tr
				closers = append(closers, tr.CloseIdleConnections)
			} else {
				tr := &http3.Transport{TLSClientConfig: tlsConf.Clone(), QUICConfig: &quic.Config{MaxIncomingStreams: int64(c.workers)}}
				rts[i] = tr
				closers = append(closers, func() { tr.Close() })
			}
		}
		do = func(worker int) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.url.String(), nil)
			resp, err := rts[worker%len(rts)].RoundTrip(req)
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			return err
		}
	case "handshake":
		addr := c.url.Host
		if c.url.Port() == "" {
			addr = net.JoinHostPort(c.url.Hostname(), "443")
		}
		do = func(int) error {
			// A fresh config per connection: no session resumption, so
			// every handshake is a full one.
			conn, err := (&tls.Dialer{Config: tlsConf.Clone()}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			return conn.Close()
		}
	default:
		return result{}, fmt.Errorf("-proto %q: want h2, h3 or handshake", c.proto)
	}
	defer func() {
		for _, f := range closers {
			f()
		}
	}()

	// Warm the connections up outside the measurement.
	for i := range c.conns {
		if err := do(i); err != nil {
			return result{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	var stop atomic.Bool
	var requests, errs atomic.Int64
	lats := make([][]time.Duration, c.workers)
	var wg gosync.WaitGroup
	start := time.Now()
	for w := range c.workers {
		wg.Go(func() {
			for !stop.Load() {
				t := time.Now()
				if err := do(w); err != nil {
					errs.Add(1)
					continue
				}
				lats[w] = append(lats[w], time.Since(t))
				requests.Add(1)
			}
		})
	}
	time.Sleep(c.duration)
	stop.Store(true)
	elapsed := time.Since(start)
	wg.Wait()
	res := result{requests: requests.Load(), errors: errs.Load(), elapsed: elapsed}
	for _, l := range lats {
		res.lat = append(res.lat, l...)
	}
	slices.Sort(res.lat)
	return res, nil
}
