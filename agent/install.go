package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/routing"
	"github.com/tern-edge/tern/store"
	ternsync "github.com/tern-edge/tern/sync"
	"github.com/tern-edge/tern/wasmhost"
)

var _ ternsync.Installer = (*Agent)(nil)

// refusal is an install error with the reason metrics and logs show.
type refusal struct {
	reason string
	err    error
}

func (r *refusal) Error() string         { return r.err.Error() }
func (r *refusal) Unwrap() error         { return r.err }
func (r *refusal) RefusalReason() string { return r.reason }

// Installed reports the sequence and digest of app's installed release.
func (a *Agent) Installed(app string) (uint64, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ia, ok := a.apps[app]; ok {
		return ia.rel.Sequence, ia.rel.Digest
	}
	return 0, ""
}

// Install makes a verified release current: it compiles the module (or,
// for an origin app, builds its origin), checks that the app's routes and
// capabilities fit, swaps the routing table, and persists the release as
// last known good. Any failure leaves the previous release serving.
func (a *Agent) Install(ctx context.Context, rel artifact.Release, envelope, wasm []byte) (err error) {
	start := time.Now()
	defer func() {
		if err == nil {
			a.syncm.observeInstall(start)
		}
	}()
	// Compiling can take long (seconds for a large module); it happens
	// outside the lock so requests, heartbeats and the watcher's reads go
	// on meanwhile. Installs come from the watcher alone: different apps'
	// at once, one app's one at a time, so the merge below is what the
	// lock serializes. Before anything is written (the compile cache, the
	// module file, the store): a full disk must not break what serves.
	if err := a.disk.admit(int64(len(wasm)+len(envelope)), "module of app "+rel.App); err != nil {
		return &refusal{"disk_full", fmt.Errorf("%w: %w", ternsync.ErrTryLater, err)}
	}
	ia, err := a.loadApp(ctx, rel, envelope, wasm)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	next := map[string]*installedApp{}
	for name, ia := range a.apps {
		next[name] = ia
	}
	next[rel.App] = ia
	tbl, err := buildTable(next, a.originRoutes)
	if err != nil {
		ia.close(ctx)
		return &refusal{"route_conflict", err}
	}
	// The new release serves from here on; writing it to the store (a
	// synced commit, milliseconds to tens of milliseconds on a busy disk)
	// follows instead of delaying it. A crash in between loses only this
	// install: the store still holds the previous release, which a restart
	// serves until the watcher installs this one again. A failed write
	// puts the previous table back, so what serves is what is stored.
	prev := a.router.Swap(tbl)
	if err := a.store.PutApp(store.App{Name: rel.App, Sequence: rel.Sequence, Digest: rel.Digest, Envelope: envelope}, wasm); err != nil {
		a.router.Swap(prev)
		ia.close(ctx)
		return &refusal{"store", err}
	}
	a.grantAI(rel.App, rel.Manifest)
	a.heartbeats.Nudge()
	if a.fleet != nil && rel.Manifest.Deferrable != nil {
		a.fleet.nudge()
	}
	old := a.apps[rel.App]
	a.apps[rel.App] = next[rel.App]
	if old != nil {
		// Requests already inside the old version finish on it; Close
		// waits for them.
		go old.close(context.Background())
	}
	return nil
}

// loadApp prepares rel for serving: its compiled module, or for an origin
// app (a release without a module) its origin and health checks.
func (a *Agent) loadApp(ctx context.Context, rel artifact.Release, envelope, wasm []byte) (*installedApp, error) {
	ia := &installedApp{rel: rel, counters: &appCounters{}, keyID: artifact.PeekKeyID(envelope), account: a.accountInvocation}
	var err error
	if rel.HasModule() {
		ia.app, err = a.load(ctx, rel, wasm)
	} else {
		ia.origin, err = a.loadOrigin(rel)
	}
	if err != nil {
		return nil, err
	}
	return ia, nil
}

// load compiles rel's module with the limits and capabilities of its
// manifest.
func (a *Agent) load(ctx context.Context, rel artifact.Release, wasm []byte) (*wasmhost.App, error) {
	m := rel.Manifest.WithDefaults()
	// The runtime mounts the directories as resolved here, so that what
	// was checked is what the guest gets.
	var dirs map[string]string
	for guest, host := range m.Capabilities.Dirs {
		real, err := a.allowedDir(host)
		if err != nil {
			return nil, &refusal{"capability", fmt.Errorf("app %s: directory %s (mounted at %s): %w", rel.App, host, guest, err)}
		}
		if dirs == nil {
			dirs = make(map[string]string, len(m.Capabilities.Dirs))
		}
		dirs[guest] = real
	}
	// Any kv entry grants the app its private store.
	var kv wasmhost.KV
	if len(m.Capabilities.KV) > 0 {
		kv = appKV{a.store}
	}
	var hc wasmhost.Cache
	if m.Capabilities.Cache {
		ns, err := a.cache.Namespace(rel.App)
		if err != nil {
			return nil, &refusal{"capability", err}
		}
		hc = appCache{ns}
	}
	app, err := a.runtime.Load(ctx, wasmhost.AppConfig{
		Name:   rel.App,
		Digest: rel.Digest,
		// The watcher and loadInstalled check the bytes against the
		// signed digest before they get here (artifact.Release.CheckBytes).
		Verified: true,
		Wasm:     wasm,
		Limits: wasmhost.Limits{
			MemoryBytes:      uint64(m.Limits.Memory),
			Timeout:          time.Duration(m.Limits.Timeout),
			MaxResponseBytes: int64(m.Limits.MaxResponse),
			MaxRequestBytes:  int64(m.Limits.MaxRequest),
		},
		Env:          m.Capabilities.Env,
		Dirs:         dirs,
		Clock:        m.Capabilities.Clock,
		AllowedHosts: m.Capabilities.OutboundHosts,
		KV:           kv,
		Cache:        hc,
		AI:           a.aiFor(m),
	})
	if errors.Is(err, wasmhost.ErrLimit) || errors.Is(err, wasmhost.ErrCompileBudget) {
		return nil, compileRefusal(err)
	}
	if errors.Is(err, wasmhost.ErrInvalidModule) {
		return nil, &refusal{"invalid_module", err}
	}
	if err != nil {
		return nil, err
	}
	return app, nil
}

// allowedDir resolves the symbolic links of dir and returns its real
// path, if that lies under one of the agent's allowed_dirs (resolved
// too). A lexical check would pass a directory under an allowed one that
// is a link to anywhere else, /etc included.
func (a *Agent) allowedDir(dir string) (string, error) {
	if !filepath.IsAbs(dir) {
		return "", errors.New("not an absolute path")
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	for _, root := range a.cfg.AllowedDirs {
		if r, err := filepath.EvalSymlinks(root); err == nil && within(real, r) {
			return real, nil
		}
	}
	if real != filepath.Clean(dir) {
		return "", fmt.Errorf("resolves to %s, which is not under the agent's allowed_dirs", real)
	}
	return "", errors.New("not under the agent's allowed_dirs")
}

// within reports whether path is dir or lies under it; both are clean.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, string(filepath.Separator))+string(filepath.Separator))
}

// routeHeaders turns a manifest's response headers into an http.Header.
func routeHeaders(h map[string]string) http.Header {
	if len(h) == 0 {
		return nil
	}
	out := make(http.Header, len(h))
	for k, v := range h {
		out.Set(k, v)
	}
	return out
}

// buildTable builds the routing table of apps and the config's origin
// routes.
func buildTable(apps map[string]*installedApp, origins []routing.Route) (*routing.Table, error) {
	routes := append([]routing.Route(nil), origins...)
	for _, ia := range apps {
		for _, r := range ia.rel.Manifest.Routes {
			prefix := r.Path
			if prefix == "" {
				prefix = "/"
			}
			routes = append(routes, routing.Route{
				Host:          r.Host,
				Path:          prefix,
				App:           ia.rel.App,
				RedirectHTTPS: r.RedirectHTTPS,
				Scheme:        r.Scheme,
				Headers:       routeHeaders(r.Headers),
				EarlyData:     r.EarlyData,
				Handler: ia.counters.count(deferrable(ia.rel, prefix, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
					ia.serveAccounted(w, req, prefix)
				}))),
			})
		}
	}
	return routing.NewTable(routes)
}

// loadInstalled serves what the store holds: each app's last known good
// release, verified again against today's trusted keys. A release whose
// publisher is no longer trusted is not served.
func (a *Agent) loadInstalled(ctx context.Context) error {
	recs, err := a.store.Apps()
	if err != nil {
		return err
	}
	// Origin apps' health checks run from here on; if New fails later,
	// they must stop with it.
	a.onUndo(a.closeOriginApps)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, rec := range recs {
		rel, err := artifact.Open(rec.Envelope, a.verifyKeys())
		if err != nil {
			a.logger.Warn("installed release no longer verifies; not serving it", "app", rec.Name, "err", err)
			continue
		}
		var wasm []byte
		if rel.HasModule() {
			wasm, err = a.store.Wasm(rec.Digest)
		}
		if err == nil {
			err = rel.CheckBytes(wasm)
		}
		if err != nil {
			a.logger.Error("installed module unreadable; not serving it", "app", rec.Name, "err", err)
			continue
		}
		if err := rel.CheckFresh(a.now(), 0); errors.Is(err, artifact.ErrExpired) {
			if a.cfg.Expired == "refuse" {
				a.logger.Warn("installed release expired; not serving it (expired = refuse)", "app", rel.App, "expired", rel.Expires)
				continue
			}
			a.logger.Warn("serving an expired release until the hub sends a newer one", "app", rel.App, "expired", rel.Expires)
		}
		ia, err := a.loadApp(ctx, rel, rec.Envelope, wasm)
		if err != nil {
			a.logger.Error("installed module does not load; not serving it", "app", rec.Name, "err", err)
			continue
		}
		a.apps[rel.App] = ia
		a.grantAI(rel.App, rel.Manifest)
	}
	tbl, err := buildTable(a.apps, a.originRoutes)
	if err != nil {
		return fmt.Errorf("routes of installed apps: %w", err)
	}
	a.router.Swap(tbl)
	if len(a.apps) > 0 {
		a.logger.Info("serving installed apps from the store", "apps", len(a.apps))
	}
	return nil
}
