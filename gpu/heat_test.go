package gpu

import (
	"encoding/json"
	"testing"
	"time"
)

var gas = Displaced{Kind: DisplacedGasBoiler, Efficiency: 0.9, FuelGPerKWh: UKGasFactor2024}

func TestHeatAccounting(t *testing.T) {
	const kWh = 3.6e6 // joules
	immersion := HeatSite{PUE: 1.05, HeatCapture: 0.9, HeatDemand: 1, Displaced: gas}
	for _, tc := range []struct {
		name             string
		site             HeatSite
		gpuJ             float64
		held             time.Duration
		grid             float64
		gross, avoided   float64
		heatKWh, netRank float64
	}{
		// The worked example: 1 kWh, PUE 1.05, 150 g/kWh, f 0.9, u 1, gas at η 0.9.
		{"worked example", immersion, kWh, time.Hour, 150, 157.5, 182.78, 0.9, 157.5 - 182.78},
		{"no heat demand", with(immersion, func(h *HeatSite) { h.HeatDemand = 0 }), kWh, time.Hour, 150, 157.5, 0, 0, 157.5},
		{"half demand", with(immersion, func(h *HeatSite) { h.HeatDemand = 0.5 }), kWh, time.Hour, 150, 157.5, 91.39, 0.45, 157.5 - 91.39},
		{"heat pump COP 3", with(immersion, func(h *HeatSite) { h.Displaced = Displaced{Kind: DisplacedHeatPump, Efficiency: 3} }), kWh, time.Hour, 150, 157.5, 45, 0.9, 112.5},
		{"resistive", with(immersion, func(h *HeatSite) { h.Displaced = Displaced{Kind: DisplacedResistive} }), kWh, time.Hour, 150, 157.5, 135, 0.9, 22.5},
		{"heat dumped", with(immersion, func(h *HeatSite) { h.Displaced = Displaced{Kind: DisplacedNone} }), kWh, time.Hour, 150, 157.5, 0, 0.9, 157.5},
		// A 0.5 kW sink takes 0.5 kWh in an hour of the 0.9 kWh offered.
		{"sink capacity caps credit", with(immersion, func(h *HeatSite) { h.HeatSinkKW = 0.5 }), kWh, time.Hour, 150, 157.5, 0.5 * 182.78 / 0.9, 0.5, 157.5 - 0.5*182.78/0.9},
		{"IT overhead", with(immersion, func(h *HeatSite) { h.ITOverhead = 1.2 }), kWh, time.Hour, 100, 126, 1.08 * 182.78 / 0.9, 1.08, 126 - 1.08*182.78/0.9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := tc.site.Account(tc.gpuJ, tc.held, tc.grid)
			must(t, err)
			near(t, "gross", e.GrossG, tc.gross, 1e-9)
			near(t, "avoided", e.AvoidedG, tc.avoided, 1e-9)
			near(t, "heat", e.HeatDeliveredKWh, tc.heatKWh, 1e-12)
			near(t, "net for ranking", e.NetForRanking(), tc.netRank, 1e-9)
		})
	}
}

func with(h HeatSite, f func(*HeatSite)) HeatSite {
	f(&h)
	return h
}

// The net of the worked example turns negative below ~174 g/kWh.
func TestHeatBreakEven(t *testing.T) {
	site := HeatSite{PUE: 1.05, HeatCapture: 0.9, HeatDemand: 1, Displaced: gas}
	for _, tc := range []struct {
		grid     float64
		negative bool
	}{{150, true}, {174, true}, {175, false}, {400, false}} {
		e, err := site.Account(3.6e6, time.Hour, tc.grid)
		must(t, err)
		equal(t, "negative net", e.NetForRanking() < 0, tc.negative)
	}
}

// A heat-reuse site on a dirtier grid wins the ranking only while its
// heat is wanted.
func TestRankingFlipsOnlyWithDemand(t *testing.T) {
	plain := HeatSite{PUE: 1.1}
	reuse := HeatSite{PUE: 1.05, HeatCapture: 0.9, Displaced: gas}
	for _, tc := range []struct {
		u         float64
		reuseWins bool
	}{{0, false}, {0.1, false}, {0.2, true}, {1, true}} { // break-even u ≈ 0.14
		reuse.HeatDemand = tc.u
		a, _ := plain.Account(3.6e6, time.Hour, 120)
		b, _ := reuse.Account(3.6e6, time.Hour, 150)
		equal(t, "reuse site wins", b.NetForRanking() < a.NetForRanking(), tc.reuseWins)
	}
}

func TestERFAndERE(t *testing.T) {
	for _, tc := range []struct {
		total, it, reuse float64
		erf, ere         float64
	}{
		{1.25, 0.82, 0.21, 0.168, 1.268292682926829},
		{1.25, 0.82, 0, 0, 1.524390243902439}, // ERE = PUE without reuse
		{0, 0, 0, 0, 0},                       // undefined, reported as 0
	} {
		near(t, "erf", ERF(tc.total, tc.reuse), tc.erf, 1e-12)
		near(t, "ere", ERE(tc.total, tc.it, tc.reuse), tc.ere, 1e-12)
		if tc.total > 0 {
			// ERE = (1 − ERF)·PUE
			near(t, "identity", ERE(tc.total, tc.it, tc.reuse), (1-ERF(tc.total, tc.reuse))*tc.total/tc.it, 1e-12)
		}
	}
	equal(t, "rounded", int(ERE(1.25, 0.82, 0.21)*100+0.5), 127)
}

func TestHeatSiteValidate(t *testing.T) {
	for _, tc := range []struct {
		site HeatSite
		msg  string
	}{
		{HeatSite{PUE: 0.9}, "heat site: pue 0.9 below 1"},
		{HeatSite{PUE: 1, HeatCapture: 1.2}, "heat site: heat_capture 1.2 outside [0, 1]"},
		{HeatSite{PUE: 1, HeatDemand: -1}, "heat site: heat_demand -1 outside [0, 1]"},
		{HeatSite{PUE: 1, ITOverhead: 0.5}, "heat site: it_overhead 0.5 below 1"},
		{HeatSite{PUE: 1, Displaced: Displaced{Kind: "coal"}}, `displaced heating "coal": want none, gas_boiler, heat_pump or resistive`},
		{HeatSite{PUE: 1, Displaced: Displaced{Kind: DisplacedGasBoiler, Efficiency: 1.5}}, "displaced gas boiler: efficiency 1.5 not in (0, 1] or fuel factor 0 negative"},
		{HeatSite{PUE: 1, Displaced: Displaced{Kind: DisplacedHeatPump}}, "displaced heat pump: COP 0 must be positive"},
	} {
		err := tc.site.Validate()
		if err == nil {
			t.Fatalf("%+v: no error", tc.site)
		}
		equal(t, "message", err.Error(), tc.msg)
	}
}

// Gross and avoided stay separate per app and per site.
func TestLedgerKeepsGrossAndAvoidedApart(t *testing.T) {
	site := HeatSite{PUE: 1.05, HeatCapture: 0.9, HeatDemand: 1, Displaced: gas}
	l := NewLedger()
	e1, _ := site.Account(3.6e6, time.Hour, 150)
	e2, _ := site.Account(1.8e6, time.Hour, 150)
	l.Add("a", e1)
	l.Add("b", e2)
	l.Add("a", e2)
	near(t, "a gross", l.App("a").GrossG, 157.5*1.5, 1e-9)
	near(t, "a avoided", l.App("a").AvoidedG, 182.78*1.5, 1e-9)
	near(t, "site gross", l.Site().GrossG, 157.5*2, 1e-9)
	near(t, "site avoided", l.Site().AvoidedG, 182.78*2, 1e-9)
	b, err := json.Marshal(l.Site())
	must(t, err)
	var m map[string]float64
	must(t, json.Unmarshal(b, &m))
	if _, ok := m["net_g"]; ok {
		t.Fatal("emissions encode a net figure")
	}
	equal(t, "fields", len(m), 6)
}
