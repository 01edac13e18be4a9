package carbon

import (
	"math"
	"testing"
	"time"
)

// constForecast forecasts v for every slot.
type constForecast float64

func (c constForecast) Name() string { return "const" }

func (c constForecast) Forecast(hist *Curve, at time.Time, horizon time.Duration) (*Curve, error) {
	step := hist.Step()
	first := hist.SlotAt(at)
	vals := make([]float64, int((horizon+step-1)/step))
	for i := range vals {
		vals[i] = float64(c)
	}
	return NewCurve(hist.Origin().Add(time.Duration(first)*step), step, vals)
}

// flat returns hourly readings of v over [from, from+hours).
func flat(from time.Time, hours int, v float64) []Reading {
	rs := make([]Reading, hours)
	for i := range rs {
		rs[i] = Reading{Start: from.Add(time.Duration(i) * time.Hour), Duration: time.Hour, GCO2PerKWh: v, Kind: Forecast}
	}
	return rs
}

// TestArchive replays two issues: a decision uses the latest issue made by
// its time and never a later one, and the fallback fills what the issue
// does not cover.
func TestArchive(t *testing.T) {
	t0 := time.Date(2020, 6, 1, 0, 0, 0, 0, time.UTC)
	past := make([]float64, 24)
	for i := range past {
		past[i] = 300
	}
	actual, err := NewCurve(t0.Add(-24*time.Hour), time.Hour, append(past, make([]float64, 48)...))
	if err != nil {
		t.Fatal(err)
	}
	a := Archive{
		Issues: []Issue{
			{Issued: t0, Readings: flat(t0, 4, 100)},
			{Issued: t0.Add(2 * time.Hour), Readings: flat(t0.Add(2*time.Hour), 4, 50)},
		},
		Source:   "test",
		Fallback: constForecast(7),
	}
	cases := []struct {
		at   time.Time
		want []float64
	}{
		{t0.Add(-time.Minute), []float64{7, 7, 7, 7}},                    // nothing issued yet
		{t0.Add(time.Hour), []float64{100, 100, 100, 7}},                 // first issue, then its horizon ends
		{t0.Add(2*time.Hour - time.Second), []float64{100, 100, 100, 7}}, // the slot in progress on: the second is not issued yet
		{t0.Add(2 * time.Hour), []float64{50, 50, 50, 50}},               // the second
		{t0.Add(5 * time.Hour), []float64{50, 7, 7, 7}},                  // the second runs out
	}
	for _, tc := range cases {
		fc, err := a.Forecast(actual.Until(tc.at), tc.at, 4*time.Hour)
		if err != nil {
			t.Fatalf("at %s: %v", tc.at, err)
		}
		got := fc.Values()
		if len(got) != len(tc.want) {
			t.Fatalf("at %s: %v, want %v", tc.at, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("at %s: %v, want %v", tc.at, got, tc.want)
			}
		}
	}
	a.Fallback = nil
	fc, err := a.Forecast(actual.Until(t0.Add(time.Hour)), t0.Add(time.Hour), 4*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if v := fc.Values(); v[0] != 100 || !math.IsNaN(v[3]) {
		t.Fatalf("without a fallback: %v, want the issue's values, then unknown", v)
	}
	if _, err := a.Forecast(actual, t0, time.Hour); err == nil {
		t.Fatal("a history past the decision time was accepted")
	}
	if a.Name() != "archive:test" {
		t.Fatalf("Name() = %q", a.Name())
	}
}

// TestArchiveKeepsEarlierIssues: a newer, shorter issue replaces the
// slots it covers and leaves the rest of an earlier, longer one.
func TestArchiveKeepsEarlierIssues(t *testing.T) {
	t0 := time.Date(2020, 6, 1, 0, 0, 0, 0, time.UTC)
	actual, err := NewCurve(t0.Add(-24*time.Hour), time.Hour, make([]float64, 48))
	if err != nil {
		t.Fatal(err)
	}
	a := Archive{Issues: []Issue{
		{Issued: t0, Readings: flat(t0, 8, 100)},
		{Issued: t0.Add(2 * time.Hour), Readings: flat(t0.Add(2*time.Hour), 2, 50)},
	}, Fallback: constForecast(7)}
	at := t0.Add(2 * time.Hour)
	fc, err := a.Forecast(actual.Until(at), at, 8*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{50, 50, 100, 100, 100, 100, 7, 7}
	for i, v := range fc.Values() {
		if v != want[i] {
			t.Fatalf("at %s: %v, want %v", at, fc.Values(), want)
		}
	}
}
