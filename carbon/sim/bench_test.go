package sim

import (
	"fmt"
	"testing"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// benchForecasters are the forecasters compared in docs/CARBON.md.
var benchForecasters = []carbon.Forecaster{
	carbon.SeasonalNaive{},
	carbon.SeasonalNaive{Days: 7},
	carbon.SeasonalNaive{Days: 3, Level: 1, Decay: 6 * time.Hour},
}

// BenchmarkForecastShare measures, per shared trace and window, Tern's
// saving against run-now and its share of the oracle's saving, with the
// forecast built from history (not perfect knowledge). The numbers are
// reported as metrics: saved_% and oracle_share_%.
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
				})
			}
		}
	}
}
