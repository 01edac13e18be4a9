package carbon

import (
	"context"
	"math"
	"testing"
	"time"
)

// TestCombinedCorrectsBias replays a provider that forecasts the daily
// shape exactly but 50 g too high, issued each midnight for that day,
// next to an own forecaster that is 100 g too low: after a few days the
// combination removes the provider's bias within its issue and carries
// its correction past the issue's end, instead of jumping to the own
// level there.
func TestCombinedCorrectsBias(t *testing.T) {
	t0 := time.Date(2021, 7, 1, 0, 0, 0, 0, time.UTC)
	const days = 6
	shape := func(h int) float64 { return 400 + 100*math.Sin(float64(h%24)*2*math.Pi/24) }
	vals := make([]float64, 24*days)
	for h := range vals {
		vals[h] = shape(h)
	}
	actual, err := NewCurve(t0, time.Hour, vals)
	if err != nil {
		t.Fatal(err)
	}
	var issues []Issue
	for d := range days {
		day := t0.Add(time.Duration(d) * 24 * time.Hour)
		rs := make([]Reading, 24)
		for h := range rs {
			rs[h] = Reading{Start: day.Add(time.Duration(h) * time.Hour), Duration: time.Hour, GCO2PerKWh: shape(h) + 50, Kind: Forecast}
		}
		issues = append(issues, Issue{Issued: day, Readings: rs})
	}
	c := &Combined{Provider: Archive{Issues: issues, Source: "biased"}, Own: lowForecast{actual, 100}}
	var fc *Curve
	at := t0
	for ; at.Before(t0.Add((days - 1) * 24 * time.Hour).Add(20 * time.Hour)); at = at.Add(time.Hour) {
		if fc, err = c.Forecast(actual.Until(at), at, 12*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// at is 20:00 of the last day: 4 hours of the issue, then 8 past it.
	at = at.Add(-time.Hour)
	for i, v := range fc.Values() {
		h := int(at.Sub(t0)/time.Hour) + i
		want := shape(h)
		if i >= 5 {
			// Past the issue: the own forecast plus the carried offset.
			if math.Abs(v-want) > 50 {
				t.Fatalf("slot %d past the issue: %.1f, want nearer %.1f than the own forecast (%.1f)\n%v", i, v, want, want-100, fc.Values())
			}
			continue
		}
		if math.Abs(v-want) > 5 {
			t.Fatalf("slot %d in the issue: %.1f, want about %.1f (bias removed)\n%v", i, v, want, fc.Values())
		}
	}
	if _, err := c.Forecast(actual, t0, time.Hour); err == nil {
		t.Fatal("a history past the decision time was accepted")
	}
}

// lowForecast forecasts the actual future less off (it reads the whole
// curve, which only a test may do).
type lowForecast struct {
	actual *Curve
	off    float64
}

func (f lowForecast) Name() string { return "low" }

func (f lowForecast) Forecast(hist *Curve, at time.Time, horizon time.Duration) (*Curve, error) {
	step := hist.Step()
	start := hist.Origin().Add(time.Duration(hist.SlotAt(at)) * step)
	vals := make([]float64, int((horizon+step-1)/step))
	for i := range vals {
		t := start.Add(time.Duration(i) * step)
		v, ok := f.actual.Mean(t, t.Add(step))
		if !ok {
			v = math.NaN()
		}
		vals[i] = v - f.off
	}
	return NewCurve(start, step, vals)
}

// TestCombining serves the live provider's forecast combined with one from
// the recorded history, the slot in progress from the measured value, and
// the live forecast as it is while the history is too short.
func TestCombining(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2021, 7, 1, 0, 0, 0, 0, time.UTC)
	now := t0.Add(10*24*time.Hour + 30*time.Minute)
	hour := now.Truncate(time.Hour)
	live := &fakeProvider{rs: []Reading{{Start: hour, Duration: time.Hour, GCO2PerKWh: 999, Kind: Actual, Signal: Average, Source: "fake"}}}
	for _, r := range dailyReadings(hour.Add(time.Hour), 24) {
		r.GCO2PerKWh += 50
		r.Kind = Forecast
		live.rs = append(live.rs, r)
	}
	hist := &FromHistory{History: &recorded{rs: dailyReadings(t0, 240)}, Now: func() time.Time { return now }}
	c := &Combining{Live: live, History: hist}
	rs, err := c.Forecast(ctx, "r", now, now.Add(12*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) < 12 || rs[0].Source != "combined:fake" || rs[0].GCO2PerKWh != 999 || rs[0].Kind != Forecast {
		t.Fatalf("combined: %+v, want 12 slots labelled combined:fake, the first the measured 999", rs)
	}
	hist.MinHistory = 1000 * time.Hour
	rs, err = c.Forecast(ctx, "r", now, now.Add(12*time.Hour))
	if err != nil || rs[0].Source != "fake" {
		t.Fatalf("with too little history: %+v, %v; want the live forecast", rs, err)
	}
}
