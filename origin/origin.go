// Package origin fetches from the upstream servers behind an origin
// route: failover across upstreams in priority order, retries of
// idempotent requests, active and passive health checks, timeouts, a Host
// header policy and TLS with custom roots. An Origin is the
// http.RoundTripper a cache.Cache fetches through; Handler puts the two
// together.
package origin

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
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tern-edge/tern/cache"
	"github.com/tern-edge/tern/internal/reqid"
)

// ErrUnavailable reports that no upstream answered.
var ErrUnavailable = errors.New("no upstream available")

// HostPolicy says which Host header upstream requests carry.
type HostPolicy int

const (
	// PreserveHost forwards the client's Host, for upstreams that serve
	// several sites by name.
	PreserveHost HostPolicy = iota
	// RewriteHost sends Config.Host, or the upstream URL's host when that
	// is empty, for upstreams that know only their own name (object
	// stores, SaaS origins).
	RewriteHost
)

// Default values of Config fields left zero.
const (
	DefaultConnectTimeout  = 5 * time.Second
	DefaultResponseTimeout = 30 * time.Second
	DefaultHealthInterval  = 10 * time.Second
	DefaultHealthTimeout   = 2 * time.Second
)

// Config configures an Origin. Only Upstreams is required.
type Config struct {
	// Name is the origin route's name, for log lines.
	Name string
	// Upstreams are base URLs ("http://10.0.0.1:8080", "https://o.example/base")
	// in priority order: requests go to the first healthy one.
	Upstreams []string
	// HostPolicy and Host decide the Host header sent upstream.
	HostPolicy HostPolicy
	Host       string
	// ConnectTimeout bounds dialing and the TLS handshake.
	ConnectTimeout time.Duration
	// ResponseTimeout bounds the wait for response headers. The body is
	// not bounded: a large object may take long, and stalls are the
	// transport's idle timeout's business.
	ResponseTimeout time.Duration
	// Retries is how many further upstreams an idempotent request tries
	// after a connection failure or a 502, 503 or 504. Non-idempotent
	// requests are never retried.
	Retries int
	// RootCAs verifies https upstreams; nil means the system roots.
	RootCAs *x509.CertPool
	// ServerName overrides the name sent in SNI and verified in the
	// upstream's certificate (default: the upstream URL's host).
	ServerName string
	// HealthPath, when set, is requested from every upstream each
	// HealthInterval; an upstream answering other than 2xx or 3xx, or not
	// at all within HealthTimeout, is skipped until it recovers.
	HealthPath     string
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	// ShareCredentialed lets the cache reuse responses to requests with
	// Cookie or Authorization as RFC 9111 alone allows; see
	// cache.HandlerConfig.
	ShareCredentialed bool
	// TargetedField names the field that targets this origin's cache
	// (RFC 9213); empty: cache.TernCacheControl. See cache.HandlerConfig.
	TargetedField string
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// NewTicker makes the health check ticker. Default wraps time.NewTicker.
	NewTicker func(time.Duration) (<-chan time.Time, func())
	// Transport replaces the HTTP transport built from the fields above.
	Transport http.RoundTripper
	// Logger receives health transitions. Default discards.
	Logger *slog.Logger
}

// Origin sends requests to upstreams. It implements http.RoundTripper;
// its methods are safe for concurrent use.
type Origin struct {
	cfg    Config
	ups    []*upstream
	rt     http.RoundTripper
	logger *slog.Logger
}

var _ http.RoundTripper = (*Origin)(nil)

type upstream struct {
	url *url.URL
	// activeDown is set by a failed health check and cleared by a
	// passing one.
	activeDown atomic.Bool
	// downUntil (unix nanoseconds) is set by a failed request: the
	// upstream is skipped for a health interval, so it recovers even
	// without active checks.
	downUntil atomic.Int64
}

// UpstreamStatus describes one upstream for operators.
type UpstreamStatus struct {
	URL     string `json:"url"`
	Healthy bool   `json:"healthy"`
}

// New checks cfg and builds an Origin.
func New(cfg Config) (*Origin, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("origin: no upstreams")
	}
	if cfg.Retries < 0 || cfg.ConnectTimeout < 0 || cfg.ResponseTimeout < 0 || cfg.HealthInterval < 0 || cfg.HealthTimeout < 0 {
		return nil, errors.New("origin: negative retries or timeout")
	}
	if cfg.HostPolicy != PreserveHost && cfg.HostPolicy != RewriteHost {
		return nil, fmt.Errorf("origin: unknown host policy %d", cfg.HostPolicy)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.ResponseTimeout == 0 {
		cfg.ResponseTimeout = DefaultResponseTimeout
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.HealthTimeout == 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewTicker == nil {
		cfg.NewTicker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	o := &Origin{cfg: cfg, logger: cfg.Logger, rt: cfg.Transport}
	for _, raw := range cfg.Upstreams {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("origin upstream %q: %w", raw, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("origin upstream %q: want http(s)://host[:port][/path]", raw)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		o.ups = append(o.ups, &upstream{url: u})
	}
	if o.rt == nil {
		d := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
		o.rt = &http.Transport{
			DialContext:           d.DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: cfg.RootCAs, ServerName: cfg.ServerName, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   cfg.ConnectTimeout,
			ResponseHeaderTimeout: cfg.ResponseTimeout,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
			// The cache stores what the origin sends; it must not see
			// bodies the transport decompressed behind its back.
			DisableCompression: true,
		}
	}
	return o, nil
}

// Handler returns the origin route's handler: c in front of o.
func Handler(c *cache.Cache, o *Origin) http.Handler {
	return c.HandlerWith(o, cache.HandlerConfig{ShareCredentialed: o.cfg.ShareCredentialed, Name: o.cfg.Name, TargetedField: o.cfg.TargetedField})
}

// Status reports each upstream's health, in priority order.
func (o *Origin) Status() []UpstreamStatus {
	now := o.cfg.Now()
	out := make([]UpstreamStatus, len(o.ups))
	for i, u := range o.ups {
		out[i] = UpstreamStatus{URL: u.url.String(), Healthy: u.healthy(now)}
	}
	return out
}

// CloseIdleConnections closes idle upstream connections.
func (o *Origin) CloseIdleConnections() {
	if t, ok := o.rt.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

func (u *upstream) healthy(now time.Time) bool {
	return !u.activeDown.Load() && now.UnixNano() >= u.downUntil.Load()
}

// order returns the upstreams to try: healthy ones in priority order,
// then the others, since trying a suspect upstream beats failing outright.
func (o *Origin) order() []*upstream {
	now := o.cfg.Now()
	out := make([]*upstream, 0, len(o.ups))
	for _, u := range o.ups {
		if u.healthy(now) {
			out = append(out, u)
		}
	}
	for _, u := range o.ups {
		if !u.healthy(now) {
			out = append(out, u)
		}
	}
	return out
}

// RoundTrip sends r to the first healthy upstream and, for idempotent
// requests, fails over to the next on a connection error or a 502, 503
// or 504, up to Config.Retries times. r.URL needs only path and query;
// r.Host is the client's host. When every attempt fails it returns the
// last upstream response if there was one, else an error wrapping
// ErrUnavailable.
func (o *Origin) RoundTrip(r *http.Request) (*http.Response, error) {
	attempts := 1
	if idempotent(r) {
		attempts += o.cfg.Retries
	}
	ups := o.order()
	var lastErr error
	for i := 0; i < attempts && i < len(ups); i++ {
		u := ups[i]
		out, err := o.outgoing(r, u, i > 0)
		if err != nil {
			return nil, err
		}
		resp, err := o.rt.RoundTrip(out)
		if err != nil {
			var se interface{ HTTPStatus() int }
			if r.Context().Err() != nil || errors.As(err, &se) {
				// The client went away or its body failed: no fault
				// of the upstream's.
				return nil, fmt.Errorf("%s %s via %s: %w", r.Method, r.URL.Path, u.url.Host, err)
			}
			u.downUntil.Store(o.cfg.Now().Add(o.cfg.HealthInterval).UnixNano())
			// The request id, when the fetch carries it, ties this attempt
			// to the answer the client got.
			attrs := []slog.Attr{slog.String("upstream", u.url.String()), slog.String("err", err.Error())}
			if id := reqid.From(r.Context()); id != "" {
				attrs = append(attrs, slog.String("request_id", id))
			}
			o.logger.LogAttrs(r.Context(), slog.LevelWarn, "upstream request failed", attrs...)
			lastErr = fmt.Errorf("%s %s via %s: %w", r.Method, r.URL.Path, u.url.Host, err)
			continue
		}
		retryable := resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout
		if retryable && i+1 < attempts && i+1 < len(ups) {
			// Drain a little so the connection can be reused.
			_, _ = io.CopyN(io.Discard, resp.Body, 4096)
			resp.Body.Close()
			lastErr = fmt.Errorf("%s %s via %s: status %d", r.Method, r.URL.Path, u.url.Host, resp.StatusCode)
			continue
		}
		return resp, nil
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, lastErr)
}

// idempotent reports whether r may be sent twice (RFC 9110 §9.2.2) and
// its body can be replayed.
func idempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return r.Body == nil || r.Body == http.NoBody || r.GetBody != nil
}

// outgoing builds the request for upstream u.
func (o *Origin) outgoing(r *http.Request, u *upstream, retry bool) (*http.Request, error) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL = &url.URL{
		Scheme:   u.url.Scheme,
		Host:     u.url.Host,
		Path:     u.url.Path + r.URL.Path,
		RawQuery: r.URL.RawQuery,
	}
	if r.URL.RawPath != "" {
		out.URL.RawPath = u.url.EscapedPath() + r.URL.RawPath
	}
	if retry && r.GetBody != nil {
		b, err := r.GetBody()
		if err != nil {
			return nil, fmt.Errorf("replay body of %s %s: %w", r.Method, r.URL.Path, err)
		}
		out.Body = b
	}
	switch o.cfg.HostPolicy {
	case RewriteHost:
		out.Host = o.cfg.Host
		if out.Host == "" {
			out.Host = u.url.Host
		}
	default:
		out.Host = r.Host
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := out.Header.Get("X-Forwarded-For"); prior != "" {
			host = prior + ", " + host
		}
		out.Header.Set("X-Forwarded-For", host)
	}
	if r.Host != "" {
		out.Header.Set("X-Forwarded-Host", r.Host)
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	out.Header.Set("X-Forwarded-Proto", proto)
	return out, nil
}

// Run checks upstream health every Config.HealthInterval (once at
// start) until ctx is done; it returns nil then. Without a HealthPath it
// only waits for ctx.
func (o *Origin) Run(ctx context.Context) error {
	if o.cfg.HealthPath == "" {
		<-ctx.Done()
		return nil
	}
	tick, stop := o.cfg.NewTicker(o.cfg.HealthInterval)
	defer stop()
	for {
		o.CheckHealth(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		}
	}
}

// CheckHealth probes every upstream once, concurrently, and records the
// results.
func (o *Origin) CheckHealth(ctx context.Context) {
	done := make(chan struct{}, len(o.ups))
	for _, u := range o.ups {
		go func() {
			defer func() { done <- struct{}{} }()
			ok, why := o.probe(ctx, u)
			was := !u.activeDown.Swap(!ok)
			if ok {
				u.downUntil.Store(0)
			}
			switch {
			case was && !ok:
				o.logger.Warn("upstream unhealthy", "upstream", u.url.String(), "reason", why)
			case !was && ok:
				o.logger.Info("upstream healthy again", "upstream", u.url.String())
			}
		}()
	}
	for range o.ups {
		<-done
	}
}

func (o *Origin) probe(ctx context.Context, u *upstream) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.HealthTimeout)
	defer cancel()
	target := *u.url
	target.Path += o.cfg.HealthPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return false, err.Error()
	}
	if o.cfg.HostPolicy == RewriteHost && o.cfg.Host != "" {
		req.Host = o.cfg.Host
	}
	resp, err := o.rt.RoundTrip(req)
	if err != nil {
		return false, err.Error()
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 4096)
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return false, fmt.Sprintf("status %d", resp.StatusCode)
	}
	return true, ""
}
