package carbon

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// TestSeasonalRegressionShapes checks the forecast on curves whose answer
// is known: a repeated day continues unchanged (no deviation, gap or not,
// hourly or 15-minute), and a ramp, whose deviation from the profile is
// the same at every slot, continues exactly at every horizon, where
// SeasonalBlend's clamped weight holds it a period behind.
func TestSeasonalRegressionShapes(t *testing.T) {
	const days = 35
	day := func(i, perDay int) float64 { return 300 + 100*math.Sin(float64(i%perDay)/float64(perDay)*2*math.Pi) }
	daily := make([]float64, days*24)
	ramp := make([]float64, days*24)
	for i := range daily {
		daily[i] = day(i, 24)
		ramp[i] = float64(i)
	}
	gap := append([]float64(nil), daily...)
	for i := 20*24 + 3; i < 21*24+10; i++ {
		gap[i] = math.NaN()
	}
	quarter := make([]float64, days*96)
	for i := range quarter {
		quarter[i] = day(i, 96)
	}
	at := t0.Add(days * 24 * time.Hour)
	tests := []struct {
		name string
		step time.Duration
		vals []float64
		f    SeasonalRegression
		want func(k int) float64 // slot at+k steps
	}{
		{"repeated day", time.Hour, daily, SeasonalRegression{}, func(k int) float64 { return daily[k%24] }},
		{"repeated day with a gap", time.Hour, gap, SeasonalRegression{Days: 7, Fit: 10 * 24 * time.Hour}, func(k int) float64 { return daily[k%24] }},
		{"repeated day, 15-minute slots", 15 * time.Minute, quarter, SeasonalRegression{}, func(k int) float64 { return quarter[k%96] }},
		{"ramp", time.Hour, ramp, SeasonalRegression{Days: 3, DayWeight: 0.5, Fit: 10 * 24 * time.Hour}, func(k int) float64 { return float64(days*24 + k) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hist, err := NewCurve(t0, tt.step, tt.vals)
			if err != nil {
				t.Fatal(err)
			}
			fc, err := tt.f.Forecast(hist.Until(at), at, 36*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			n := int(36 * time.Hour / tt.step)
			if fc.Len() != n || !fc.Origin().Equal(at) || fc.Step() != tt.step {
				t.Fatalf("forecast has %d slots of %v from %s, want %d of %v from %s", fc.Len(), fc.Step(), fc.Origin(), n, tt.step, at)
			}
			for k := range n {
				if got, want := fc.Value(k), tt.want(k); math.Abs(got-want) > 1e-3 {
					t.Errorf("slot +%d = %v, want %v", k, got, want)
				}
			}
		})
	}
}

// TestSeasonalRegressionWeekend: on a grid 100 g cleaner every Saturday
// and Sunday, the forecast made on a Friday morning expects the drop on
// Saturday, which a profile of mostly weekdays (SeasonalBlend's) misses.
func TestSeasonalRegressionWeekend(t *testing.T) {
	const days = 35
	vals := make([]float64, days*24)
	for i := range vals {
		vals[i] = 300 + 50*math.Sin(float64(i%24)/24*2*math.Pi)
		if wd := t0.Add(time.Duration(i) * time.Hour).Weekday(); wd == time.Saturday || wd == time.Sunday {
			vals[i] -= 100
		}
	}
	// t0 is a Monday; day 32 is a Friday. Forecast from 06:00 for 36 hours.
	at := t0.Add((32*24 + 6) * time.Hour)
	if wd := at.Weekday(); wd != time.Friday {
		t.Fatalf("decision on %v, want a Friday", wd)
	}
	hist := hourlyCurve(t, vals...).Until(at)
	drop := func(f Forecaster) float64 {
		fc, err := f.Forecast(hist, at, 36*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// Friday 12:00 against Saturday 12:00, the same point of the day.
		return fc.Value(6) - fc.Value(30)
	}
	if got := drop(SeasonalRegression{}); math.Abs(got-100) > 15 {
		t.Errorf("regression: Saturday noon forecast %.1f below Friday's, want about 100", got)
	}
	if got := drop(SeasonalBlend{}); got > 50 {
		t.Errorf("blend: Saturday noon forecast %.1f below Friday's; the test no longer shows the weekend feature's effect", got)
	}
}

// TestSeasonalRegressionFallback: with too little history to fit, the
// forecast is SeasonalBlend's.
func TestSeasonalRegressionFallback(t *testing.T) {
	vals := make([]float64, 30)
	for i := range vals {
		vals[i] = float64(100 + 7*i%23)
	}
	at := t0.Add(30 * time.Hour)
	hist := hourlyCurve(t, vals...).Until(at)
	got, err := SeasonalRegression{}.Forecast(hist, at, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want, err := SeasonalBlend{}.Forecast(hist, at, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for k := range want.Len() {
		if a, b := got.Value(k), want.Value(k); a != b && !(math.IsNaN(a) && math.IsNaN(b)) {
			t.Errorf("slot +%dh = %v, want the blend's %v", k, a, b)
		}
	}
}

func TestSeasonalRegressionErrors(t *testing.T) {
	hist := hourlyCurve(t, make([]float64, 48)...)
	at := t0.Add(48 * time.Hour)
	tests := []struct {
		name string
		f    SeasonalRegression
		hist *Curve
		want string
	}{
		{"period not a multiple of the step", SeasonalRegression{Period: 90 * time.Minute}, hist, "seasonal regression forecast: period 1h30m0s is not a multiple of the 1h0m0s step"},
		{"day weight above 1", SeasonalRegression{DayWeight: 1.5}, hist, "seasonal regression forecast: day weight 1.5: want a value in (0, 1]"},
		{"negative ridge", SeasonalRegression{Ridge: -0.1}, hist, "seasonal regression forecast: ridge -0.1: want a value of 0 or more"},
		{"history past the decision time", SeasonalRegression{}, hourlyCurve(t, make([]float64, 50)...), "history runs to 2020-06-03T02:00:00Z, past the decision time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.f.Forecast(tt.hist, at, time.Hour)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tt.want)
			}
		})
	}
	// No history at all is not an error: every slot is unknown.
	fc, err := SeasonalRegression{}.Forecast(hourlyCurve(t), at, 2*time.Hour)
	if err != nil || fc.Len() != 2 || !math.IsNaN(fc.Value(0)) {
		t.Fatalf("empty history: %v, %v", fc, err)
	}
}
