package sim

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tern-edge/tern/carbon"
	"github.com/tern-edge/tern/carbon/provider"
)

// sharedTraces is the shared data directory beside the repository.
var sharedTraces = filepath.Join("..", "..", "..", "shared", "data", "carbon")

// traceFiles maps the README's column names to the shared files.
var traceFiles = []struct{ name, file string }{
	{"CISO", "dacf-ciso-2020.csv"},
	{"ERCO", "dacf-erco-2020.csv"},
	{"ISNE", "dacf-isne-2020.csv"},
	{"PJM", "dacf-pjm-2020.csv"},
	{"SE", "dacf-se-2020.csv"},
	{"DE", "lwa-de-2020.csv"},
	{"FR", "lwa-fr-2020.csv"},
	{"GB", "lwa-gb-2020.csv"},
}

// loadShared reads one shared trace, or skips the test when the shared
// directory is not beside the repository.
func loadShared(tb testing.TB, file string) []carbon.Reading {
	tb.Helper()
	f, err := os.Open(filepath.Join(sharedTraces, file))
	if errors.Is(err, fs.ErrNotExist) {
		tb.Skipf("shared traces not found at %s (clone the repository with shared/ beside it): %v", sharedTraces, err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	rs, err := provider.ReadTrace(f, file)
	if err != nil {
		tb.Fatal(err)
	}
	return rs
}

// hourly returns one job per hour over the trace, each with window w.
func hourly(tb testing.TB, rs []carbon.Reading, w time.Duration) []carbon.Job {
	tb.Helper()
	jobs, err := Generate(Workload{From: rs[0].Start, To: rs[len(rs)-1].End(), Every: time.Hour, Runtime: time.Hour, Window: w})
	if err != nil {
		tb.Fatal(err)
	}
	return jobs
}

// TestReferenceTable reproduces the oracle savings of the shared README:
// 1-h jobs, one per hour, hourly-averaged intensity, W = 12 h and 24 h.
func TestReferenceTable(t *testing.T) {
	want := map[time.Duration][]float64{
		12 * time.Hour: {31.9, 14.1, 7.3, 6.7, 6.8, 15.2, 11.3, 18.5},
		24 * time.Hour: {42.1, 19.9, 10.3, 9.2, 9.3, 22.3, 16.1, 26.1},
	}
	for i, tf := range traceFiles {
		rs := loadShared(t, tf.file)
		for _, w := range []time.Duration{12 * time.Hour, 24 * time.Hour} {
			t.Run(tf.name+"/"+w.String(), func(t *testing.T) {
				t.Parallel()
				cfg := Config{Sites: []Site{{Name: tf.name, Readings: rs}}, Jobs: hourly(t, rs, w)}
				o, runNow, err := OracleOnly(cfg)
				if err != nil {
					t.Fatal(err)
				}
				got := 100 * (1 - o.Grams/runNow.Grams)
				if math.Abs(got-want[w][i]) > 0.05+1e-9 || o.Misses > 0 || o.Unknown > 0 {
					t.Errorf("oracle saving = %.3f %% (misses %d, unknown %d), README says %.1f %%", got, o.Misses, o.Unknown, want[w][i])
				}
			})
		}
	}
}

// loadIssues reads one shared forecast archive, or skips like loadShared.
func loadIssues(tb testing.TB, file string) []carbon.Issue {
	tb.Helper()
	f, err := os.Open(filepath.Join(sharedTraces, file))
	if errors.Is(err, fs.ErrNotExist) {
		tb.Skipf("shared forecasts not found at %s (clone the repository with shared/ beside it): %v", sharedTraces, err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	is, err := provider.ReadForecastArchive(f, filepath.Base(file))
	if err != nil {
		tb.Fatal(err)
	}
	return is
}
