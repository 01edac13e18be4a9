package sim

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// benchForecasters are the forecasters compared in docs/CARBON.md.
var benchForecasters = []carbon.Forecaster{
	carbon.SeasonalNaive{},
	carbon.SeasonalNaive{Days: 7},
	carbon.SeasonalNaive{Days: 3, Level: 1, Decay: 6 * time.Hour},
	carbon.SeasonalBlend{},
	carbon.SeasonalRegression{},
}

// heldOut splits the benchmark year: the forecasters' defaults were chosen
// on jobs arriving before it and are judged on the jobs from it on.
var heldOut = time.Date(2020, 7, 1, 0, 0, 0, 0, time.UTC)

// shareSince returns Tern's share of the oracle's saving over the jobs
// arriving in [from, to): placements are in job order in every outcome.
func shareSince(rep Report, jobs []carbon.Job, from, to time.Time) float64 {
	var now, oracle, tern float64
	for i, j := range jobs {
		if j.Arrival.Before(from) || !j.Arrival.Before(to) {
			continue
		}
		now += rep.RunNow.Placements[i].Grams
		oracle += rep.Oracle.Placements[i].Grams
		tern += rep.Tern.Placements[i].Grams
	}
	return 100 * (now - tern) / (now - oracle)
}

// BenchmarkForecastShare measures, per shared trace and window, Tern's
// saving against run-now and its share of the oracle's saving, with the
// forecast built from history (not perfect knowledge). The numbers are
// reported as metrics: saved_% and oracle_share_% over the year, and
// h1_share_% and h2_share_% over the jobs arriving before and after
// heldOut (the same run, split afterwards).
func BenchmarkForecastShare(b *testing.B) {
	for _, tf := range traceFiles {
		rs := loadShared(b, tf.file)
		for _, w := range []time.Duration{12 * time.Hour, 24 * time.Hour} {
			jobs := hourly(b, rs, w)
			for _, f := range benchForecasters {
				b.Run(fmt.Sprintf("%s/W=%v/%s", tf.name, w, f.Name()), func(b *testing.B) {
					var rep Report
					for b.Loop() {
						var err error
						rep, err = Run(Config{Sites: []Site{{Name: tf.name, Readings: rs}}, Jobs: jobs, Forecaster: f})
						if err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(rep.SavedPct(rep.Tern), "saved_%")
					b.ReportMetric(rep.SavedPct(rep.Oracle), "oracle_saved_%")
					b.ReportMetric(rep.ShareOfOracle(), "oracle_share_%")
					b.ReportMetric(float64(rep.Tern.Misses), "misses")
					b.ReportMetric(shareSince(rep, jobs, time.Time{}, heldOut), "h1_share_%")
					b.ReportMetric(shareSince(rep, jobs, heldOut, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)), "h2_share_%")
				})
			}
		}
	}
}

// forecastFiles are the shared provider forecasts as issued, with the
// actuals they forecast.
var forecastFiles = []struct{ name, actual, forecast string }{
	{"CISO", "dacf-ciso-2021h2-actual.csv", "dacf-ciso-2021h2-forecast.csv"},
	{"DE", "dacf-de-2021h2-actual.csv", "dacf-de-2021h2-forecast.csv"},
	{"ERCO", "dacf-erco-2021h2-actual.csv", "dacf-erco-2021h2-forecast.csv"},
}

// BenchmarkForecastShareProvider measures, on the shared provider
// forecasts as issued (1-h jobs every hour, W = 24 h), the share of the
// oracle's saving kept by the provider's forecast alone (Tern's own after
// the end of each issue), by Tern's own forecaster alone, and by the two
// combined (carbon.Combined).
func BenchmarkForecastShareProvider(b *testing.B) {
	for _, ff := range forecastFiles {
		rs := loadShared(b, filepath.Join("forecasts", ff.actual))
		issues := loadIssues(b, filepath.Join("forecasts", ff.forecast))
		jobs := hourly(b, rs, 24*time.Hour)
		for _, v := range []struct {
			name string
			f    func() carbon.Forecaster
		}{
			{"provider", func() carbon.Forecaster {
				return carbon.Archive{Issues: issues, Source: ff.forecast, Fallback: carbon.SeasonalRegression{}}
			}},
			{"own", func() carbon.Forecaster { return carbon.SeasonalRegression{} }},
			{"combined", func() carbon.Forecaster {
				return &carbon.Combined{Provider: carbon.Archive{Issues: issues, Source: ff.forecast}}
			}},
		} {
			b.Run(ff.name+"/"+v.name, func(b *testing.B) {
				var rep Report
				for b.Loop() {
					var err error
					rep, err = Run(Config{Sites: []Site{{Name: ff.name, Readings: rs}}, Jobs: jobs, Forecaster: v.f()})
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(rep.SavedPct(rep.Tern), "saved_%")
				b.ReportMetric(rep.SavedPct(rep.Oracle), "oracle_saved_%")
				b.ReportMetric(rep.ShareOfOracle(), "oracle_share_%")
				b.ReportMetric(float64(rep.Tern.Misses), "misses")
			})
		}
	}
}

// BenchmarkForecastMAPE measures each forecaster's day-ahead error on the
// shared traces: every midnight from day 8 on, forecast the next 24 hourly
// slots from history only and compare with the actual hourly means.
func BenchmarkForecastMAPE(b *testing.B) {
	for _, tf := range traceFiles {
		rs := loadShared(b, tf.file)
		actual, err := carbon.Resample(rs, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range benchForecasters {
			b.Run(tf.name+"/"+f.Name(), func(b *testing.B) {
				var mape float64
				for b.Loop() {
					var sum float64
					var days int
					start := actual.Origin().Truncate(24 * time.Hour).Add(7 * 24 * time.Hour)
					for at := start; !at.Add(24 * time.Hour).After(actual.End()); at = at.Add(24 * time.Hour) {
						fc, err := f.Forecast(actual.Until(at), at, 24*time.Hour)
						if err != nil {
							b.Fatal(err)
						}
						if m, n := carbon.MAPE(fc, actual); n > 0 {
							sum += m
							days++
						}
					}
					mape = sum / float64(days)
				}
				b.ReportMetric(mape, "mape_%")
			})
		}
	}
}

// BenchmarkExactOracle times the min-cost assignment docs/CARBON.md
// reports: shared traces as sites with capacity 3, one 1-h job per hour
// arriving at every site, W = 24 h, 30 min between sites. exactSites
// sites (17,520 jobs with 2; docs/CARBON.md also gives 4).
func BenchmarkExactOracle(b *testing.B) {
	var sites []Site
	var names []string
	for _, tf := range traceFiles[:exactSites] {
		sites = append(sites, Site{Name: tf.name, Readings: loadShared(b, tf.file), Capacity: 3, Transfer: 30 * time.Minute})
		names = append(names, tf.name)
	}
	jobs := AtEverySite(hourly(b, sites[0].Readings, 24*time.Hour), names)
	var o Outcome
	for b.Loop() {
		var err error
		if o, _, err = OracleOnly(Config{Sites: sites, Jobs: jobs}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(jobs)), "jobs")
	b.ReportMetric(float64(o.Violations), "over_cap")
}

// exactSites is how many sites BenchmarkExactOracle uses; kept small so
// that the benchmark's single run in make test stays short.
const exactSites = 2
