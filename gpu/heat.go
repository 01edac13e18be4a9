package gpu

import (
	"fmt"
	"sync"
	"time"
)

// Kinds of heating that a site's reused heat displaces.
const (
	DisplacedNone      = "none"       // heat is dumped: no credit
	DisplacedGasBoiler = "gas_boiler" // EF = fuel factor / boiler efficiency
	DisplacedHeatPump  = "heat_pump"  // EF = grid intensity / COP
	DisplacedResistive = "resistive"  // EF = grid intensity
)

// UKGasFactor2024 is the UK government's 2024 greenhouse-gas conversion
// factor for natural gas, gross calorific value: 182.78 gCO2e per kWh of
// fuel.
const UKGasFactor2024 = 182.78

// Displaced is what a site's reused heat replaces.
type Displaced struct {
	Kind string `json:"kind"` // one of the Displaced* kinds
	// Efficiency is the boiler's efficiency η (0..1] for gas_boiler, the
	// coefficient of performance for heat_pump; unused otherwise.
	Efficiency float64 `json:"efficiency,omitempty"`
	// FuelGPerKWh is the fuel's emission factor for gas_boiler, gCO2e per
	// kWh of fuel, e.g. [UKGasFactor2024].
	FuelGPerKWh float64 `json:"fuel_g_per_kwh,omitempty"`
}

// HeatEF returns the emissions avoided per kWh of heat delivered, in
// gCO2e/kWh, given the grid's intensity now (for electric heating).
func (d Displaced) HeatEF(gridGPerKWh float64) (float64, error) {
	switch d.Kind {
	case DisplacedNone, "":
		return 0, nil
	case DisplacedGasBoiler:
		if d.Efficiency <= 0 || d.Efficiency > 1 || d.FuelGPerKWh < 0 {
			return 0, fmt.Errorf("displaced gas boiler: efficiency %g not in (0, 1] or fuel factor %g negative", d.Efficiency, d.FuelGPerKWh)
		}
		return d.FuelGPerKWh / d.Efficiency, nil
	case DisplacedHeatPump:
		if d.Efficiency <= 0 {
			return 0, fmt.Errorf("displaced heat pump: COP %g must be positive", d.Efficiency)
		}
		return gridGPerKWh / d.Efficiency, nil
	case DisplacedResistive:
		return gridGPerKWh, nil
	default:
		return 0, fmt.Errorf("displaced heating %q: want none, gas_boiler, heat_pump or resistive", d.Kind)
	}
}

// HeatSite is a site's facility and heat-reuse parameters.
type HeatSite struct {
	PUE float64 `json:"pue"` // power usage effectiveness, ≥ 1
	// ITOverhead is the factor from GPU energy to IT energy (the rest of
	// the server), ≥ 1; 0 means 1.
	ITOverhead float64 `json:"it_overhead,omitempty"`
	// HeatCapture is the fraction f of IT energy captured as usable heat.
	HeatCapture float64 `json:"heat_capture"`
	// HeatSinkKW is the most heat the sink can take, in kW; heat beyond it
	// earns no credit. 0 with HeatCapture > 0 means no cap is declared.
	HeatSinkKW float64 `json:"heat_sink_kw"`
	// HeatDemand u in [0, 1] is whether the sink wants heat now (0 when the
	// pool is at temperature or the heat is dumped).
	HeatDemand float64   `json:"heat_demand"`
	Displaced  Displaced `json:"displaced"`
}

// Validate reports a parameter out of range, naming it.
func (h HeatSite) Validate() error {
	switch {
	case h.PUE < 1:
		return fmt.Errorf("heat site: pue %g below 1", h.PUE)
	case h.ITOverhead != 0 && h.ITOverhead < 1:
		return fmt.Errorf("heat site: it_overhead %g below 1", h.ITOverhead)
	case h.HeatCapture < 0 || h.HeatCapture > 1:
		return fmt.Errorf("heat site: heat_capture %g outside [0, 1]", h.HeatCapture)
	case h.HeatDemand < 0 || h.HeatDemand > 1:
		return fmt.Errorf("heat site: heat_demand %g outside [0, 1]", h.HeatDemand)
	case h.HeatSinkKW < 0:
		return fmt.Errorf("heat site: heat_sink_kw %g negative", h.HeatSinkKW)
	}
	_, err := h.Displaced.HeatEF(0)
	return err
}

// Emissions are the emissions of some GPU work. Gross and avoided are
// kept apart and never netted in reports: avoided emissions do not reduce
// an SCI score. Only ranking sites for new work may compare them, with
// [Emissions.NetForRanking].
type Emissions struct {
	GPUKWh           float64 `json:"gpu_kwh"`            // measured device energy E
	ITKWh            float64 `json:"it_kwh"`             // E·o
	FacilityKWh      float64 `json:"facility_kwh"`       // E·o·PUE
	HeatDeliveredKWh float64 `json:"heat_delivered_kwh"` // E·o·f·u, capped by the sink
	GrossG           float64 `json:"gross_g"`            // FacilityKWh × grid intensity
	AvoidedG         float64 `json:"avoided_g"`          // HeatDeliveredKWh × heat EF
}

// NetForRanking is gross minus avoided, which may be negative. It exists
// to rank sites for work that exists anyway; it is never reported.
func (e Emissions) NetForRanking() float64 { return e.GrossG - e.AvoidedG }

// Add returns the sum of e and o.
func (e Emissions) Add(o Emissions) Emissions {
	return Emissions{
		GPUKWh: e.GPUKWh + o.GPUKWh, ITKWh: e.ITKWh + o.ITKWh, FacilityKWh: e.FacilityKWh + o.FacilityKWh,
		HeatDeliveredKWh: e.HeatDeliveredKWh + o.HeatDeliveredKWh, GrossG: e.GrossG + o.GrossG, AvoidedG: e.AvoidedG + o.AvoidedG,
	}
}

// Account computes the emissions of gpuJ joules of device energy spent
// over held at site h with the grid at gridGPerKWh:
//
//	gross   = E·o·PUE·I
//	heat    = min(E·o·f·u, HeatSinkKW·held)
//	avoided = heat·EF_heat
func (h HeatSite) Account(gpuJ float64, held time.Duration, gridGPerKWh float64) (Emissions, error) {
	if err := h.Validate(); err != nil {
		return Emissions{}, err
	}
	ef, err := h.Displaced.HeatEF(gridGPerKWh)
	if err != nil {
		return Emissions{}, err
	}
	o := h.ITOverhead
	if o == 0 {
		o = 1
	}
	var e Emissions
	e.GPUKWh = gpuJ / 3.6e6
	e.ITKWh = e.GPUKWh * o
	e.FacilityKWh = e.ITKWh * h.PUE
	e.GrossG = e.FacilityKWh * gridGPerKWh
	heat := e.ITKWh * h.HeatCapture * h.HeatDemand
	if h.HeatSinkKW > 0 {
		heat = min(heat, h.HeatSinkKW*held.Hours())
	}
	e.HeatDeliveredKWh = heat
	e.AvoidedG = heat * ef
	return e, nil
}

// ERF is the energy reuse factor (ISO/IEC 30134-6): energy reused outside
// the facility over the facility's total energy. It is 0 for no energy.
func ERF(totalKWh, reuseKWh float64) float64 {
	if totalKWh <= 0 {
		return 0
	}
	return reuseKWh / totalKWh
}

// ERE is The Green Grid's energy reuse effectiveness: (total − reuse) /
// IT, which equals (1 − ERF)·PUE. It is 0, meaning undefined, for no IT
// energy, so that an offer from an idle site still encodes as JSON.
func ERE(totalKWh, itKWh, reuseKWh float64) float64 {
	if itKWh <= 0 {
		return 0
	}
	return (totalKWh - reuseKWh) / itKWh
}

// Ledger sums emissions per app and for the site. Safe for concurrent use.
type Ledger struct {
	mu   sync.Mutex
	apps map[string]Emissions
	site Emissions
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{apps: map[string]Emissions{}} }

// Add records e against app and the site.
func (l *Ledger) Add(app string, e Emissions) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.apps[app] = l.apps[app].Add(e)
	l.site = l.site.Add(e)
}

// App returns app's totals (zero for an app never seen).
func (l *Ledger) App(app string) Emissions {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.apps[app]
}

// Site returns the site's totals over every app.
func (l *Ledger) Site() Emissions {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.site
}

// SiteOffer is what a GPU site advertises in its fleet heartbeat, for the
// carbon router to choose where GPU work runs.
type SiteOffer struct {
	Site           string             `json:"site"`
	Time           time.Time          `json:"time"`
	Models         []string           `json:"models"`
	Slots          int                `json:"slots"`
	FreeSlots      int                `json:"free_slots"`
	Queued         int                `json:"queued"`
	QueueWaitP95   time.Duration      `json:"queue_wait_p95_ns"`
	EnergyPerCallJ map[string]float64 `json:"energy_per_call_j"` // moving average per model
	HeatSite
	// ERF and ERE over the energy metered since start (attributed plus
	// idle), with the declared PUE and the heat credited so far.
	ERF float64 `json:"erf"`
	ERE float64 `json:"ere"`
}
