package agent

import (
	"context"
	"crypto/ed25519"
	"math"
	"testing"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// currentOnlyGrid is a live provider that knows the intensity now and has
// no forecast, like Electricity Maps' free tier: the grid is dirtiest at
// 18:00 and cleanest at 06:00 UTC.
type currentOnlyGrid struct{ now func() time.Time }

func gridAt(t time.Time) float64 {
	return 300 + 100*math.Sin(2*math.Pi*(float64(t.UTC().Hour())-12)/24)
}

func (g currentOnlyGrid) Current(context.Context, string) (carbon.Reading, error) {
	h := g.now().Truncate(time.Hour)
	return carbon.Reading{Start: h, Duration: time.Hour, GCO2PerKWh: gridAt(h), Kind: carbon.Actual, Signal: carbon.Average, Source: "fakegrid"}, nil
}

func (currentOnlyGrid) Forecast(context.Context, string, time.Time, time.Time) ([]carbon.Reading, error) {
	return nil, carbon.ErrNoData
}

// TestForecastFromHistory runs an agent whose live provider has no
// forecast through three simulated days: at first it falls back to the
// constant as before; then its forecast comes from the intensity it
// recorded, with the grid's daily shape; after a restart it still does.
func TestForecastFromHistory(t *testing.T) {
	key := mustKey(t)
	data := t.TempDir()
	h0 := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	clk := &testClock{t: h0.Add(30 * time.Minute)}
	start := func() (*testAgent, chan time.Time) {
		cfg := testConfig(t, data)
		cfg.Site = "pop1"
		cfg.Carbon.Region = "eu"
		cfg.Carbon.Constant = 300
		ticks := make(chan time.Time)
		ta := startAgentWith(t, cfg, Options{Now: clk.Now, CarbonTicks: ticks, CarbonProvider: currentOnlyGrid{clk.Now},
			ExtraTrusted: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}})
		ticks <- time.Time{} // taken after the first step: the forecast is read
		return ta, ticks
	}
	ta, ticks := start()
	if st := carbonStatusOf(t, ta); len(st.Forecast) == 0 || st.Forecast[0].Source != "constant" {
		t.Fatalf("without history: %+v", st.Forecast)
	}

	// Half past every hour for three days: the scheduler re-reads the
	// grid, and the agent records what it says about the hour so far.
	// The second tick returns once the first one's step is done.
	for h := 1; h < 3*24; h++ {
		clk.Set(h0.Add(time.Duration(h)*time.Hour + 30*time.Minute))
		ticks <- time.Time{}
		ticks <- time.Time{}
		if h == 12 {
			if st := carbonStatusOf(t, ta); st.Forecast[0].Source != "constant" {
				t.Fatalf("with half a day of history: %+v", st.Forecast[0])
			}
		}
	}
	check := func(when string) {
		t.Helper()
		st := carbonStatusOf(t, ta)
		now := clk.Now()
		if len(st.Forecast) < 24 {
			t.Fatalf("%s: %d forecast points", when, len(st.Forecast))
		}
		var lo, hi time.Time
		minV, maxV := math.Inf(1), math.Inf(-1)
		for _, p := range st.Forecast {
			if p.Source != "history:fakegrid" || p.Kind != carbon.Forecast.String() || p.Signal != carbon.Average.String() {
				t.Fatalf("%s: point %+v", when, p)
			}
			if p.Start.Before(now.Truncate(time.Hour)) {
				t.Fatalf("%s: point %+v before now %s", when, p, now)
			}
			if math.Abs(p.GCO2PerKWh-gridAt(p.Start)) > 1e-6 {
				t.Fatalf("%s: at %s %g, want the daily shape's %g", when, p.Start, p.GCO2PerKWh, gridAt(p.Start))
			}
			if p.Start.Sub(now) < 24*time.Hour {
				if p.GCO2PerKWh < minV {
					minV, lo = p.GCO2PerKWh, p.Start
				}
				if p.GCO2PerKWh > maxV {
					maxV, hi = p.GCO2PerKWh, p.Start
				}
			}
		}
		if lo.Hour() != 6 || hi.Hour() != 18 {
			t.Fatalf("%s: cleanest at %s, dirtiest at %s; want 06:00 and 18:00", when, lo, hi)
		}
	}
	check("after three days")

	// The history is in the store: a restarted agent forecasts from it
	// once.
	ta.stop()
	ta, _ = start()
	check("after a restart")
}
