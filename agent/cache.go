package agent

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/cache"
	"github.com/tern-edge/tern/origin"
	"github.com/tern-edge/tern/routing"
	ternsync "github.com/tern-edge/tern/sync"
)

// CacheConfig configures the HTTP cache in front of origins.
type CacheConfig struct {
	// MaxSize bounds the bytes of cached bodies on disk.
	MaxSize artifact.Size `toml:"max_size"`
	// Memory is the budget of the in-memory tier for small hot bodies.
	Memory artifact.Size `toml:"memory"`
	// MaxStale is the offline policy: while an origin is unreachable,
	// serve entries stale by up to this much. 0 serves stale only where
	// the origin allowed it (stale-if-error).
	MaxStale artifact.Duration `toml:"max_stale"`
	// PassTTL is how long a URL whose response could not be stored
	// (private, no-store, Set-Cookie, Vary: *, no freshness) goes straight
	// to its origin without request collapsing ("hit-for-pass"). 0 means
	// cache.DefaultPassTTL (2m); negative disables it.
	PassTTL artifact.Duration `toml:"pass_ttl"`
	// AdminToken is the bearer token of the purge API on the admin
	// listener (/cache). Empty: a random token in data/admin.token.
	AdminToken string `toml:"admin_token"`
	// Memtable is the size of the store's memtables, where every miss of
	// a small object is written first; 0 means store.DefaultMemTableBytes
	// (16 MiB). Smaller saves heap and costs miss latency once the store
	// is large.
	Memtable artifact.Size `toml:"memtable"`
}

// OriginConfig routes a host/path to upstream servers through the cache.
type OriginConfig struct {
	// Name labels the origin in routes, logs and metrics.
	Name string `toml:"name"`
	// Host and Path are the route (see routing: exact or wildcard host,
	// path prefix).
	Host string `toml:"host"`
	Path string `toml:"path"`
	// Upstreams are base URLs in priority order.
	Upstreams []string `toml:"upstreams"`
	// HostHeader is "preserve" (default: the client's Host), "rewrite" (the
	// upstream's host) or a host name to send.
	HostHeader string `toml:"host_header"`
	// ConnectTimeout and Timeout bound dialing and waiting for headers.
	ConnectTimeout artifact.Duration `toml:"connect_timeout"`
	Timeout        artifact.Duration `toml:"timeout"`
	// Retries is how many other upstreams an idempotent request tries.
	Retries int `toml:"retries"`
	// HealthPath, when set, is probed every HealthInterval.
	HealthPath     string            `toml:"health_path"`
	HealthInterval artifact.Duration `toml:"health_interval"`
	// CA is a PEM file of roots for https upstreams (default: the system's).
	CA string `toml:"ca"`
	// ShareCredentialed reuses responses to requests with Cookie or
	// Authorization under heuristic freshness and [cache] max_stale, as
	// RFC 9111 alone allows; off, only responses marked public or
	// s-maxage are (docs/CACHE.md).
	ShareCredentialed bool `toml:"share_credentialed"`
	// TargetedField names the response field that addresses this
	// origin's cache alone (RFC 9213), obeyed ahead of CDN-Cache-Control
	// and Cache-Control; empty: Tern-Cache-Control.
	TargetedField string `toml:"targeted_field"`
}

// AdminTokenFile holds the generated purge API token.
const AdminTokenFile = "admin.token"

// openCache builds the cache over the store and one origin per configured
// origin route.
func (a *Agent) openCache() error {
	cc := a.cfg.Cache
	c, err := cache.New(cache.Config{
		Storage:     a.store.Cache(),
		MaxBytes:    int64(cc.MaxSize),
		MemoryBytes: int64(cc.Memory),
		MaxStale:    time.Duration(cc.MaxStale),
		PassTTL:     time.Duration(cc.PassTTL),
		Name:        "tern",
		Now:         a.now,
		Logger:      a.logger.With("component", "cache"),
	})
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	a.cache = c
	if a.disk != nil {
		a.disk.shed = c.Shed
	}
	a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "tern_cache_store_failures_total",
		Help: "Cached responses the store could not take (a full disk): relayed from the origin, not stored.",
	}, func() float64 { return float64(c.Stats().StoreFailures) }))
	metrics := newCacheMetrics(a.reg, c)
	for _, oc := range a.cfg.Origins {
		o, err := newOrigin(oc, a)
		if err != nil {
			return err
		}
		a.origins = append(a.origins, o)
		a.originRoutes = append(a.originRoutes, routing.Route{
			Host:    oc.Host,
			Path:    oc.Path,
			App:     "origin:" + oc.Name,
			Handler: metrics.wrap(oc.Name, origin.Handler(c, o)),
		})
	}
	return nil
}

func newOrigin(oc OriginConfig, a *Agent) (*origin.Origin, error) {
	cfg := origin.Config{
		Name:              oc.Name,
		Upstreams:         oc.Upstreams,
		ConnectTimeout:    time.Duration(oc.ConnectTimeout),
		ResponseTimeout:   time.Duration(oc.Timeout),
		Retries:           oc.Retries,
		HealthPath:        oc.HealthPath,
		HealthInterval:    time.Duration(oc.HealthInterval),
		ShareCredentialed: oc.ShareCredentialed,
		TargetedField:     oc.TargetedField,
		Now:               a.now,
		Logger:            a.logger.With("component", "origin", "origin", oc.Name),
	}
	switch oc.HostHeader {
	case "", "preserve":
		cfg.HostPolicy = origin.PreserveHost
	case "rewrite":
		cfg.HostPolicy = origin.RewriteHost
	default:
		cfg.HostPolicy, cfg.Host = origin.RewriteHost, oc.HostHeader
	}
	if oc.CA != "" {
		pem, err := os.ReadFile(oc.CA)
		if err != nil {
			return nil, fmt.Errorf("origin %s: ca: %w", oc.Name, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("origin %s: ca %s: no PEM certificates", oc.Name, oc.CA)
		}
	}
	o, err := origin.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("origin %s: %w", oc.Name, err)
	}
	return o, nil
}

// mountCacheAdmin puts the purge API on the admin listener, behind a
// bearer token.
func (a *Agent) mountCacheAdmin() error {
	token := a.cfg.Cache.AdminToken
	if token == "" {
		var err error
		if token, err = loadOrCreateToken(filepath.Join(a.cfg.Data, AdminTokenFile)); err != nil {
			return err
		}
	}
	h, err := a.cache.AdminHandler(token)
	if err != nil {
		return err
	}
	a.admin.Handle("/cache", h)
	return nil
}

func loadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("admin token: %w", err)
	}
	token := rand.Text()
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return token, nil
}

// runCache runs the cache's storage upkeep and the origins' health checks
// until ctx is done.
func (a *Agent) runCache(ctx context.Context) []func() error {
	fns := []func() error{func() error { return a.cache.Run(ctx) }}
	for _, o := range a.origins {
		fns = append(fns, func() error { return o.Run(ctx) })
	}
	fns = append(fns, func() error {
		return a.client.ServePurges(ctx, a.id, a.site, cachePurger{a.cache}, a.logger.With("component", "cache"))
	})
	return fns
}

// cachePurger applies fleet-wide purges to the local cache.
type cachePurger struct{ c *cache.Cache }

var _ ternsync.Purger = cachePurger{}

func (p cachePurger) Purge(_ context.Context, req ternsync.Purge) (int, error) {
	res, err := p.c.Purge(cache.PurgeRequest{URLs: req.URLs, Prefixes: req.Prefixes, Tags: req.Tags, Soft: req.Soft})
	return res.Purged, err
}

var _ http.Handler = (*routing.Router)(nil)
