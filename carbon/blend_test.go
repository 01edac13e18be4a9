package carbon

import (
	"encoding/csv"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSeasonalBlendShapes checks the forecast on curves whose answer is
// known: a repeated day continues unchanged (no deviation, gap or not), and
// a ramp, whose deviation from the profile persists exactly, is
// extrapolated for one period and then held a period behind, since a
// weight above 1 is clamped. The ramp's fit starts once every profile has
// all its days, so that its deviation is exactly the same everywhere.
func TestSeasonalBlendShapes(t *testing.T) {
	const days = 20
	daily := make([]float64, days*24)
	ramp := make([]float64, days*24)
	for i := range daily {
		daily[i] = 300 + 100*math.Sin(float64(i%24)/24*2*math.Pi)
		ramp[i] = float64(i)
	}
	gap := append([]float64(nil), daily...)
	for i := 5*24 + 3; i < 6*24+10; i++ {
		gap[i] = math.NaN()
	}
	at := t0.Add(days * 24 * time.Hour)
	tests := []struct {
		name string
		vals []float64
		f    SeasonalBlend
		want func(k int) float64 // slot at+k hours
	}{
		{"repeated day", daily, SeasonalBlend{}, func(k int) float64 { return daily[k%24] }},
		{"repeated day with a gap", gap, SeasonalBlend{Days: 7, Fit: 10 * 24 * time.Hour}, func(k int) float64 { return daily[k%24] }},
		{"ramp", ramp, SeasonalBlend{Days: 3, DayWeight: 0.5, Fit: 10 * 24 * time.Hour}, func(k int) float64 {
			if k < 24 {
				return float64(days*24 + k)
			}
			return float64(days*24 + k - 24)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc, err := tt.f.Forecast(hourlyCurve(t, tt.vals...).Until(at), at, 36*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if fc.Len() != 36 || !fc.Origin().Equal(at) {
				t.Fatalf("forecast has %d slots from %s, want 36 from %s", fc.Len(), fc.Origin(), at)
			}
			for k := range 36 {
				if got, want := fc.Value(k), tt.want(k); math.Abs(got-want) > 1e-6 {
					t.Errorf("slot +%dh = %v, want %v", k, got, want)
				}
			}
		})
	}
}

// TestSeasonalBlendNoPersistence: when deviations are independent from
// hour to hour, their fitted weight is near 0 and the forecast stays near
// the profile, which with equal day weights is SeasonalNaive's mean.
func TestSeasonalBlendNoPersistence(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	vals := make([]float64, 60*24)
	for i := range vals {
		vals[i] = 300 + 100*math.Sin(float64(i%24)/24*2*math.Pi) + 40*rng.NormFloat64()
	}
	at := t0.Add(60 * 24 * time.Hour)
	hist := hourlyCurve(t, vals...).Until(at)
	blend, err := SeasonalBlend{Days: 14, DayWeight: 1}.Forecast(hist, at, 30*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mean, err := SeasonalNaive{Days: 14}.Forecast(hist, at, 30*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	last := len(vals) - 1
	dev := vals[last] - (SeasonalBlend{Days: 14, DayWeight: 1}).profile(hist, last, 1, 24)
	for k := range 30 {
		if d := blend.Value(k) - mean.Value(k); math.Abs(d) > 0.15*math.Abs(dev) {
			t.Errorf("slot +%dh: blend − mean = %.2f, more than 0.15 of the deviation %.2f", k, d, dev)
		}
	}
}

// TestSeasonalBlendRealExcerpt runs the forecaster on the CISO excerpt:
// every slot is the profile plus β·deviation with β in [0, 1], and on this
// solar grid the deviation of the last hour persists, so the first hour is
// moved by most of it.
func TestSeasonalBlendRealExcerpt(t *testing.T) {
	hist := readExcerpt(t, filepath.Join("testdata", "traces", "ciso-2020-06-01_05.csv"))
	at := t0.Add(4 * 24 * time.Hour)
	f := SeasonalBlend{Days: 3, DayWeight: 1, Fit: 3 * 24 * time.Hour}
	blend, err := f.Forecast(hist.Until(at), at, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mean, err := SeasonalNaive{Days: 3}.Forecast(hist.Until(at), at, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	last := hist.Until(at).Len() - 1
	dev := hist.Value(last) - f.profile(hist.Until(at), last, 1, 24)
	if math.Abs(dev) < 1 {
		t.Fatalf("deviation at %s is %.3f; the excerpt no longer tests anything", at, dev)
	}
	for k := range 24 {
		beta := (blend.Value(k) - mean.Value(k)) / dev
		if beta < -1e-9 || beta > 1+1e-9 {
			t.Errorf("slot +%dh: weight %.3f outside [0, 1]", k, beta)
		}
		if k == 0 && beta < 0.5 {
			t.Errorf("first hour: weight %.3f, want the deviation to persist (≥ 0.5)", beta)
		}
	}
}

func TestSeasonalBlendErrors(t *testing.T) {
	hist := hourlyCurve(t, make([]float64, 48)...)
	at := t0.Add(48 * time.Hour)
	tests := []struct {
		name string
		f    SeasonalBlend
		hist *Curve
		want string
	}{
		{"period not a multiple of the step", SeasonalBlend{Period: 90 * time.Minute}, hist, "period 1h30m0s is not a multiple of the 1h0m0s step"},
		{"day weight above 1", SeasonalBlend{DayWeight: 1.5}, hist, "day weight 1.5: want a value in (0, 1]"},
		{"history past the decision time", SeasonalBlend{}, hourlyCurve(t, make([]float64, 50)...), "history runs to 2020-06-03T02:00:00Z, past the decision time"},
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
	fc, err := SeasonalBlend{}.Forecast(hourlyCurve(t), at, 2*time.Hour)
	if err != nil || fc.Len() != 2 || !math.IsNaN(fc.Value(0)) {
		t.Fatalf("empty history: %v, %v", fc, err)
	}
}

// readExcerpt reads an hourly time,gco2_per_kwh fixture starting at t0.
func readExcerpt(t *testing.T, path string) *Curve {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var vals []float64
	for i, r := range rows[1:] {
		ts, err := time.Parse(time.RFC3339, r[0])
		if err != nil || !ts.Equal(t0.Add(time.Duration(i)*time.Hour)) {
			t.Fatalf("%s row %d: time %q, want hourly from %s (%v)", path, i+2, r[0], t0, err)
		}
		v, err := strconv.ParseFloat(r[1], 64)
		if err != nil {
			t.Fatalf("%s row %d: %v", path, i+2, err)
		}
		vals = append(vals, v)
	}
	return hourlyCurve(t, vals...)
}
