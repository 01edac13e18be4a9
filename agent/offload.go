package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/tern-edge/tern/carbon"
	"github.com/tern-edge/tern/gpu"
	"github.com/tern-edge/tern/jobs"
	ternsync "github.com/tern-edge/tern/sync"
)

// fleetView is the agent's picture of the other sites, read from the
// fleet's heartbeats every heartbeat interval: where deferred jobs may go
// (with each site's forecast and the apps it runs as this site does) and
// which sites offer which models. Safe for concurrent use.
type fleetView struct {
	a      *Agent
	logger *slog.Logger

	wake chan struct{} // asks for a read now: an app that needs the view was installed

	// latest holds every agent's latest heartbeat as the fleet watch
	// delivers it; the watch runs only while the view is needed.
	latestMu    gosync.Mutex
	latest      map[string]ternsync.Heartbeat
	stopWatch   context.CancelFunc
	watchExited chan struct{}

	mu      gosync.Mutex
	beats   []ternsync.Heartbeat // other sites' fresh heartbeats, one per site
	peers   []ternsync.Heartbeat // the other agents of this site
	scanned bool                 // the site's jobs on the hub were read once
	sites   []carbon.RemoteSite
	key     string // what sites was built from, to bump version on change
	version uint64
}

// offloadHook, when set (tests only), runs when a job from another site
// arrives, before it runs.
type offloadHook = func(jobID string)

// run keeps the view of the fleet up to date until ctx is done, while
// some installed app needs it, and adopts the site's orphaned jobs.
//
// The view is not kept otherwise because it is not free at fleet scale:
// every agent receiving every other's heartbeat is N² work for the hub
// and the leaf links, most of an idle fleet's cost when no app defers
// work or calls models elsewhere. While it is kept, heartbeats come from
// one long-lived watch (see ternsync.Client.WatchFleet), not from a
// fresh read every interval.
func (v *fleetView) run(ctx context.Context) error {
	iv := time.Duration(v.a.cfg.Heartbeat)
	if iv <= 0 {
		iv = ternsync.DefaultHeartbeatInterval
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	defer v.unwatch()
	for {
		if v.needed() {
			v.watch(ctx, iv)
			v.refresh()
			v.adoptOrphans(ctx, iv)
		} else {
			v.unwatch()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-v.wake:
		}
	}
}

// needed reports whether an installed app uses the fleet: a deferrable
// one (its jobs may go to other sites, other agents of this site may adopt
// them, and one of them makes its scheduled runs), or one granted models,
// which may be served elsewhere.
func (v *fleetView) needed() bool {
	if v.a.gpu != nil && v.a.gpu.svc.Granted() {
		return true
	}
	v.a.mu.Lock()
	defer v.a.mu.Unlock()
	for _, ia := range v.a.apps {
		if ia.rel.Manifest.Deferrable != nil {
			return true
		}
	}
	return false
}

// nudge asks for a read now, without waiting for it.
func (v *fleetView) nudge() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// watch starts the fleet watch unless it runs. It restarts itself after
// a failure (the hub unreachable, the bucket not there yet) every iv; the
// heartbeats already received stay meanwhile.
func (v *fleetView) watch(ctx context.Context, iv time.Duration) {
	if v.stopWatch != nil {
		return
	}
	wctx, cancel := context.WithCancel(ctx)
	exited := make(chan struct{})
	v.stopWatch, v.watchExited = cancel, exited
	go func() {
		defer close(exited)
		for wctx.Err() == nil {
			err := v.a.client.WatchFleet(wctx, func(hb ternsync.Heartbeat) {
				v.latestMu.Lock()
				if v.latest == nil {
					v.latest = map[string]ternsync.Heartbeat{}
				}
				v.latest[hb.Agent] = hb
				v.latestMu.Unlock()
			}, v.nudge) // caught up: rebuild the view now, not an interval later
			if wctx.Err() != nil {
				return
			}
			v.logger.Debug("fleet watch ended; keeping the last view", "err", err)
			select {
			case <-wctx.Done():
			case <-time.After(iv):
			}
		}
	}()
}

// unwatch stops the fleet watch, if it runs, and waits for it.
func (v *fleetView) unwatch() {
	if v.stopWatch == nil {
		return
	}
	v.stopWatch()
	<-v.watchExited
	v.stopWatch, v.watchExited = nil, nil
}

// refresh rebuilds the view from the latest heartbeats, keeping the
// freshest of each other site; heartbeats the hub would have dropped by
// now (older than ternsync.FleetTTL) are forgotten.
func (v *fleetView) refresh() {
	v.latestMu.Lock()
	fleet := make([]ternsync.Heartbeat, 0, len(v.latest))
	for agent, hb := range v.latest {
		if time.Since(hb.Time) > ternsync.FleetTTL {
			delete(v.latest, agent)
			continue
		}
		fleet = append(fleet, hb)
	}
	v.latestMu.Unlock()
	// Map order is random; the view's lists are built in a fixed order.
	slices.SortFunc(fleet, func(x, y ternsync.Heartbeat) int {
		return cmp.Or(cmp.Compare(x.Site, y.Site), cmp.Compare(x.Agent, y.Agent))
	})
	// Heartbeats carry the senders' wall-clock time, so staleness is
	// judged on the wall clock, not the agent's injected one.
	now := time.Now()
	bySite := map[string]ternsync.Heartbeat{}
	var peers []ternsync.Heartbeat
	for _, hb := range fleet {
		if hb.Agent != v.a.id && hb.Site == v.a.site {
			peers = append(peers, hb)
		}
		if hb.Agent == v.a.id || hb.Site == v.a.site || hb.Stale(now) {
			continue
		}
		if old, ok := bySite[hb.Site]; !ok || hb.Time.After(old.Time) {
			bySite[hb.Site] = hb
		}
	}
	beats := make([]ternsync.Heartbeat, 0, len(bySite))
	for _, hb := range bySite {
		beats = append(beats, hb)
	}
	slices.SortFunc(beats, func(x, y ternsync.Heartbeat) int { return cmp.Compare(x.Site, y.Site) })
	sites, key := v.remoteSites(beats)
	v.mu.Lock()
	v.beats, v.peers = beats, peers
	if key != v.key {
		v.sites, v.key = sites, key
		v.version++
	}
	v.mu.Unlock()
}

// remoteSites turns heartbeats into the planner's sites: those that take
// jobs (a carbon offer with capacity free), with their forecast, and
// limited to the apps they run with the same digest as here, since a job
// must run the release it was accepted for.
func (v *fleetView) remoteSites(beats []ternsync.Heartbeat) ([]carbon.RemoteSite, string) {
	local := map[string]string{}
	for _, rel := range v.a.Apps() {
		local[rel.App] = rel.Digest
	}
	transfer := time.Duration(v.a.cfg.Carbon.Transfer)
	var out []carbon.RemoteSite
	for _, hb := range beats {
		o := hb.Carbon
		if o == nil || (o.Capacity > 0 && o.Free <= 0) {
			continue
		}
		s := carbon.RemoteSite{Site: carbon.Site{Name: hb.Site, Region: o.Region, Capacity: o.Free, Transfer: transfer, PUE: max(o.PUE, 1)}, Apps: []string{}}
		if h := o.Heat; h != nil {
			s.Heat = &carbon.HeatReuse{Captured: h.Captured, Demand: h.Demand, DisplacedGCO2PerKWh: h.DisplacedGCO2PerKWh, HeatPumpCOP: h.HeatPumpCOP, SinkKW: h.SinkKW}
		}
		for _, app := range hb.Apps {
			if d, ok := local[app.App]; ok && d == app.Digest {
				s.Apps = append(s.Apps, app.App)
			}
		}
		if len(o.Forecast) > 0 && o.Step > 0 {
			signal := carbon.Average
			if o.Marginal {
				signal = carbon.Marginal
			}
			c, err := carbon.CurveFromValues(o.ForecastStart, o.Step, o.Forecast, carbon.Forecast, signal, o.ForecastSource)
			if err != nil {
				v.logger.Debug("unusable forecast in heartbeat", "site", hb.Site, "err", err)
			} else {
				s.Forecast, s.Source = c, hb.Site+":"+o.ForecastSource
			}
		}
		out = append(out, s)
	}
	type keyed struct {
		Sites []carbon.Site
		Apps  [][]string
		Fc    [][]float64
		Start []time.Time
	}
	var k keyed
	for _, s := range out {
		k.Sites = append(k.Sites, s.Site)
		k.Apps = append(k.Apps, s.Apps)
		if s.Forecast != nil {
			k.Fc, k.Start = append(k.Fc, s.Forecast.Values()), append(k.Start, s.Forecast.Origin())
		} else {
			k.Fc, k.Start = append(k.Fc, nil), append(k.Start, time.Time{})
		}
	}
	b, _ := json.Marshal(k)
	return out, string(b)
}

// modelSite returns the other site to run model at: one whose heartbeat
// offers it, preferring free slots, then the cleaner grid now.
func (v *fleetView) modelSite(model string) (string, bool) {
	v.mu.Lock()
	beats := v.beats
	v.mu.Unlock()
	best, bestFree, bestI := "", false, math.Inf(1)
	for _, hb := range beats {
		if len(hb.GPU) == 0 {
			continue
		}
		var offer gpu.SiteOffer
		if err := json.Unmarshal(hb.GPU, &offer); err != nil || !slices.Contains(offer.Models, model) {
			continue
		}
		free := offer.FreeSlots > 0
		intensity := math.Inf(1)
		if hb.Carbon != nil && hb.Carbon.Now != nil {
			intensity = *hb.Carbon.Now
		}
		if best == "" || (free && !bestFree) || (free == bestFree && intensity < bestI) {
			best, bestFree, bestI = hb.Site, free, intensity
		}
	}
	return best, best != ""
}

// Sites implements jobs.Offloader.
func (v *fleetView) Sites() ([]carbon.RemoteSite, uint64) {
	if !v.a.cfg.Carbon.Offload {
		return nil, 0
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.sites, v.version
}

// Offload implements jobs.Offloader: it sends the job to site over NATS
// with the digest of the release this site runs for the app.
func (v *fleetView) Offload(ctx context.Context, site string, job jobs.OffloadJob) (jobs.OffloadResult, error) {
	_, digest := v.a.Installed(job.App)
	if digest == "" {
		return jobs.OffloadResult{}, fmt.Errorf("offload job %s: app %s: %w", job.ID, job.App, errNotInstalled)
	}
	res, err := v.a.client.OffloadJob(ctx, site, ternsync.OffloadJob{
		ID: job.ID, Origin: v.a.site, App: job.App, Digest: digest, Route: job.Route,
		Method: job.Method, Target: job.Target, Host: job.Host, RemoteAddr: job.RemoteAddr, TLS: job.TLS,
		Header: job.Header, Body: job.Body, Deadline: job.Deadline, RunNow: job.RunNow, Regions: job.Regions,
	})
	if err != nil {
		return jobs.OffloadResult{}, err
	}
	return jobs.OffloadResult{Status: res.Status, Header: res.Header, Body: res.Body, Grams: res.Grams, RunNowGrams: res.RunNowGrams}, nil
}

var _ jobs.Offloader = (*fleetView)(nil)

// jobServer runs the jobs other sites send here.
type jobServer struct{ a *Agent }

var _ ternsync.JobRunner = jobServer{}

// RunOffloaded runs a job from another site through the release this
// site installed, refusing it unless that release has the digest the
// origin runs: code never travels with a job.
func (js jobServer) RunOffloaded(ctx context.Context, job ternsync.OffloadJob) ternsync.OffloadResult {
	a := js.a
	if h := a.offloadHook.Load(); h != nil {
		(*h)(job.ID)
	}
	if _, digest := a.Installed(job.App); digest == "" || digest != job.Digest {
		reason := fmt.Sprintf("app %s not installed", job.App)
		if digest != "" {
			reason = fmt.Sprintf("app %s runs %s here, not %s", job.App, digest, job.Digest)
		}
		a.logger.Info("refused a job from another site", "job", job.ID, "origin", job.Origin, "reason", reason)
		return ternsync.OffloadResult{Refused: true, Error: reason}
	}
	res, err := a.jobs.RunOffloaded(ctx, jobs.OffloadJob{
		ID: job.ID, App: job.App, Route: job.Route, Method: job.Method, Target: job.Target, Host: job.Host,
		RemoteAddr: job.RemoteAddr, TLS: job.TLS, Header: job.Header, Body: job.Body, Deadline: job.Deadline, RunNow: job.RunNow,
		Regions: job.Regions,
	})
	if err != nil {
		a.logger.Warn("job from another site failed", "job", job.ID, "origin", job.Origin, "err", err)
		return ternsync.OffloadResult{Refused: errors.Is(err, errNotInstalled) || errors.Is(err, jobs.ErrRegion), Error: err.Error()}
	}
	a.logger.Info("ran a job for another site", "job", job.ID, "origin", job.Origin, "app", job.App, "status", res.Status)
	return ternsync.OffloadResult{Status: res.Status, Header: res.Header, Body: res.Body, Grams: res.Grams, RunNowGrams: res.RunNowGrams}
}

// runOffload returns the cross-site loops: the fleet view, the job
// server and, with an inference service, the inference server.
func (a *Agent) runOffload(ctx context.Context) []func() error {
	if a.fleet == nil {
		return nil
	}
	logger := a.logger.With("component", "offload")
	// A site name that cannot be a subject token (a host name with dots)
	// only means other sites cannot reach this one: not a reason to stop.
	tolerate := func(what string, err error) error {
		if errors.Is(err, ternsync.ErrInvalidSite) {
			logger.Warn(what+" from other sites disabled", "err", err)
			return nil
		}
		return err
	}
	fns := []func() error{func() error { return a.fleet.run(ctx) }}
	if a.cfg.Carbon.Offload {
		fns = append(fns, func() error { return tolerate("jobs", a.client.ServeJobs(ctx, a.site, jobServer{a}, logger)) })
	}
	if a.gpu != nil {
		fns = append(fns, func() error { return tolerate("inference", a.client.ServeAI(ctx, a.site, aiServer{a.gpu.svc}, logger)) })
	}
	return fns
}

// hookPtr is an atomic holder for offloadHook.
type hookPtr = atomic.Pointer[offloadHook]
