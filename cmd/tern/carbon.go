package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tern-edge/tern/carbon"
	"github.com/tern-edge/tern/carbon/provider"
	"github.com/tern-edge/tern/carbon/sim"
)

const carbonUsage = `Usage: tern carbon sim [flags]
       tern carbon status [--admin ADDR] [--json]

sim replays carbon-intensity traces (each one a site; jobs arrive at the
first) with a generated or given workload, through Tern's planner, against
run-now and an oracle with perfect knowledge, and prints the emissions of
each.

status asks a running agent's admin listener for its grid intensity now
and ahead, its queued deferred jobs, and what running them later saved.
`

// cmdCarbon runs the carbon subcommands: sim and status.
func cmdCarbon(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "sim":
			return cmdCarbonSim(ctx, args[1:], stdout, stderr)
		case "status":
			return cmdCarbonStatus(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprint(stderr, carbonUsage)
	return errUsage
}

func cmdCarbonSim(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("carbon sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var traces []string
	fs.Func("trace", "carbon-intensity trace, CSV (time,gco2_per_kwh) or JSON; repeat for more sites", func(s string) error {
		traces = append(traces, s)
		return nil
	})
	jobs := fs.Int("jobs", 1000, "number of jobs, arriving at random hours (ignored with --every or --workload)")
	every := fs.Duration("every", 0, "one job per interval instead of --jobs random arrivals (1h reproduces the reference setup)")
	workload := fs.String("workload", "", "CSV workload (id,arrival,runtime,deadline) instead of a generated one")
	window := fs.Duration("window", 12*time.Hour, "how long after arrival a job may start")
	runtime := fs.Duration("runtime", time.Hour, "run time of each generated job")
	seed := fs.Uint64("seed", 1, "seed of the generated workload")
	step := fs.Duration("step", time.Hour, "decision interval and planner grid")
	capacity := fs.Int("capacity", 0, "jobs each site runs at once (0: unlimited)")
	fc := fs.String("forecast", "regression", "Tern's forecast: regression (14-day seasonal profile with a correction fitted per horizon), blend (14-day seasonal profile blended with the latest deviation), seasonal (7-day seasonal mean), naive (yesterday), level (3-day mean with level correction), or oracle (perfect knowledge)")
	archive := fs.String("forecast-archive", "", "CSV of forecasts as a provider issued them (issued,time,gco2_per_kwh), replayed as Tern's forecast of the one --trace; --forecast fills what it lacks")
	plot := fs.String("plot", "", "write an SVG of the first site's intensity with the chosen start times")
	plotDays := fs.Int("plot-days", 7, "days of the simulation to plot, from its start")
	fs.Usage = func() {
		fmt.Fprint(stderr, carbonUsage+"\n")
		fs.PrintDefaults()
	}
	if fs.Parse(args) != nil {
		return errUsage
	}
	if len(traces) == 0 || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "tern carbon sim: at least one --trace is required")
		fs.Usage()
		return errUsage
	}
	cfg := sim.Config{Step: *step}
	switch *fc {
	case "regression":
		cfg.Forecaster = carbon.SeasonalRegression{}
	case "blend":
		cfg.Forecaster = carbon.SeasonalBlend{}
	case "seasonal":
		cfg.Forecaster = carbon.SeasonalNaive{Days: 7}
	case "naive":
		cfg.Forecaster = carbon.SeasonalNaive{}
	case "level":
		cfg.Forecaster = carbon.SeasonalNaive{Days: 3, Level: 1, Decay: 6 * time.Hour}
	case "oracle":
		cfg.Perfect = true
	default:
		return fmt.Errorf("--forecast %q: want regression, blend, seasonal, naive, level or oracle", *fc)
	}
	if *archive != "" {
		if len(traces) != 1 || cfg.Perfect {
			return fmt.Errorf("--forecast-archive %s: replays one site's forecast: give exactly one --trace, and a --forecast other than oracle for what it lacks", *archive)
		}
		issues, err := readFile(*archive, provider.ReadForecastArchive)
		if err != nil {
			return err
		}
		cfg.Forecaster = carbon.Archive{Issues: issues, Source: filepath.Base(*archive), Fallback: cfg.Forecaster}
	}
	for _, path := range traces {
		rs, err := readFile(path, provider.ReadTrace)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		cfg.Sites = append(cfg.Sites, sim.Site{Name: name, Readings: rs, Capacity: *capacity})
	}
	first := cfg.Sites[0].Readings
	if *workload != "" {
		f, err := os.Open(*workload)
		if err != nil {
			return err
		}
		defer f.Close()
		if cfg.Jobs, err = sim.ReadWorkload(f, filepath.Base(*workload)); err != nil {
			return err
		}
	} else {
		var err error
		cfg.Jobs, err = sim.Generate(sim.Workload{From: first[0].Start, To: first[len(first)-1].End(), Every: *every, Jobs: *jobs, Grid: *step, Runtime: *runtime, Window: *window, Seed: *seed})
		if err != nil {
			return err
		}
	}
	rep, err := sim.Run(cfg)
	if err != nil {
		return err
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if *plot != "" {
		from := cfg.Jobs[0].Arrival.Truncate(24 * time.Hour)
		for _, j := range cfg.Jobs {
			if j.Arrival.Before(from) {
				from = j.Arrival.Truncate(24 * time.Hour)
			}
		}
		f, err := os.Create(*plot)
		if err != nil {
			return err
		}
		err = rep.WriteSVG(f, cfg.Sites, sim.PlotOptions{From: from, To: from.Add(time.Duration(*plotDays) * 24 * time.Hour)})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("plot %s: %w", *plot, err)
		}
		fmt.Fprintf(stdout, "plot: %s\n", *plot)
	}
	return nil
}

// readFile opens path and parses it with read, which names it by its base
// name in errors.
func readFile[T any](path string, read func(io.Reader, string) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	return read(f, filepath.Base(path))
}
