package carbon

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var t0 = time.Date(2020, 6, 1, 0, 0, 0, 0, time.UTC)

func hourlyCurve(t testing.TB, vals ...float64) *Curve {
	t.Helper()
	c, err := NewCurve(t0, time.Hour, vals)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9*math.Max(1, math.Abs(b)) }

func TestResampleChangingInterval(t *testing.T) {
	// 30-min readings, then 15-min ones: the hourly slots are exact
	// time-weighted means, and a gap is unknown rather than averaged over.
	rs := []Reading{
		{Start: t0, Duration: 30 * time.Minute, GCO2PerKWh: 100},
		{Start: t0.Add(30 * time.Minute), Duration: 30 * time.Minute, GCO2PerKWh: 200},
		{Start: t0.Add(60 * time.Minute), Duration: 15 * time.Minute, GCO2PerKWh: 100},
		{Start: t0.Add(75 * time.Minute), Duration: 45 * time.Minute, GCO2PerKWh: 300},
		{Start: t0.Add(180 * time.Minute), Duration: time.Hour, GCO2PerKWh: 50},
	}
	c, err := Resample(rs, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 4 || !near(c.Value(0), 150) || !near(c.Value(1), 250) || !math.IsNaN(c.Value(2)) || !near(c.Value(3), 50) {
		t.Fatalf("slots = %v", c.Values())
	}
	if m, ok := c.Mean(t0.Add(30*time.Minute), t0.Add(90*time.Minute)); !ok || !near(m, 200) {
		t.Errorf("mean over a half-slot straddle = %v, %v; want 200", m, ok)
	}
	if _, ok := c.Mean(t0, t0.Add(3*time.Hour)); ok {
		t.Error("mean across a gap reported as known")
	}
	if _, ok := c.Mean(t0.Add(-time.Hour), t0.Add(time.Hour)); ok {
		t.Error("mean before the curve reported as known")
	}
	if _, err := Resample(nil, time.Hour); !errors.Is(err, ErrNoData) {
		t.Errorf("empty resample: %v", err)
	}
	if _, err := Resample([]Reading{rs[1], rs[0]}, time.Hour); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "before") {
		t.Errorf("unsorted resample: %v", err)
	}
}

func TestSeasonalNaive(t *testing.T) {
	vals := make([]float64, 72)
	for i := range vals {
		vals[i] = float64(100 + i%24 + 1000*(i/24))
	}
	hist := hourlyCurve(t, vals...)
	at := t0.Add(48 * time.Hour)
	fc, err := SeasonalNaive{}.Forecast(hist.Until(at), at, 30*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Hours 48..71 repeat day 1 (hours 24..47); hours 72..77 go back two days' worth of lag to day 1 too.
	for i := 0; i < 30; i++ {
		want := float64(100 + i%24 + 1000)
		if fc.Value(i) != want {
			t.Fatalf("slot %d = %v, want %v", i, fc.Value(i), want)
		}
	}
	mean7, _ := SeasonalNaive{Days: 2}.Forecast(hist.Until(at), at, time.Hour)
	if mean7.Value(0) != 100+500 {
		t.Errorf("two-day mean = %v, want 600", mean7.Value(0))
	}
	if _, err := (SeasonalNaive{}).Forecast(hist, at, time.Hour); !errors.Is(err, ErrInvalid) {
		t.Errorf("history past the decision time accepted: %v", err)
	}
}

// TestFutureIsNotRead shuffles everything after the decision time: the
// forecast and the planner's decision must not change.
func TestFutureIsNotRead(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]float64, 24*14)
	for i := range vals {
		vals[i] = 200 + 100*math.Sin(float64(i)/24*2*math.Pi) + 30*rng.Float64()
	}
	at := t0.Add(10 * 24 * time.Hour)
	cut := int(at.Sub(t0) / time.Hour)
	shuffled := append([]float64(nil), vals...)
	future := shuffled[cut:]
	rng.Shuffle(len(future), func(i, j int) { future[i], future[j] = future[j], future[i] })
	for _, f := range []Forecaster{SeasonalNaive{}, SeasonalNaive{Days: 7}, SeasonalNaive{Days: 3, Level: 1, Decay: 6 * time.Hour}, SeasonalBlend{}, SeasonalBlend{Fit: 3 * 24 * time.Hour}, SeasonalRegression{}, SeasonalRegression{Fit: 3 * 24 * time.Hour}} {
		a, err := f.Forecast(hourlyCurve(t, vals...).Until(at), at, 36*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		b, err := f.Forecast(hourlyCurve(t, shuffled...).Until(at), at, 36*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for i := range a.Len() {
			if a.Value(i) != b.Value(i) {
				t.Fatalf("%s: slot %d differs after shuffling the future: %v vs %v", f.Name(), i, a.Value(i), b.Value(i))
			}
		}
		decide := func(fc *Curve) Assignment {
			p, _ := NewPlanner(PlannerConfig{Sites: []Site{{Name: "a"}}, Step: time.Hour, Now: func() time.Time { return at }})
			_ = p.SetForecast("a", fc, f.Name())
			as, err := p.Submit(Job{ID: "j", Arrival: at, Runtime: time.Hour, Deadline: at.Add(25 * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			return as
		}
		if da, db := decide(a), decide(b); !da.Start.Equal(db.Start) {
			t.Fatalf("%s: decision changed after shuffling the future: %s vs %s", f.Name(), da.Start, db.Start)
		}
	}
}

func TestPlannerPicksCleanestWindow(t *testing.T) {
	now := t0
	p, err := NewPlanner(PlannerConfig{Sites: []Site{{Name: "here"}}, Step: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	// A 2-hour job: hours 3+4 (60, 40) beat hour 5+6 (10, 200) and hour 4+5 (40, 10) is best.
	if err := p.SetForecast("here", hourlyCurve(t, 300, 300, 300, 60, 40, 10, 200, 300), "test"); err != nil {
		t.Fatal(err)
	}
	a, err := p.Submit(Job{ID: "j", Arrival: t0, Runtime: 2 * time.Hour, Deadline: t0.Add(8 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Start.Equal(t0.Add(4*time.Hour)) || !near(a.Intensity, 25) || a.Reason != "" || a.Source != "test" {
		t.Fatalf("assignment = %+v, want start +4h at 25 g/kWh", a)
	}
	// The deadline cuts off the best window: never plan past it.
	b, _ := p.Submit(Job{ID: "k", Arrival: t0, Runtime: 2 * time.Hour, Deadline: t0.Add(5 * time.Hour)})
	if !b.Start.Equal(t0.Add(3 * time.Hour)) {
		t.Fatalf("deadline-bound start = %s, want +3h", b.Start)
	}
	// Nothing due yet; at +4h the first job is.
	if d := p.Due(); len(d) != 0 {
		t.Fatalf("due at start: %v", d)
	}
	now = t0.Add(4 * time.Hour)
	if d := p.Due(); len(d) != 2 || d[0].JobID != "k" || d[1].JobID != "j" {
		t.Fatalf("due at +4h: %+v", d)
	}
}

func TestPlannerCapacityAndFallbacks(t *testing.T) {
	now := t0
	p, _ := NewPlanner(PlannerConfig{Sites: []Site{{Name: "here", Capacity: 2}}, Step: time.Hour, Now: func() time.Time { return now }})
	_ = p.SetForecast("here", hourlyCurve(t, 300, 100, 200, 250, 300, 300), "test")
	var starts []time.Duration
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		a, err := p.Submit(Job{ID: id, Arrival: t0, Runtime: time.Hour, Deadline: t0.Add(4 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		starts = append(starts, a.Start.Sub(t0))
	}
	// Two in the clean hour, two in the next, one in the third; none past the deadline.
	want := []time.Duration{time.Hour, time.Hour, 2 * time.Hour, 2 * time.Hour, 3 * time.Hour}
	for i := range want {
		if starts[i] != want[i] {
			t.Fatalf("starts = %v, want %v", starts, want)
		}
	}
	f, _ := p.Submit(Job{ID: "f", Arrival: t0.Add(time.Hour), Runtime: time.Hour, Deadline: t0.Add(3 * time.Hour)})
	if f.Reason != ReasonNoCapacity || !f.Start.Equal(t0.Add(time.Hour)) {
		t.Fatalf("overbooked job = %+v, want now with %q", f, ReasonNoCapacity)
	}
	g, _ := p.Submit(Job{ID: "g", Arrival: t0, Runtime: 3 * time.Hour, Deadline: t0.Add(2 * time.Hour)})
	if g.Reason != ReasonPastDeadline || !g.Start.Equal(t0) {
		t.Fatalf("impossible job = %+v, want now with %q", g, ReasonPastDeadline)
	}
	h, _ := p.Submit(Job{ID: "h", Arrival: t0, Runtime: time.Hour, Deadline: t0.Add(30 * time.Hour)})
	if h.Start.After(t0.Add(5*time.Hour)) || h.Reason != "" {
		t.Fatalf("job beyond the forecast = %+v, want a start the forecast covers", h)
	}
	if !p.Cancel("a") || p.Cancel("a") {
		t.Fatal("cancel should succeed once")
	}
	for _, bad := range []Job{{Runtime: time.Hour, Deadline: t0}, {ID: "x", Deadline: t0}, {ID: "x", Runtime: time.Hour}, {ID: "b", Runtime: time.Hour, Deadline: t0}} {
		if _, err := p.Submit(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("submit %+v: %v", bad, err)
		}
	}
	q, _ := NewPlanner(PlannerConfig{Sites: []Site{{Name: "here"}}, Now: func() time.Time { return now }})
	n, _ := q.Submit(Job{ID: "n", Arrival: t0, Runtime: time.Hour, Deadline: t0.Add(5 * time.Hour)})
	if n.Reason != ReasonNoForecast || !n.Start.Equal(t0) {
		t.Fatalf("no forecast = %+v", n)
	}
}

func TestPlannerReplansWhenForecastChanges(t *testing.T) {
	now := t0
	p, _ := NewPlanner(PlannerConfig{Sites: []Site{{Name: "here"}}, Step: 30 * time.Minute, Now: func() time.Time { return now }})
	_ = p.SetForecast("here", hourlyCurve(t, 300, 100, 300, 300, 300, 300), "v1")
	a, _ := p.Submit(Job{ID: "j", Arrival: t0, Runtime: time.Hour, Deadline: t0.Add(6 * time.Hour)})
	if !a.Start.Equal(t0.Add(time.Hour)) {
		t.Fatalf("first plan %s", a.Start)
	}
	now = t0.Add(30 * time.Minute)
	_ = p.SetForecast("here", hourlyCurve(t, 300, 300, 300, 300, 50, 300), "v2")
	b, _ := p.Assignment("j")
	if !b.Start.Equal(t0.Add(4*time.Hour)) || b.Source != "v2" {
		t.Fatalf("re-planned = %+v, want +4h from v2", b)
	}
}

func TestPlannerSitesAndHeat(t *testing.T) {
	now := t0
	gas := &HeatReuse{Captured: 0.9, Demand: 1, DisplacedGCO2PerKWh: 203}
	sites := []Site{
		{Name: "local", Region: "eu"},
		{Name: "pool", Region: "uk", Transfer: time.Hour, PUE: 1.05, Heat: gas},
		{Name: "far", Region: "us"},
	}
	p, err := NewPlanner(PlannerConfig{Sites: sites, Step: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	_ = p.SetForecast("local", hourlyCurve(t, 100, 100, 100, 100, 100, 100), "l")
	_ = p.SetForecast("pool", hourlyCurve(t, 150, 150, 150, 150, 150, 150), "p")
	_ = p.SetForecast("far", hourlyCurve(t, 1, 1, 1, 1, 1, 1), "f")
	// Heat reuse makes the dirtier pool net negative (the worked example of
	// gpu.md §3: 157.5 g gross, 182.8 g avoided).
	a, _ := p.Submit(Job{ID: "j", Arrival: t0, Runtime: time.Hour, Deadline: t0.Add(6 * time.Hour), Regions: []string{"eu", "uk"}})
	if a.Site != "pool" || !a.Start.Equal(t0.Add(time.Hour)) || !near(a.Gross, 157.5) || !near(a.Avoided, 182.7) {
		t.Fatalf("assignment = %+v, want pool at +1h, gross 157.5, avoided 182.7", a)
	}
	// The transfer both ways must fit before the deadline.
	b, _ := p.Submit(Job{ID: "k", Arrival: t0, Runtime: time.Hour, Deadline: t0.Add(2 * time.Hour), Regions: []string{"eu", "uk"}})
	if b.Site != "local" {
		t.Fatalf("deadline too close for transfer: %+v", b)
	}
	if _, err := NewPlanner(PlannerConfig{Sites: []Site{{Name: "x", PUE: 0.5}}}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "PUE 0.5") {
		t.Errorf("bad PUE: %v", err)
	}
}

func TestLedger(t *testing.T) {
	sites := []Site{{Name: "pool", PUE: 1.05, Heat: &HeatReuse{Captured: 0.9, Demand: 1, DisplacedGCO2PerKWh: 203}}}
	l, err := NewLedger(PowerModel{WattsPerCore: 10}, sites)
	if err != nil {
		t.Fatal(err)
	}
	// 1 kWh of IT energy: 360,000 CPU-seconds at 10 W.
	actual := Reading{GCO2PerKWh: 150, Source: "x"}
	r := l.Record(Usage{App: "a", Site: "pool", CPUSeconds: 360000, Duration: time.Hour}, actual, Reading{GCO2PerKWh: 300})
	if !near(r.ITJoules, 3.6e6) || !near(r.Grams, 157.5) || !near(r.RunNowGrams, 315) || !near(r.AvoidedGrams, 182.7) {
		t.Fatalf("record = %+v", r)
	}
	l.Record(Usage{App: "b", Site: "edge", GPUJoules: 3.6e6}, Reading{GCO2PerKWh: 100}, Reading{GCO2PerKWh: 100})
	st := l.BySite()
	if p := st["pool"]; !near(p.ERF(), 0.9/1.05) || !near(p.ERE(), (1-0.9/1.05)*1.05) || !near(p.SavedGrams(), 157.5) {
		t.Fatalf("pool totals = %+v, ERF %v, ERE %v", p, p.ERF(), p.ERE())
	}
	if n := testutil.CollectAndCount(l); n != 12 {
		t.Errorf("metrics = %d, want 12", n)
	}
	want := `
# HELP tern_carbon_emissions_grams_total Gross CO2 emitted by invocations (facility energy × grid intensity), by app, site and scenario: actual, or run_now for the counterfactual of running on arrival.
# TYPE tern_carbon_emissions_grams_total counter
tern_carbon_emissions_grams_total{app="a",scenario="actual",site="pool"} 157.5
tern_carbon_emissions_grams_total{app="a",scenario="run_now",site="pool"} 315
tern_carbon_emissions_grams_total{app="b",scenario="actual",site="edge"} 100
tern_carbon_emissions_grams_total{app="b",scenario="run_now",site="edge"} 100
`
	if err := testutil.CollectAndCompare(l, strings.NewReader(want), "tern_carbon_emissions_grams_total"); err != nil {
		t.Error(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(l); err != nil {
		t.Fatal(err)
	}
}

// fakeProvider answers from a function so tests can make it fail on demand.
type fakeProvider struct {
	calls int
	err   error
	rs    []Reading
}

func (f *fakeProvider) Current(ctx context.Context, region string) (Reading, error) {
	f.calls++
	if f.err != nil {
		return Reading{}, f.err
	}
	return f.rs[0], nil
}

func (f *fakeProvider) Forecast(ctx context.Context, region string, from, to time.Time) ([]Reading, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	return Clip(f.rs, from, to), nil
}

func TestCacheAndChain(t *testing.T) {
	ctx := context.Background()
	now := t0
	clock := func() time.Time { return now }
	live := &fakeProvider{rs: []Reading{
		{Start: t0, Duration: time.Hour, GCO2PerKWh: 10, Kind: Forecast, Source: "live"},
		{Start: t0.Add(time.Hour), Duration: time.Hour, GCO2PerKWh: 20, Kind: Forecast, Source: "live"},
	}}
	c := NewCache(live, 10*time.Minute, clock)
	for range 3 {
		if _, err := c.Forecast(ctx, "r", t0, t0.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if live.calls != 1 {
		t.Fatalf("cached forecast fetched %d times", live.calls)
	}
	now = now.Add(11 * time.Minute)
	_, _ = c.Forecast(ctx, "r", t0, t0.Add(2*time.Hour))
	if live.calls != 2 {
		t.Fatalf("stale cache not refreshed: %d calls", live.calls)
	}

	trace := &fakeProvider{rs: []Reading{{Start: t0, Duration: 24 * time.Hour, GCO2PerKWh: 99, Kind: Actual, Source: "trace:x"}}}
	ch := &Chain{Live: live, Trace: trace, Constant: 400, Now: clock}
	if rs, err := ch.Forecast(ctx, "r", t0, t0.Add(2*time.Hour)); err != nil || rs[0].Source != "live" {
		t.Fatalf("live forecast: %v %v", rs, err)
	}
	live.err = errors.New("down")
	now = t0.Add(90 * time.Minute)
	steps := []struct {
		breakWhat func()
		source    string
		kind      Kind
	}{
		{func() {}, "cache:live", Forecast},
		{func() { ch.mu.Lock(); ch.last = nil; ch.mu.Unlock() }, "trace:x", Actual},
		{func() { trace.err = ErrNoData }, "constant", Assumed},
	}
	for _, s := range steps {
		s.breakWhat()
		r, err := ch.Current(ctx, "r")
		if err != nil || r.Source != s.source || r.Kind != s.kind {
			t.Fatalf("fallback current = %+v, %v; want source %s kind %v", r, err, s.source, s.kind)
		}
		rs, err := ch.Forecast(ctx, "r", now, now.Add(time.Hour))
		if err != nil || len(rs) == 0 || rs[0].Source != s.source {
			t.Fatalf("fallback forecast = %+v, %v; want source %s", rs, err, s.source)
		}
	}
	ch.Constant = 0
	if _, err := ch.Current(ctx, "r"); !errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), "every source failed") {
		t.Fatalf("all sources down: %v", err)
	}
}
