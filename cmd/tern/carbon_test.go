package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tern-edge/tern/agent"
	"github.com/tern-edge/tern/jobs"
)

func TestCarbonSim(t *testing.T) {
	traces := filepath.Join("..", "..", "carbon", "testdata", "traces")
	ciso := filepath.Join(traces, "ciso-2020-06-01_05.csv")
	syn := filepath.Join(traces, "synthetic-2020-06-01_05.json")
	dir := t.TempDir()
	plot := filepath.Join(dir, "out.svg")
	workload := filepath.Join(dir, "jobs.csv")
	placements := filepath.Join(dir, "placements.csv")
	if err := os.WriteFile(workload, []byte("id,arrival,runtime,deadline\na,2020-06-01T10:00:00Z,1h,2020-06-02T00:00:00Z\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"no subcommand", []string{}, 2, []string{"Usage: tern carbon sim"}},
		{"no trace", []string{"sim"}, 2, []string{"--trace is required"}},
		{"missing trace", []string{"sim", "--trace", filepath.Join(dir, "nope.csv")}, 1, []string{"nope.csv"}},
		{"bad forecast", []string{"sim", "--trace", ciso, "--forecast", "tea-leaves"}, 1, []string{`"tea-leaves"`}},
		{"window longer than trace", []string{"sim", "--trace", ciso, "--window", "240h"}, 1, []string{"shorter than window"}},
		{"oracle forecast equals oracle", []string{"sim", "--trace", ciso, "--every", "1h", "--forecast", "oracle"}, 0,
			[]string{"forecast: perfect knowledge", "tern kept 100.0 % of the oracle's saving"}},
		{"seasonal with plot", []string{"sim", "--trace", ciso, "--trace", syn, "--jobs", "50", "--window", "12h", "--seed", "7", "--plot", plot}, 0,
			[]string{"sites: ciso-2020-06-01_05, synthetic-2020-06-01_05", "run-now      50", "oracle", "tern", "plot: " + plot}},
		{"given workload", []string{"sim", "--trace", ciso, "--workload", workload}, 0, []string{"run-now       1"}},
		{"spatial with placements", []string{"sim", "--trace", "a=" + ciso, "--trace", "b=" + syn, "--every", "1h", "--window", "12h", "--from", "2020-06-02",
			"--arrivals", "all", "--capacity", "a=1,b=2", "--transfer", "a:b=30m", "--pue", "b=1.2", "--placements", placements}, 0,
			[]string{"sites: a, b", "oracle: exact", "tern: capacity violations 0, deadline misses 0", "placements: " + placements}},
		{"weighted arrivals", []string{"sim", "--trace", "a=" + ciso, "--trace", "b=" + syn, "--jobs", "20", "--arrivals", "a=1,b=3", "--capacity", "2"}, 0,
			[]string{"run-now      20", "oracle: exact"}},
		{"unknown site", []string{"sim", "--trace", "a=" + ciso, "--capacity", "nyc1=3"}, 1, []string{`unknown site "nyc1" (sites: a)`}},
		{"bad transfer", []string{"sim", "--trace", "a=" + ciso, "--transfer", "a=soon"}, 1, []string{"--transfer a=soon: want a duration"}},
		{"archive needs a site", []string{"sim", "--trace", "a=" + ciso, "--trace", "b=" + syn, "--forecast-archive", workload}, 1, []string{"name the site: SITE=PATH"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			code := run(context.Background(), append([]string{"carbon"}, tt.args...), &out, &out)
			for _, c := range tt.contains {
				if code != tt.code || !strings.Contains(out.String(), c) {
					t.Fatalf("tern carbon %v = %d\n%s\nwant exit %d and output containing %q", tt.args, code, out.String(), tt.code, c)
				}
			}
		})
	}
	pl, err := os.ReadFile(placements)
	if err != nil || !strings.HasPrefix(string(pl), "policy,job,origin,arrival,deadline,start,site,grams,reason\n") || !strings.Contains(string(pl), "tern,b/job-") {
		t.Fatalf("placements: %v\n%.300s", err, pl)
	}
	svg, err := os.ReadFile(plot)
	if err != nil || !strings.HasPrefix(string(svg), "<svg") || !strings.Contains(string(svg), "tern start") {
		t.Fatalf("plot: %v\n%.200s", err, svg)
	}
}

// TestCarbonStatus reads a recorded /carbon answer from a stand-in admin
// listener and prints it.
func TestCarbonStatus(t *testing.T) {
	h0 := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	start := h0.Add(2 * time.Hour)
	exp := 100.0
	st := agent.CarbonStatus{
		Status: jobs.Status{
			Site: "pop1", Region: "DE", Capacity: 4,
			Now: &jobs.Point{Start: h0, Duration: time.Hour, GCO2PerKWh: 500, Kind: "actual", Signal: "average", Source: "electricitymaps"},
			Forecast: []jobs.Point{
				{Start: h0, Duration: 30 * time.Minute, GCO2PerKWh: 400, Source: "electricitymaps"},
				{Start: h0.Add(30 * time.Minute), Duration: 30 * time.Minute, GCO2PerKWh: 600, Source: "electricitymaps"},
				{Start: h0.Add(time.Hour), Duration: 2 * time.Hour, GCO2PerKWh: 100, Source: "electricitymaps"},
			},
			Queued:    1,
			Next:      []jobs.View{{ID: "0123456789abcdef0123456789abcdef", App: "reports", ScheduledAt: &start, Deadline: h0.Add(12 * time.Hour), ExpectedIntensity: &exp}},
			Offloaded: []jobs.OffloadedTotals{{App: "reports", Site: "clean", Runs: 2, Accounted: 2, Grams: 0.5, RunNowGrams: 2}},
		},
		Apps: []agent.CarbonTotals{{App: "reports", Site: "pop1", Invocations: 3, EnergyJ: 7200, Grams: 0.2, RunNowGrams: 1, SavedGrams: 0.8}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/carbon" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	var out strings.Builder
	if code := run(context.Background(), []string{"carbon", "status", "--admin", srv.Listener.Addr().String()}, &out, &out); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	for _, want := range []string{
		"site pop1, region DE, capacity 4",
		"intensity now: 500 gCO2/kWh (actual, average, electricitymaps)",
		" 500  ", // 00:00 averages 400 and 600
		" 100  ",
		"jobs: 1 queued, 0 running",
		"0123456789ab  reports",
		"80.0 %",
		"runs offloaded to other sites",
		"reports  clean     2     0.500      2.000    1.500  75.0 %",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if n := strings.Count(out.String(), "UTC  "); n != 3 {
		t.Errorf("%d forecast hours, want 3:\n%s", n, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"carbon", "status", "--admin", srv.Listener.Addr().String(), "--json"}, &out, &out); code != 0 || !strings.Contains(out.String(), `"saved_grams":0.8`) {
		t.Fatalf("--json: %d %s", code, out.String())
	}
	out.Reset()
	srv.Close()
	if code := run(context.Background(), []string{"carbon", "status", "--admin", srv.Listener.Addr().String()}, &out, &out); code != 1 || !strings.Contains(out.String(), "carbon status from") {
		t.Fatalf("agent down: %d %s", code, out.String())
	}
}

// TestCarbonSimForecastArchive replays a provider's forecast archive as
// Tern's forecast: an archive whose every issue holds the actual values
// ahead makes Tern equal the oracle; an archive for one site cannot be
// given with two.
func TestCarbonSimForecastArchive(t *testing.T) {
	traces := filepath.Join("..", "..", "carbon", "testdata", "traces")
	ciso := filepath.Join(traces, "ciso-2020-06-01_05.csv")
	src, err := os.ReadFile(ciso)
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(string(src)), "\n")[1:]
	var b strings.Builder
	b.WriteString("issued,time,gco2_per_kwh\n")
	for i, row := range rows {
		issued := strings.SplitN(row, ",", 2)[0]
		for _, ahead := range rows[i:min(i+48, len(rows))] {
			b.WriteString(issued + "," + ahead + "\n")
		}
	}
	archive := filepath.Join(t.TempDir(), "perfect.csv")
	if err := os.WriteFile(archive, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	args := []string{"carbon", "sim", "--trace", ciso, "--every", "1h", "--forecast-archive", archive}
	if code := run(context.Background(), args, &out, &out); code != 0 ||
		!strings.Contains(out.String(), "archive:perfect.csv+seasonal-regression") || !strings.Contains(out.String(), "tern kept 100.0 % of the oracle's saving") {
		t.Fatalf("tern %v = %d\n%s\nwant Tern equal to the oracle with a perfect archive", args, code, out.String())
	}
	out.Reset()
	// Per site in a multi-site run: the archive forecasts its own site only.
	args = []string{"carbon", "sim", "--trace", "a=" + ciso, "--trace", "b=" + ciso, "--every", "1h", "--forecast-archive", "a=" + archive}
	if code := run(context.Background(), args, &out, &out); code != 0 || !strings.Contains(out.String(), "seasonal-regression-24hx14; a: archive:perfect.csv+seasonal-regression") {
		t.Fatalf("tern %v = %d\n%s\nwant the archive named for site a", args, code, out.String())
	}
	out.Reset()
	args = []string{"carbon", "sim", "--trace", ciso, "--trace", ciso, "--forecast-archive", archive}
	if code := run(context.Background(), args, &out, &out); code != 1 || !strings.Contains(out.String(), "repeated") {
		t.Fatalf("tern %v = %d\n%s\nwant exit 1 naming the repeated site", args, code, out.String())
	}
}
