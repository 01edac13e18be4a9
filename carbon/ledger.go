package carbon

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	gosync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PowerModel turns measured resource use into IT energy.
//
// IT energy (J) = CPU seconds × WattsPerCore + GPU joules. CPU seconds are
// the invocation's CPU time summed over cores, so a function busy on two
// cores for one second counts two; WattsPerCore is the marginal power of a
// busy core (about TDP / cores; 10 W is typical of a server core). GPU
// joules come from the GPU's energy counter (NVML) when it ran on one.
// Idle power is not charged to functions: it is there whether or not they
// run, and a planner cannot move it.
type PowerModel struct {
	// WattsPerCore is the power of one busy core, in watts.
	WattsPerCore float64
}

// EnergyJoules returns the IT energy of an invocation.
func (m PowerModel) EnergyJoules(cpuSeconds, gpuJoules float64) float64 {
	return cpuSeconds*m.WattsPerCore + gpuJoules
}

// Usage is what one invocation used, where and when.
type Usage struct {
	App  string
	Site string
	// Start and Duration place the invocation in time.
	Start    time.Time
	Duration time.Duration
	// CPUSeconds is CPU time summed over cores.
	CPUSeconds float64
	// GPUJoules is the GPU energy measured for it, if any.
	GPUJoules float64
}

// Record is one accounted invocation.
type Record struct {
	Usage
	// ITJoules is the IT energy from the power model; FacilityJoules adds
	// the site's PUE.
	ITJoules, FacilityJoules float64
	// Intensity is what the grid was at the time and place it ran.
	Intensity Reading
	// Grams is FacilityJoules × Intensity: the gross emissions.
	Grams float64
	// RunNowGrams is what it would have emitted had it run on arrival at
	// the local site (the counterfactual); equal to Grams for work that was
	// not deferred.
	RunNowGrams float64
	// HeatJoules is the heat delivered to a heat sink outside the site;
	// AvoidedGrams the emissions that heat displaced. Never netted.
	HeatJoules, AvoidedGrams float64
}

// Totals are sums over records.
type Totals struct {
	Invocations    int
	ITJoules       float64
	FacilityJoules float64
	HeatJoules     float64
	Grams          float64
	RunNowGrams    float64
	AvoidedGrams   float64
}

// SavedGrams returns RunNowGrams − Grams: what shifting saved (negative if
// it cost).
func (t Totals) SavedGrams() float64 { return t.RunNowGrams - t.Grams }

// ERF returns the energy reuse factor, reused / total facility energy, per
// ISO/IEC 30134-6 (0 when nothing ran).
func (t Totals) ERF() float64 {
	if t.FacilityJoules == 0 {
		return 0
	}
	return t.HeatJoules / t.FacilityJoules
}

// ERE returns the energy reuse effectiveness, (total − reused) / IT, per
// The Green Grid WP#29; equal to (1 − ERF) × PUE (0 when nothing ran).
func (t Totals) ERE() float64 {
	if t.ITJoules == 0 {
		return 0
	}
	return (t.FacilityJoules - t.HeatJoules) / t.ITJoules
}

func (t *Totals) add(r Record) {
	t.Invocations++
	t.ITJoules += r.ITJoules
	t.FacilityJoules += r.FacilityJoules
	t.HeatJoules += r.HeatJoules
	t.Grams += r.Grams
	t.RunNowGrams += r.RunNowGrams
	t.AvoidedGrams += r.AvoidedGrams
}

// Ledger accounts invocations per app and per site. It is safe for
// concurrent use and is a prometheus.Collector.
type Ledger struct {
	model PowerModel
	sites map[string]Site
	mu    gosync.Mutex
	apps  map[appSite]*Totals

	energy, emissions, avoided, heat, invocations *prometheus.Desc
}

type appSite struct{ app, site string }

var _ prometheus.Collector = (*Ledger)(nil)

// NewLedger returns an empty ledger using model and the sites' PUE and heat
// reuse; invocations at sites not listed use PUE 1 and no heat reuse.
func NewLedger(model PowerModel, sites []Site) (*Ledger, error) {
	if model.WattsPerCore < 0 || math.IsNaN(model.WattsPerCore) {
		return nil, fmt.Errorf("ledger: watts per core %g must not be negative: %w", model.WattsPerCore, ErrInvalid)
	}
	l := &Ledger{model: model, sites: map[string]Site{}, apps: map[appSite]*Totals{}}
	for _, s := range sites {
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		l.sites[s.Name] = s
	}
	labels := []string{"app", "site"}
	l.energy = prometheus.NewDesc("tern_carbon_energy_joules_total", "IT energy of invocations (power model), by app and site.", labels, nil)
	l.emissions = prometheus.NewDesc("tern_carbon_emissions_grams_total", "Gross CO2 emitted by invocations (facility energy × grid intensity), by app, site and scenario: actual, or run_now for the counterfactual of running on arrival.", append(labels, "scenario"), nil)
	l.avoided = prometheus.NewDesc("tern_carbon_avoided_grams_total", "CO2 avoided by heat reused outside the site; reported beside, never subtracted from, emissions.", labels, nil)
	l.heat = prometheus.NewDesc("tern_carbon_heat_reused_joules_total", "Heat delivered to a sink outside the site.", labels, nil)
	l.invocations = prometheus.NewDesc("tern_carbon_invocations_total", "Invocations accounted.", labels, nil)
	return l, nil
}

// Record accounts one invocation that ran at intensity actual, where
// runNow is the intensity it would have met had it run on arrival at the
// local site (pass actual again for work that was not deferred). It
// returns the record.
func (l *Ledger) Record(u Usage, actual, runNow Reading) Record {
	s, ok := l.sites[u.Site]
	if !ok {
		s = Site{Name: u.Site}
	}
	it := l.model.EnergyJoules(u.CPUSeconds, u.GPUJoules)
	r := Record{Usage: u, ITJoules: it, FacilityJoules: it * s.pue(), Intensity: actual}
	r.Grams = joulesToKWh(r.FacilityJoules) * actual.GCO2PerKWh
	r.RunNowGrams = joulesToKWh(r.FacilityJoules) * runNow.GCO2PerKWh
	heatKWh, avoided := s.Heat.Avoided(joulesToKWh(it), u.Duration, actual.GCO2PerKWh)
	r.HeatJoules, r.AvoidedGrams = heatKWh*3.6e6, avoided
	l.mu.Lock()
	defer l.mu.Unlock()
	k := appSite{u.App, u.Site}
	t := l.apps[k]
	if t == nil {
		t = &Totals{}
		l.apps[k] = t
	}
	t.add(r)
	return r
}

// AppTotal is the totals of one app at one site.
type AppTotal struct {
	App, Site string
	Totals
}

// ByApp returns the totals per (app, site), sorted.
func (l *Ledger) ByApp() []AppTotal {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]AppTotal, 0, len(l.apps))
	for k, t := range l.apps {
		out = append(out, AppTotal{App: k.app, Site: k.site, Totals: *t})
	}
	slices.SortFunc(out, func(a, b AppTotal) int { return cmp.Or(cmp.Compare(a.App, b.App), cmp.Compare(a.Site, b.Site)) })
	return out
}

// BySite returns the totals per site over all apps, sorted by site; ERF and
// ERE come from these.
func (l *Ledger) BySite() map[string]Totals {
	out := map[string]Totals{}
	for _, a := range l.ByApp() {
		t := out[a.Site]
		t.Invocations += a.Invocations
		t.ITJoules += a.ITJoules
		t.FacilityJoules += a.FacilityJoules
		t.HeatJoules += a.HeatJoules
		t.Grams += a.Grams
		t.RunNowGrams += a.RunNowGrams
		t.AvoidedGrams += a.AvoidedGrams
		out[a.Site] = t
	}
	return out
}

// Describe implements prometheus.Collector.
func (l *Ledger) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{l.energy, l.emissions, l.avoided, l.heat, l.invocations} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (l *Ledger) Collect(ch chan<- prometheus.Metric) {
	for _, a := range l.ByApp() {
		ch <- prometheus.MustNewConstMetric(l.energy, prometheus.CounterValue, a.ITJoules, a.App, a.Site)
		ch <- prometheus.MustNewConstMetric(l.emissions, prometheus.CounterValue, a.Grams, a.App, a.Site, "actual")
		ch <- prometheus.MustNewConstMetric(l.emissions, prometheus.CounterValue, a.RunNowGrams, a.App, a.Site, "run_now")
		ch <- prometheus.MustNewConstMetric(l.avoided, prometheus.CounterValue, a.AvoidedGrams, a.App, a.Site)
		ch <- prometheus.MustNewConstMetric(l.heat, prometheus.CounterValue, a.HeatJoules, a.App, a.Site)
		ch <- prometheus.MustNewConstMetric(l.invocations, prometheus.CounterValue, float64(a.Invocations), a.App, a.Site)
	}
}

func joulesToKWh(j float64) float64 { return j / 3.6e6 }
