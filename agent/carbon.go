package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/carbon"
	"github.com/tern-edge/tern/carbon/provider"
	"github.com/tern-edge/tern/gpu"
	"github.com/tern-edge/tern/internal/cputime"
	"github.com/tern-edge/tern/jobs"
	"github.com/tern-edge/tern/store"
	ternsync "github.com/tern-edge/tern/sync"
)

// Environment variables read for carbon provider credentials left empty
// in the config file, so that secrets need not be written to it.
const (
	EnvElectricityMapsToken = "TERN_ELECTRICITYMAPS_TOKEN"
	EnvWattTimeUsername     = "TERN_WATTTIME_USERNAME"
	EnvWattTimePassword     = "TERN_WATTTIME_PASSWORD"
)

// CarbonConfig is the [carbon] table: where the agent's grid intensity
// comes from, the site's capacity for deferred jobs, and the power model
// for accounting (see docs/CONFIG.md and docs/CARBON.md).
type CarbonConfig struct {
	// Region is the grid region of this site as the provider names it
	// ("DE", "GB", "CAISO_NORTH"), matched against apps' allowed regions.
	Region string `toml:"region"`
	// Provider is the live source: "electricitymaps", "watttime",
	// "ukgrid", or empty for none.
	Provider string `toml:"provider"`
	// Trace is a trace file (CSV or JSON) used when the live source fails;
	// a trace from another year is replayed by whole weeks.
	Trace string `toml:"trace"`
	// Constant is the last resort, in gCO2/kWh; 0 means none.
	Constant float64 `toml:"constant"`
	// Capacity is how many deferred jobs run at once; 0 means unlimited.
	Capacity int `toml:"capacity"`
	// WattsPerCore is the power of one busy core for accounting.
	WattsPerCore float64 `toml:"watts_per_core"`
	// PUE is the site's power usage effectiveness; 0 means 1.
	PUE float64 `toml:"pue"`
	// Step is the planning grid; Refresh how often the forecast is read;
	// Horizon how far ahead; Tick how often due jobs are started;
	// KeepResults how long finished jobs are kept.
	Step        artifact.Duration `toml:"step"`
	Refresh     artifact.Duration `toml:"refresh"`
	Horizon     artifact.Duration `toml:"horizon"`
	Tick        artifact.Duration `toml:"tick"`
	KeepResults artifact.Duration `toml:"keep_results"`
	// Offload lets deferred jobs run at other sites of the fleet that
	// run the same release where the grid is cleaner, and takes theirs;
	// the site then advertises its grid and free capacity in its
	// heartbeat. Default true.
	Offload bool `toml:"offload"`
	// OffloadTimeout is the longest a job sent to another site is waited
	// for before it runs here instead; Transfer is the one-way time a job
	// takes to reach another site, added before its start and before its
	// deadline.
	OffloadTimeout artifact.Duration `toml:"offload_timeout"`
	Transfer       artifact.Duration `toml:"transfer"`

	ElectricityMaps ElectricityMapsConfig `toml:"electricitymaps"`
	WattTime        WattTimeConfig        `toml:"watttime"`
	UKGrid          UKGridConfig          `toml:"ukgrid"`
}

// ElectricityMapsConfig is [carbon.electricitymaps].
type ElectricityMapsConfig struct {
	// Token is the API key; empty reads TERN_ELECTRICITYMAPS_TOKEN.
	Token provider.Secret `toml:"token"`
	// BaseURL replaces the public API root.
	BaseURL string `toml:"base_url"`
}

// WattTimeConfig is [carbon.watttime].
type WattTimeConfig struct {
	// Username and Password are the account's; empty reads
	// TERN_WATTTIME_USERNAME and TERN_WATTTIME_PASSWORD.
	Username string          `toml:"username"`
	Password provider.Secret `toml:"password"`
	BaseURL  string          `toml:"base_url"`
}

// UKGridConfig is [carbon.ukgrid].
type UKGridConfig struct {
	BaseURL string `toml:"base_url"`
}

func defaultCarbonConfig() CarbonConfig {
	return CarbonConfig{
		WattsPerCore:   10,
		Step:           artifact.Duration(15 * time.Minute),
		Refresh:        artifact.Duration(15 * time.Minute),
		Horizon:        artifact.Duration(48 * time.Hour),
		Tick:           artifact.Duration(5 * time.Second),
		KeepResults:    artifact.Duration(7 * 24 * time.Hour),
		Offload:        true,
		OffloadTimeout: artifact.Duration(10 * time.Minute),
		Transfer:       artifact.Duration(time.Minute),
	}
}

func (c CarbonConfig) validate() error {
	switch c.Provider {
	case "", "electricitymaps", "watttime", "ukgrid":
	default:
		return fmt.Errorf("carbon.provider = %q: want electricitymaps, watttime, ukgrid or nothing", c.Provider)
	}
	switch {
	case c.Constant < 0:
		return fmt.Errorf("carbon.constant = %g: must not be negative", c.Constant)
	case c.Capacity < 0:
		return fmt.Errorf("carbon.capacity = %d: must not be negative", c.Capacity)
	case c.WattsPerCore < 0:
		return fmt.Errorf("carbon.watts_per_core = %g: must not be negative", c.WattsPerCore)
	case c.PUE != 0 && c.PUE < 1:
		return fmt.Errorf("carbon.pue = %g: must be at least 1", c.PUE)
	case time.Duration(c.Step) < time.Minute:
		return fmt.Errorf("carbon.step = %s: must be at least 1m", c.Step)
	case time.Duration(c.Refresh) < time.Minute:
		return fmt.Errorf("carbon.refresh = %s: must be at least 1m", c.Refresh)
	case time.Duration(c.Horizon) < time.Hour || time.Duration(c.Horizon) > 14*24*time.Hour:
		return fmt.Errorf("carbon.horizon = %s: must lie in [1h, 336h]", c.Horizon)
	case time.Duration(c.Tick) < 100*time.Millisecond || time.Duration(c.Tick) > time.Minute:
		return fmt.Errorf("carbon.tick = %s: must lie in [100ms, 1m]", c.Tick)
	case time.Duration(c.KeepResults) < time.Minute:
		return fmt.Errorf("carbon.keep_results = %s: must be at least 1m", c.KeepResults)
	case time.Duration(c.OffloadTimeout) < time.Second:
		return fmt.Errorf("carbon.offload_timeout = %s: must be at least 1s", c.OffloadTimeout)
	case c.Transfer < 0:
		return fmt.Errorf("carbon.transfer = %s: must not be negative", c.Transfer)
	}
	return nil
}

// site is the local site as the planner and the ledger see it.
func (a *Agent) carbonSite() carbon.Site {
	c := a.cfg.Carbon
	return carbon.Site{Name: a.site, Region: c.Region, Capacity: c.Capacity, PUE: c.PUE}
}

// intensity builds the fallback chain: the live provider (cached, its
// current readings recorded in the store, its forecast combined with one
// from the recorded history), its last forecast, a forecast
// from the recorded history, the trace, the constant. It is nil, with no
// error, when the config names none of them.
func (a *Agent) intensity(logger *slog.Logger) (carbon.Provider, error) {
	c := a.cfg.Carbon
	chain := &carbon.Chain{Constant: c.Constant, Now: a.now, Logger: logger}
	httpCfg := func(base string) provider.HTTPConfig {
		return provider.HTTPConfig{BaseURL: base, Now: a.now, Logger: logger}
	}
	var live carbon.Provider
	switch c.Provider {
	case "electricitymaps":
		tok := c.ElectricityMaps.Token
		if tok == "" {
			tok = provider.Secret(os.Getenv(EnvElectricityMapsToken))
		}
		if tok == "" {
			return nil, fmt.Errorf("carbon.electricitymaps.token: empty, and %s is not set", EnvElectricityMapsToken)
		}
		em, err := provider.NewElectricityMaps(provider.ElectricityMapsConfig{HTTPConfig: httpCfg(c.ElectricityMaps.BaseURL), Token: tok})
		if err != nil {
			return nil, err
		}
		live = em
	case "watttime":
		user, pass := c.WattTime.Username, c.WattTime.Password
		if user == "" {
			user = os.Getenv(EnvWattTimeUsername)
		}
		if pass == "" {
			pass = provider.Secret(os.Getenv(EnvWattTimePassword))
		}
		if user == "" || pass == "" {
			return nil, fmt.Errorf("carbon.watttime: username and password are required (or %s and %s)", EnvWattTimeUsername, EnvWattTimePassword)
		}
		wt, err := provider.NewWattTime(provider.WattTimeConfig{HTTPConfig: httpCfg(c.WattTime.BaseURL), Username: user, Password: pass})
		if err != nil {
			return nil, err
		}
		live = wt
	case "ukgrid":
		uk, err := provider.NewUKGrid(provider.UKGridConfig{HTTPConfig: httpCfg(c.UKGrid.BaseURL)})
		if err != nil {
			return nil, err
		}
		live = uk
	}
	if a.carbonLive != nil {
		live = a.carbonLive
	}
	if live != nil {
		live = &recordingProvider{Provider: live, store: a.store, now: a.now, logger: logger}
		chain.History = &carbon.FromHistory{History: storeHistory{a.store}, Lookback: store.IntensityKeep, Now: a.now}
		// Each finished job asks for the current intensity; five minutes
		// of reuse keeps that to a few requests an hour. The provider's
		// forecast is combined with Tern's own from the recorded history
		// (docs/CARBON.md: it keeps more of the oracle's saving than
		// either alone).
		chain.Live = &carbon.Combining{Live: carbon.NewCache(live, 5*time.Minute, a.now), History: chain.History}
	}
	if c.Trace != "" {
		f, err := os.Open(c.Trace)
		if err != nil {
			return nil, fmt.Errorf("carbon.trace: %w", err)
		}
		rs, err := provider.ReadTrace(f, filepath.Base(c.Trace))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("carbon.trace %s: %w", c.Trace, err)
		}
		tr := provider.NewTrace("", rs)
		tr.Replay, tr.Now = true, a.now
		chain.Trace = tr
	}
	if chain.Live == nil && chain.Trace == nil && c.Constant <= 0 {
		// No source at all, as documented for the default config: plan
		// without forecasts rather than warn at every refresh that the
		// sources failed.
		return nil, nil
	}
	return chain, nil
}

// openJobs builds the carbon ledger on the agent's registry and the job
// scheduler over the store, reloading the jobs it holds.
func (a *Agent) openJobs(ticks <-chan time.Time) error {
	logger := a.logger.With("component", "carbon")
	c := a.cfg.Carbon
	site := a.carbonSite()
	src, err := a.intensity(logger)
	if err != nil {
		return err
	}
	a.ledger, err = carbon.NewLedger(carbon.PowerModel{WattsPerCore: c.WattsPerCore}, []carbon.Site{site})
	if err != nil {
		return fmt.Errorf("carbon: %w", err)
	}
	if err := a.reg.Register(a.ledger); err != nil {
		return fmt.Errorf("carbon metrics: %w", err)
	}
	a.fleet = &fleetView{a: a, logger: a.logger.With("component", "offload"), wake: make(chan struct{}, 1)}
	a.jobs, err = jobs.New(jobs.Config{
		Store: a.store, Run: a.runJob, Site: site, Intensity: src, Ledger: a.ledger,
		Step: time.Duration(c.Step), Horizon: time.Duration(c.Horizon), Refresh: time.Duration(c.Refresh),
		Tick: time.Duration(c.Tick), Ticks: ticks, KeepResults: time.Duration(c.KeepResults),
		Now: a.now, Logger: logger,
		Offload: a.fleet, OffloadTimeout: time.Duration(c.OffloadTimeout),
		Schedules: a.schedules, Leader: a.fleet.scheduleLeader, Queue: a.jobQueue(),
	})
	if err != nil {
		return err
	}
	a.registerJobMetrics()
	return nil
}

// registerJobMetrics exports the scheduler's totals; labels are none, so
// the series are as many as the families.
func (a *Agent) registerJobMetrics() {
	for _, m := range []struct {
		name, help string
		f          func(jobs.Counts) int64
	}{
		{"tern_jobs_queued_total", "Deferred jobs accepted (submitted or made by a schedule).", func(c jobs.Counts) int64 { return c.Queued }},
		{"tern_jobs_deferred_total", "Accepted jobs planned to start later than at once, for a cleaner grid.", func(c jobs.Counts) int64 { return c.Deferred }},
		{"tern_jobs_run_total", "Jobs this site ran to the end.", func(c jobs.Counts) int64 { return c.Run }},
		{"tern_jobs_offloaded_total", "Jobs another site ran for this one.", func(c jobs.Counts) int64 { return c.Offloaded }},
		{"tern_jobs_deadline_misses_total", "Jobs that expired before they could start, or started too late to finish by their deadline.", func(c jobs.Counts) int64 { return c.DeadlineMisses }},
	} {
		a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: m.name, Help: m.help},
			func() float64 { return float64(m.f(a.jobs.Counts())) }))
	}
}

// carbonOffer is what the heartbeat tells other sites about this one's
// grid and free job capacity, or nil when the site takes no jobs from
// them: the current intensity, the forecast as hourly means (at most
// ternsync.MaxOfferPoints), the PUE and the heat reuse of [gpu.heat].
func (a *Agent) carbonOffer() *ternsync.CarbonOffer {
	c := a.cfg.Carbon
	if !c.Offload || a.jobs == nil {
		return nil
	}
	st := a.jobs.Status()
	o := &ternsync.CarbonOffer{Region: c.Region, Capacity: c.Capacity, PUE: c.PUE}
	if c.Capacity > 0 {
		o.Free = max(c.Capacity-st.Running, 0)
	}
	if st.Now != nil {
		v := st.Now.GCO2PerKWh
		o.Now, o.NowSource = &v, st.Now.Source
	}
	if len(st.Forecast) > 0 {
		rs := make([]carbon.Reading, len(st.Forecast))
		for i, p := range st.Forecast {
			rs[i] = carbon.Reading{Start: p.Start, Duration: p.Duration, GCO2PerKWh: p.GCO2PerKWh, Source: p.Source}
		}
		o.ForecastSource, o.Marginal = st.Forecast[0].Source, st.Forecast[0].Signal == carbon.Marginal.String()
		if curve, err := carbon.Resample(rs, time.Hour); err == nil {
			start := a.now().Truncate(time.Hour)
			for t := start; len(o.Forecast) < ternsync.MaxOfferPoints; t = t.Add(time.Hour) {
				v, ok := curve.Mean(t, t.Add(time.Hour))
				if !ok {
					break
				}
				o.Forecast = append(o.Forecast, v)
			}
			if len(o.Forecast) > 0 {
				o.ForecastStart, o.Step = start, time.Hour
			}
		}
	}
	if h := a.cfg.GPU.heatSite(); h.HeatCapture > 0 && h.Displaced.Kind != gpu.DisplacedNone {
		ho := &ternsync.HeatOffer{Captured: h.HeatCapture, Demand: h.HeatDemand, SinkKW: h.HeatSinkKW}
		switch h.Displaced.Kind {
		case gpu.DisplacedHeatPump:
			ho.HeatPumpCOP = h.Displaced.Efficiency
		case gpu.DisplacedResistive:
			ho.HeatPumpCOP = 1 // EF = grid intensity
		default:
			ho.DisplacedGCO2PerKWh, _ = h.Displaced.HeatEF(0)
		}
		o.Heat = ho
	}
	return o
}

// accountInvocation records one function invocation served at once (not
// deferred) in the carbon ledger: its CPU time at the site's current
// intensity, which is also its run-now counterfactual since it was not
// moved. Before the first intensity reading, or without carbon accounting,
// it records nothing rather than guess.
func (a *Agent) accountInvocation(app string, start time.Time, u cputime.Usage) {
	if a.ledger == nil || a.jobs == nil {
		return
	}
	cur, ok := a.jobs.Intensity()
	if !ok {
		return
	}
	a.ledger.Record(carbon.Usage{App: app, Site: a.site, Start: start, Duration: u.Wall, CPUSeconds: u.CPU.Seconds()}, cur, cur)
}

// errNotInstalled is a job's error when its app is gone.
var errNotInstalled = errors.New("app not installed")

// runJob runs a deferred request through the app's current version.
func (a *Agent) runJob(app, route string, w http.ResponseWriter, r *http.Request) error {
	a.mu.Lock()
	ia := a.apps[app]
	a.mu.Unlock()
	if ia == nil {
		http.Error(w, "app not installed", http.StatusServiceUnavailable)
		return fmt.Errorf("run job for %s: %w", app, errNotInstalled)
	}
	ia.counters.count(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ia.serve(w, r, route)
	})).ServeHTTP(w, r)
	return nil
}

// jobsKey carries the scheduler to deferrable routes in a request's
// context: the routing table is built by a function shared with other
// parts of the agent, and the context is how it reaches the route
// without widening that function.
type jobsKey struct{}

// withJobs serves job state under jobs.PathPrefix on every host, ahead of
// any app route (so no app can shadow it), and hands the scheduler to
// deferrable routes on non-safe requests.
func (a *Agent) withJobs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, jobs.PathPrefix) {
			a.jobs.ServeHTTP(w, r)
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		default:
			r = r.WithContext(context.WithValue(r.Context(), jobsKey{}, a.jobs))
		}
		next.ServeHTTP(w, r)
	})
}

// deferrable wraps an app route's handler: for an app with a [deferrable]
// table, non-safe requests become jobs.
func deferrable(rel artifact.Release, prefix string, h http.Handler) http.Handler {
	d := rel.Manifest.Deferrable
	if d == nil {
		return h
	}
	m := rel.Manifest.WithDefaults()
	spec := jobs.Spec{
		App: rel.App, Route: prefix, MaxDelay: time.Duration(d.MaxDelay), Runtime: time.Duration(d.ExpectedRuntime),
		Regions: d.Regions, MaxRequest: int64(m.Limits.MaxRequest),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := r.Context().Value(jobsKey{}).(*jobs.Scheduler)
		if s == nil {
			h.ServeHTTP(w, r)
			return
		}
		s.Defer(spec, h).ServeHTTP(w, r)
	})
}

// CarbonStatus is what the admin endpoint /carbon serves and `tern carbon
// status` prints.
type CarbonStatus struct {
	jobs.Status
	// Apps are the accounted totals per app at this site, with the
	// run-now counterfactual beside the actual.
	Apps []CarbonTotals `json:"apps"`
}

// CarbonTotals are one app's accounted runs.
type CarbonTotals struct {
	App         string  `json:"app"`
	Site        string  `json:"site"`
	Invocations int     `json:"invocations"`
	EnergyJ     float64 `json:"energy_joules"`
	Grams       float64 `json:"grams"`
	RunNowGrams float64 `json:"run_now_grams"`
	SavedGrams  float64 `json:"saved_grams"`
}

// carbonStatus returns the carbon state for the admin API.
func (a *Agent) carbonStatus() CarbonStatus {
	st := CarbonStatus{Status: a.jobs.Status(), Apps: []CarbonTotals{}}
	for _, t := range a.ledger.ByApp() {
		st.Apps = append(st.Apps, CarbonTotals{App: t.App, Site: t.Site, Invocations: t.Invocations, EnergyJ: t.FacilityJoules,
			Grams: t.Grams, RunNowGrams: t.RunNowGrams, SavedGrams: t.SavedGrams()})
	}
	return st
}

func (a *Agent) serveCarbonStatus(w http.ResponseWriter, _ *http.Request) {
	b, err := json.MarshalIndent(a.carbonStatus(), "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}
