package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCarbonSim(t *testing.T) {
	traces := filepath.Join("..", "..", "carbon", "testdata", "traces")
	ciso := filepath.Join(traces, "ciso-2020-06-01_05.csv")
	syn := filepath.Join(traces, "synthetic-2020-06-01_05.json")
	dir := t.TempDir()
	plot := filepath.Join(dir, "out.svg")
	workload := filepath.Join(dir, "jobs.csv")
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
	svg, err := os.ReadFile(plot)
	if err != nil || !strings.HasPrefix(string(svg), "<svg") || !strings.Contains(string(svg), "tern start") {
		t.Fatalf("plot: %v\n%.200s", err, svg)
	}
}
