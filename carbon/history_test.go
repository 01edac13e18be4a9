package carbon

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

// recorded is a HistoryProvider over a fixed list of readings. With
// ignoreWindow it returns all of them whatever is asked, as a careless
// source might, future included.
type recorded struct {
	rs           []Reading
	ignoreWindow bool
}

func (r *recorded) History(_ context.Context, _ string, from, to time.Time) ([]Reading, error) {
	if r.ignoreWindow {
		return r.rs, nil
	}
	return Clip(r.rs, from, to), nil
}

// daily is a grid dirtiest at 18:00 and cleanest at 06:00 UTC.
func daily(t time.Time) float64 {
	return 300 + 100*math.Sin(2*math.Pi*(float64(t.Hour())-12)/24)
}

func dailyReadings(from time.Time, hours int) []Reading {
	rs := make([]Reading, hours)
	for i := range rs {
		s := from.Add(time.Duration(i) * time.Hour)
		rs[i] = Reading{Start: s, Duration: time.Hour, GCO2PerKWh: daily(s), Kind: Actual, Signal: Average, Source: "fake"}
	}
	return rs
}

func TestFromHistory(t *testing.T) {
	ctx := context.Background()
	now := t0.Add(5*24*time.Hour + 20*time.Minute)
	h := &FromHistory{History: &recorded{rs: dailyReadings(t0, 5*24)}, Now: func() time.Time { return now }}
	from, to := now.Truncate(15*time.Minute), now.Add(24*time.Hour)
	rs, err := h.Forecast(ctx, "r", from, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 25 || !rs[0].Start.Equal(now.Truncate(time.Hour)) || rs[len(rs)-1].End().Before(to) {
		t.Fatalf("forecast covers %d readings from %s", len(rs), rs[0].Start)
	}
	for _, r := range rs {
		if r.Kind != Forecast || r.Signal != Average || r.Source != "history:fake" || r.Duration != time.Hour {
			t.Fatalf("label %+v", r)
		}
		// A perfectly periodic history is forecast as itself.
		if !near(r.GCO2PerKWh, daily(r.Start)) {
			t.Fatalf("at %s: %g, want %g", r.Start, r.GCO2PerKWh, daily(r.Start))
		}
	}

	// What lies after now changes nothing, even from a source that sends it.
	future := append(dailyReadings(t0, 5*24), Reading{Start: t0.Add(5 * 24 * time.Hour), Duration: 48 * time.Hour, GCO2PerKWh: 5000, Kind: Actual, Signal: Average, Source: "fake"})
	h.History = &recorded{rs: future, ignoreWindow: true}
	again, err := h.Forecast(ctx, "r", from, to)
	if err != nil || len(again) != len(rs) {
		t.Fatalf("with the future: %d readings, %v", len(again), err)
	}
	for i := range rs {
		if again[i] != rs[i] {
			t.Fatalf("the future leaked: %+v, want %+v", again[i], rs[i])
		}
	}

	// Less than a day recorded, or nothing: no forecast.
	h.History = &recorded{rs: dailyReadings(now.Add(-20*time.Hour).Truncate(time.Hour), 20)}
	if _, err := h.Forecast(ctx, "r", from, to); !errors.Is(err, ErrNoData) {
		t.Fatalf("short history: %v", err)
	}
	h.History = &recorded{}
	if _, err := h.Forecast(ctx, "r", from, to); !errors.Is(err, ErrNoData) {
		t.Fatalf("no history: %v", err)
	}
}

func TestChainForecastsFromHistory(t *testing.T) {
	ctx := context.Background()
	now := t0.Add(3*24*time.Hour + 10*time.Minute)
	clock := func() time.Time { return now }
	live := &fakeProvider{rs: []Reading{{Start: now.Truncate(time.Hour), Duration: time.Hour, GCO2PerKWh: 10, Kind: Actual, Source: "fake"}}}
	noForecast := &noForecastProvider{live}
	rec := &recorded{rs: dailyReadings(t0, 3*24)}
	ch := &Chain{Live: noForecast, History: &FromHistory{History: rec, Now: clock}, Constant: 400, Now: clock}
	rs, err := ch.Forecast(ctx, "r", now, now.Add(12*time.Hour))
	if err != nil || len(rs) == 0 || rs[0].Source != "history:fake" || rs[0].Kind != Forecast {
		t.Fatalf("forecast = %+v, %v; want one from history", rs, err)
	}
	// Too little history: as before, the constant.
	rec.rs = rec.rs[len(rec.rs)-10:]
	if rs, err := ch.Forecast(ctx, "r", now, now.Add(12*time.Hour)); err != nil || rs[0].Source != "constant" {
		t.Fatalf("short history: %+v, %v", rs, err)
	}
}

// noForecastProvider answers Current and has no forecast.
type noForecastProvider struct{ *fakeProvider }

func (noForecastProvider) Forecast(context.Context, string, time.Time, time.Time) ([]Reading, error) {
	return nil, ErrNoData
}
