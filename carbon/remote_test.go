package carbon

import (
	"errors"
	"testing"
	"time"
)

// hourlyPlanner returns a planner of one local site in region eu, hourly,
// whose clock reads *now, and a maker of hourly forecasts from t0.
func hourlyPlanner(t *testing.T, site string, t0 time.Time, now *time.Time) (*Planner, func(v ...float64) *Curve) {
	t.Helper()
	p, err := NewPlanner(PlannerConfig{Sites: []Site{{Name: site, Region: "eu"}}, Step: time.Hour, Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	return p, func(v ...float64) *Curve {
		c, err := CurveFromValues(t0, time.Hour, v, Forecast, Average, "test")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// TestSetRemote plans jobs across the local site and sites learnt from
// heartbeats: the cleaner remote site wins when it runs the job's app and
// its transfer still meets the deadline; heat reuse ranks by net while
// the assignment keeps gross and avoided apart.
func TestSetRemote(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	now := t0
	p, curve := hourlyPlanner(t, "dirty", t0, &now)
	if err := p.SetForecast("dirty", curve(500, 500, 500, 500), "local"); err != nil {
		t.Fatal(err)
	}
	job := Job{ID: "a", App: "kv", Arrival: t0, Runtime: time.Hour, Deadline: t0.Add(4 * time.Hour)}
	if a, _ := p.Submit(job); a.Site != "dirty" {
		t.Fatalf("no remote sites: planned at %s", a.Site)
	}
	clean := RemoteSite{Site: Site{Name: "clean", Region: "eu", Transfer: time.Minute}, Forecast: curve(100, 100, 100, 100), Source: "clean:trace", Apps: []string{"kv"}}
	if err := p.SetRemote([]RemoteSite{clean}); err != nil {
		t.Fatal(err)
	}
	a, _ := p.Assignment("a")
	if a.Site != "clean" || !a.Start.Equal(t0.Add(time.Minute)) || a.Intensity != 100 {
		t.Fatalf("re-planned to %+v, want clean at +1m (after the transfer)", a)
	}

	// A site that lacks the app, or sits in a region the job may not use,
	// never gets it.
	other := Job{ID: "b", App: "other", Arrival: t0, Runtime: time.Hour, Deadline: t0.Add(4 * time.Hour)}
	if a, _ := p.Submit(other); a.Site != "dirty" {
		t.Fatalf("job of an app the site lacks planned at %s", a.Site)
	}
	regional := Job{ID: "c", App: "kv", Arrival: t0, Runtime: time.Hour, Deadline: t0.Add(4 * time.Hour), Regions: []string{"eu"}}
	clean.Region = "us"
	if err := p.SetRemote([]RemoteSite{clean}); err != nil {
		t.Fatal(err)
	}
	if a, _ := p.Submit(regional); a.Site != "dirty" {
		t.Fatalf("job limited to eu planned at %s in us", a.Site)
	}
	clean.Region = "eu"

	// The transfer counts both ways against the deadline.
	tight := Job{ID: "d", App: "kv", Arrival: t0, Runtime: time.Hour, Deadline: t0.Add(time.Hour + time.Minute)}
	if err := p.SetRemote([]RemoteSite{clean}); err != nil {
		t.Fatal(err)
	}
	if a, _ := p.Submit(tight); a.Site != "dirty" {
		t.Fatalf("job whose deadline leaves no transfer time planned at %s", a.Site)
	}

	// Heat reuse: a warm site with a dirtier grid wins on net, and the
	// assignment keeps gross and avoided apart.
	warm := RemoteSite{Site: Site{Name: "warm", Region: "eu", Heat: &HeatReuse{Captured: 0.9, Demand: 1, DisplacedGCO2PerKWh: 203}}, Forecast: curve(200, 200, 200, 200), Source: "warm:trace"}
	if err := p.SetRemote([]RemoteSite{clean, warm}); err != nil {
		t.Fatal(err)
	}
	a, _ = p.Assignment("a")
	if a.Site != "warm" || a.Gross != 200 || a.Avoided < 182 || a.Avoided > 183 {
		t.Fatalf("with heat reuse: %+v, want warm with gross 200 g and avoided 182.7 g apart", a)
	}

	for _, bad := range [][]RemoteSite{{{Site: Site{Name: "dirty"}}}, {clean, clean}, {{Site: Site{Name: "x", Capacity: -1}}}} {
		if err := p.SetRemote(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetRemote(%v): %v, want ErrInvalid", bad, err)
		}
	}
}

// TestNoAllowedSite: a job whose regions exclude every known site is never
// placed at the local site; it waits at its latest start with no site and
// moves to an allowed site as soon as one appears.
func TestNoAllowedSite(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	now := t0
	p, curve := hourlyPlanner(t, "here", t0, &now)
	if err := p.SetForecast("here", curve(100, 100, 100, 100), "local"); err != nil {
		t.Fatal(err)
	}
	job := Job{ID: "us-only", App: "kv", Arrival: t0, Runtime: time.Hour, Deadline: t0.Add(4 * time.Hour), Regions: []string{"us"}}
	a, err := p.Submit(job)
	if err != nil {
		t.Fatal(err)
	}
	if a.Site != "" || a.Reason != ReasonNoSite || !a.Start.Equal(t0.Add(3*time.Hour)) {
		t.Fatalf("no allowed site: %+v, want no site, %q, at the latest start", a, ReasonNoSite)
	}
	west := RemoteSite{Site: Site{Name: "west", Region: "us", Transfer: time.Minute}, Forecast: curve(300, 200, 300, 300), Source: "west:trace", Apps: []string{"kv"}}
	if err := p.SetRemote([]RemoteSite{west}); err != nil {
		t.Fatal(err)
	}
	if a, _ := p.Assignment("us-only"); a.Site != "west" || !a.Start.Equal(t0.Add(time.Hour)) || a.Reason != "" {
		t.Fatalf("with an allowed site: %+v, want west at +1h", a)
	}
	// A site that lacks the app does not count; without west the job
	// waits again, holding no capacity anywhere.
	west.Apps = []string{"other"}
	if err := p.SetRemote([]RemoteSite{west}); err != nil {
		t.Fatal(err)
	}
	if a, _ := p.Assignment("us-only"); a.Site != "" || a.Reason != ReasonNoSite {
		t.Fatalf("allowed site without the app: %+v, want no site", a)
	}
	now = t0.Add(3 * time.Hour)
	due := p.Due()
	if len(due) != 1 || due[0].Site != "" || due[0].Reason != ReasonNoSite {
		t.Fatalf("due: %+v", due)
	}
}
