package agent

import (
	"context"
	"net/http"
	gosync "sync"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/internal/cputime"
	"github.com/tern-edge/tern/origin"
)

// originApp is an installed origin app: the agent's cache in front of the
// upstreams its manifest names. It shares the cache (budget, eviction,
// purges) with the config's origins; its entries are keyed by URL like
// theirs, so a purge by URL or prefix reaches both.
type originApp struct {
	o       *origin.Origin
	handler http.Handler
	// stop ends the active health checks; done is closed once they have.
	stop context.CancelFunc
	done chan struct{}
	once gosync.Once
}

// loadOrigin builds the origin of rel's [origin] table and starts its
// health checks, which run until the app is closed: when a newer release
// replaces it, when it is unloaded, or when the agent stops.
func (a *Agent) loadOrigin(rel artifact.Release) (*originApp, error) {
	mo := rel.Manifest.Origin
	o, err := newOrigin(OriginConfig{
		Name:              rel.App,
		Upstreams:         mo.Upstreams,
		HostHeader:        mo.HostHeader,
		ConnectTimeout:    mo.ConnectTimeout,
		Timeout:           mo.Timeout,
		Retries:           mo.Retries,
		HealthPath:        mo.HealthPath,
		HealthInterval:    mo.HealthInterval,
		ShareCredentialed: mo.ShareCredentialed,
	}, a)
	if err != nil {
		// The manifest validated, so this is an agent-side limit.
		return nil, &refusal{"invalid_origin", err}
	}
	ctx, cancel := context.WithCancel(context.Background())
	oa := &originApp{o: o, handler: origin.Handler(a.cache, o), stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(oa.done)
		_ = o.Run(ctx) // returns nil once ctx is done
	}()
	return oa, nil
}

// close stops the health checks and drops idle upstream connections.
// Requests in flight finish on their own; close may be called more than
// once.
func (oa *originApp) close() {
	oa.once.Do(func() {
		oa.stop()
		<-oa.done
		oa.o.CloseIdleConnections()
	})
}

// serve answers r with ia's function or, for an origin app, through the
// cache; prefix is the matched route's path prefix.
func (ia *installedApp) serve(w http.ResponseWriter, r *http.Request, prefix string) {
	if ia.origin != nil {
		ia.origin.handler.ServeHTTP(w, r)
		return
	}
	ia.app.Serve(w, r, prefix)
}

// serveAccounted serves r like serve and, for a function, records the
// invocation's CPU time in the carbon ledger. Deferred jobs run through
// serve instead: the job scheduler accounts them, with their run-now
// counterfactual.
func (ia *installedApp) serveAccounted(w http.ResponseWriter, r *http.Request, prefix string) {
	if ia.origin != nil || ia.account == nil {
		ia.serve(w, r, prefix)
		return
	}
	start := time.Now()
	u := cputime.Measure(func() { ia.app.Serve(w, r, prefix) })
	ia.account(ia.rel.App, start, u)
}

// close releases what ia holds: for a function, its compiled module once
// the requests inside it have finished (Close waits for them); for an
// origin app, its health checks.
func (ia *installedApp) close(ctx context.Context) {
	if ia.origin != nil {
		ia.origin.close()
		return
	}
	ia.app.Close(ctx)
}

// closeOriginApps stops the health checks of every installed origin app.
// It runs when the agent stops or New fails after loading apps; closing an
// app twice is harmless.
func (a *Agent) closeOriginApps() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ia := range a.apps {
		if ia.origin != nil {
			ia.origin.close()
		}
	}
}
