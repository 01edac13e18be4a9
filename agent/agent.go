// Package agent is Tern's composition root: it reads the configuration,
// builds every component in dependency order, owns the listeners and runs
// the whole until its context ends, then shuts down in phases. Nothing
// imports it but cmd/tern and tests.
package agent

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	gosync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/cache"
	"github.com/tern-edge/tern/carbon"
	"github.com/tern-edge/tern/internal/cputime"
	"github.com/tern-edge/tern/jobs"
	"github.com/tern-edge/tern/localca"
	"github.com/tern-edge/tern/origin"
	"github.com/tern-edge/tern/routing"
	"github.com/tern-edge/tern/server"
	"github.com/tern-edge/tern/store"
	ternsync "github.com/tern-edge/tern/sync"
	"github.com/tern-edge/tern/wasmhost"
)

// Files under the data directory.
const (
	// HubURLFile records the embedded hub's URL for `tern deploy`.
	HubURLFile = "hub.url"
	// DevKeyFile is the development publisher key `tern up` creates and
	// trusts.
	DevKeyFile = "dev.key"
)

// Agent is one running Tern node.
type Agent struct {
	cfg    Config
	logger *slog.Logger
	reg    *prometheus.Registry
	trust  trust

	store   *store.Store
	runtime *wasmhost.Runtime
	router  routing.Router
	hub     *ternsync.Hub // the embedded hub (tern up), or nil
	leaf    *ternsync.Hub // the agent's leaf node (tern agent), or nil
	client  *ternsync.Client
	watcher *ternsync.Watcher
	// heartbeats reports the agent's state to the fleet.
	heartbeats *ternsync.Heartbeater
	cache      *cache.Cache
	syncm      *syncMetrics
	origins    []*origin.Origin
	// originRoutes are the config's origin routes, served through the
	// cache beside the apps' routes.
	originRoutes []routing.Route
	gpu          *gpuHost // inference for tern_ai, or nil when disabled
	front        *server.Server
	admin        *server.Admin
	tlsParts     // ACME certificates and the plain listener (tls.go)
	caPath       string

	id      string // fleet identity, stable across restarts
	site    string // cfg.Site or the host name
	version string // the agent's build version
	started time.Time
	now     func() time.Time

	carbonLive carbon.Provider // Options.CarbonProvider

	// mu guards apps and serialises installs; the router's table is
	// rebuilt from apps under it and swapped atomically.
	mu   gosync.Mutex
	apps map[string]*installedApp

	// ledger accounts carbon on reg; jobs holds deferred requests.
	ledger *carbon.Ledger
	jobs   *jobs.Scheduler
	// fleet is the other sites as their heartbeats describe them, for
	// offloading jobs and inference (offload.go); offloadHook is for tests.
	fleet       *fleetView
	offloadHook hookPtr

	// disk keeps the free-space reserve of the data directory (disk.go);
	// nil where free space cannot be measured.
	disk *diskGuard
	// serving says which listeners serve, for /readyz (ready.go).
	serving listeners

	closers []func() // undo what New started, newest last

	// reloadMu serialises Reload; loaded is the config as last applied
	// and level the logger's level (Options.Level), or nil (reload.go).
	reloadMu gosync.Mutex
	loaded   Config
	level    *slog.LevelVar
	extra    []ed25519.PublicKey // Options.ExtraTrusted, kept for reloads
}

// installedApp is a release the agent serves.
type installedApp struct {
	rel artifact.Release
	// app runs a function; origin, set instead for an origin app, fronts
	// upstreams through the cache. ia.serve and ia.close handle both.
	app      *wasmhost.App
	origin   *originApp
	counters *appCounters
	keyID    string // the publisher key that signed rel
	// account, when set, records a function invocation's cost in the
	// carbon ledger.
	account func(app string, start time.Time, u cputime.Usage)
}

// Options are the parts of an agent that do not come from the config file.
type Options struct {
	Logger *slog.Logger
	// Now is the agent's clock for expiry checks; nil means time.Now.
	Now func() time.Time
	// Version is the agent's build version, reported in heartbeats.
	Version string
	// ExtraTrusted are publisher keys trusted in addition to the config's
	// (`tern up` adds its development key).
	ExtraTrusted []ed25519.PublicKey
	// CarbonTicks, when set, replaces the job scheduler's ticker, so that
	// tests move Now by hours and then tick.
	CarbonTicks <-chan time.Time
	// CarbonProvider, when set, is the live intensity source in place of
	// the client that carbon.provider in the config names, so that tests
	// drive the grid.
	CarbonProvider carbon.Provider
	// Level, when set, is the level of Logger's handler: Reload changes
	// it when the config's log_level changes.
	Level *slog.LevelVar
	// LoadConfig, when set, reads the config again (the file, then the
	// flags) for POST /reload on the admin listener.
	LoadConfig func() (Config, error)
}

// New builds an agent: it opens the store, loads every installed app from
// it (so the agent serves before and without reaching the hub), starts the
// embedded hub when the config has no hub URL, connects to the hub, and
// binds the public and admin listeners. If any step fails, the steps
// already done are undone.
func New(ctx context.Context, cfg Config, opts Options) (_ *Agent, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tr, err := newTrust(cfg.Trust, opts.ExtraTrusted)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:     cfg,
		logger:  logger,
		reg:     prometheus.NewRegistry(),
		trust:   tr,
		apps:    map[string]*installedApp{},
		version: opts.Version,
		started: time.Now().UTC(),
		now:     opts.Now,

		carbonLive: opts.CarbonProvider,
		loaded:     cfg,
		level:      opts.Level,
		extra:      opts.ExtraTrusted,
	}
	if a.now == nil {
		a.now = time.Now
	}
	defer func() {
		if err != nil {
			a.undo()
		}
	}()
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.registerSyncMetrics()
	if !a.trust.rooted() && a.trust.static.Len() == 0 {
		logger.Warn("no trusted publisher keys: every release will be refused")
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := a.openDisk(); err != nil {
		return nil, err
	}
	if limit := tuneGC(cfg); limit > 0 {
		from := "memory_limit"
		if cfg.MemoryLimit == 0 {
			from = "default: share of available memory"
		}
		logger.Info("soft memory limit", "mib", limit>>20, "from", from)
	}

	if a.id, err = loadAgentID(cfg.Data); err != nil {
		return nil, err
	}
	a.site = cfg.Site
	if a.site == "" {
		a.site, _ = os.Hostname()
	}
	// Every line from here on names the site: a fleet's logs are read
	// together, and a refused release or a failed origin must say where.
	logger = logger.With("site", a.site)
	a.logger = logger

	a.store, err = store.OpenWith(filepath.Join(cfg.Data, "store"), store.Options{
		Logger:        logger.With("component", "store"),
		MemTableBytes: int64(cfg.Cache.Memtable),
	})
	if err != nil {
		return nil, err
	}
	a.onUndo(func() { a.store.Close() })

	a.runtime, err = wasmhost.New(ctx, wasmhost.Config{
		CacheDir:   filepath.Join(cfg.Data, "compile-cache"),
		Logger:     logger.With("component", "wasm"),
		Registerer: a.reg,
		Compile:    cfg.Compile.wasmhost(cfg.MaxArtifact),
	})
	if err != nil {
		return nil, err
	}
	a.onUndo(func() {
		// A compile still running cannot be stopped; it gets a while to
		// end, and past that is left to the process's exit.
		ctx, cancel := context.WithTimeout(context.Background(), compileCloseWait)
		defer cancel()
		if err := a.runtime.Close(ctx); err != nil {
			a.logger.Warn("closing the wasm runtime", "err", err)
		}
	})
	// Before loading apps: their tern_ai grants go to the GPU service.
	if err := a.openGPU(); err != nil {
		return nil, err
	}
	// Before loading apps: deferrable routes hand requests to the jobs.
	if err := a.openJobs(opts.CarbonTicks); err != nil {
		return nil, err
	}
	if err := a.openCache(); err != nil {
		return nil, err
	}
	if err := a.loadPublishers(); err != nil {
		return nil, err
	}
	if err := a.loadInstalled(ctx); err != nil {
		return nil, err
	}

	if err := a.connectHub(ctx); err != nil {
		return nil, err
	}
	a.watcher, err = ternsync.NewWatcher(ternsync.WatcherConfig{
		Client:           a.client,
		Trusted:          a.trustedKeys,
		Installer:        a,
		MaxArtifactBytes: int64(cfg.MaxArtifact),
		Site:             a.site,
		Labels:           cfg.Labels,
		Logger:           logger.With("component", "sync"),
		Registerer:       a.reg,
		Now:              a.now,
		// The heartbeater exists once Run calls this.
		Refused:   func() { a.heartbeats.Nudge() },
		HubLinked: a.hubLinked,
	})
	if err != nil {
		return nil, err
	}
	a.heartbeats = &ternsync.Heartbeater{
		Client:   a.client,
		Interval: time.Duration(cfg.Heartbeat),
		State:    a.heartbeat,
		Logger:   logger.With("component", "sync"),
	}

	leaf, caPath, err := localca.Ensure(cfg.Data, cfg.TLS.Hosts, time.Now())
	if err != nil {
		return nil, err
	}
	a.caPath = caPath
	frontTLS, err := a.frontTLS(leaf)
	if err != nil {
		return nil, err
	}
	public := server.Instrument(a.reg, a.appOf, a.withJobs(&a.router))
	a.front, err = server.New(a.withLimits(server.Config{
		Addr:      cfg.Listen,
		TLSConfig: frontTLS,
		Handler:   public,
		Logger:    logger.With("component", "http"),
	}))
	if err != nil {
		return nil, err
	}
	if err := a.front.Listen(); err != nil {
		return nil, err
	}
	a.onUndo(func() { a.front.Close() })
	if err := a.listenPlain(public); err != nil {
		return nil, err
	}
	a.admin, err = server.NewAdmin(cfg.Admin, a.reg, logger.With("component", "admin"))
	if err != nil {
		return nil, err
	}
	a.admin.Handle("GET /carbon", http.HandlerFunc(a.serveCarbonStatus))
	a.admin.Handle("GET /readyz", http.HandlerFunc(a.serveReady))
	if opts.LoadConfig != nil {
		a.admin.Handle("POST /reload", a.reloadHandler(opts.LoadConfig))
	}
	if err := a.admin.Listen(); err != nil {
		return nil, err
	}
	a.onUndo(func() { a.admin.Close() })
	if err := a.mountCacheAdmin(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Agent) onUndo(f func()) { a.closers = append(a.closers, f) }

// undo stops what New started, newest first: the store closes last.
func (a *Agent) undo() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// Run serves until ctx is done, then shuts down: the listeners stop
// accepting and finish in-flight requests, the hub watch stops, the hub
// connection drains, the embedded hub stops, and the store closes last.
// ready, when not nil, is called once the listeners serve and the agent
// has caught up with the hub (or has waited syncWait for it).
func (a *Agent) Run(ctx context.Context, ready func()) error {
	defer a.undo()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(serving(&a.serving.public, func() error { return a.front.Serve(gctx) }))
	g.Go(serving(&a.serving.admin, func() error { return a.admin.Serve(gctx) }))
	if a.plain != nil {
		g.Go(serving(&a.serving.plain, func() error { return a.plain.Serve(gctx) }))
	}
	g.Go(func() error { return a.watcher.Run(gctx) })
	g.Go(func() error { return a.heartbeats.Run(gctx) })
	g.Go(func() error { return a.watchLink(gctx) })
	for _, fn := range a.runCache(gctx) {
		g.Go(fn)
	}
	g.Go(func() error { return a.jobs.Run(gctx) })
	if a.disk != nil {
		g.Go(func() error { return a.disk.run(gctx) })
	}
	g.Go(func() error { return a.runGPU(gctx) })
	for _, fn := range a.runOffload(gctx) {
		g.Go(fn)
	}
	if a.hub != nil {
		rc := &rolloutController{c: a.client, logger: a.logger.With("component", "rollout"), now: a.now, m: newRolloutMetrics(a.reg)}
		g.Go(func() error { return rc.Run(gctx) })
	}
	if a.cfg.Expired == "refuse" {
		g.Go(func() error {
			t := time.NewTicker(expirySweep)
			defer t.Stop()
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-t.C:
					a.dropExpired()
				}
			}
		})
	}
	if a.trust.rooted() {
		tw := a.trustWatcher()
		g.Go(func() error { return tw.Run(gctx) })
	}
	if ready != nil {
		g.Go(func() error {
			select {
			case <-a.watcher.Synced():
			case <-time.After(syncWait):
				a.logger.Warn("hub not reached yet; serving installed apps", "waited", syncWait)
			case <-gctx.Done():
				return nil
			}
			ready()
			return nil
		})
	}
	err := g.Wait()
	a.logger.Info("listeners stopped; closing apps, hub connection and store")
	a.mu.Lock()
	for _, ia := range a.apps {
		ia.close(context.Background())
	}
	a.mu.Unlock()
	return err
}

// expirySweep is how often an agent that refuses expired releases looks
// for them.
const expirySweep = 10 * time.Second

// compileCloseWait bounds how long shutdown waits for compiles still
// running.
const compileCloseWait = 10 * time.Second

// syncWait bounds how long Run waits for the hub before calling ready.
const syncWait = 5 * time.Second

// Addr is the public listener's address.
func (a *Agent) Addr() net.Addr { return a.front.Addr() }

// AdminAddr is the admin listener's address.
func (a *Agent) AdminAddr() net.Addr { return a.admin.Addr() }

// CAPath is the local CA certificate clients should trust.
func (a *Agent) CAPath() string { return a.caPath }

// HubURL is the URL of the hub the agent follows.
func (a *Agent) HubURL() string {
	if a.hub != nil {
		return a.hub.ClientURL()
	}
	return a.cfg.Hub.URL
}

// Apps returns the releases the agent serves now.
func (a *Agent) Apps() []artifact.Release {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]artifact.Release, 0, len(a.apps))
	for _, ia := range a.apps {
		out = append(out, ia.rel)
	}
	return out
}

// appOf names the app a request goes to, for metrics.
func (a *Agent) appOf(r *http.Request) string {
	if rt, ok := a.router.Match(r); ok {
		return rt.App
	}
	return ""
}
