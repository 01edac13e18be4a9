package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tern-edge/tern/carbon"
	"github.com/tern-edge/tern/carbon/provider"
	"github.com/tern-edge/tern/carbon/sim"
)

func cmdCarbonSim(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("carbon sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var traces, archives, transfers []string
	fs.Func("trace", "carbon-intensity trace, CSV (time,gco2_per_kwh) or JSON, as PATH or SITE=PATH (the site is named after the file otherwise); repeat for more sites", func(s string) error {
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
	from := fs.String("from", "", "first arrival (RFC 3339 or YYYY-MM-DD); the trace before it is history only")
	to := fs.String("to", "", "arrivals before this time (RFC 3339 or YYYY-MM-DD); default the end of the first trace")
	arrivals := fs.String("arrivals", "first", "where jobs arrive: first (the first site), all (the workload repeated at every site), or SITE=WEIGHT,… (each job at one site drawn by weight)")
	capacity := fs.String("capacity", "0", "jobs a site runs at once: N for every site, or SITE=N,… (0: unlimited)")
	pue := fs.String("pue", "", "PUE per site, SITE=X,… (default 1)")
	fs.Func("transfer", "one-way time to move a job, DURATION (to any site), SITE=DURATION (to that site from any other) or FROM:TO=DURATION, comma-separated; repeatable", func(s string) error {
		transfers = append(transfers, s)
		return nil
	})
	fc := fs.String("forecast", "regression", "Tern's forecast: regression (14-day seasonal profile with a correction fitted per horizon), blend (14-day seasonal profile blended with the latest deviation), seasonal (7-day seasonal mean), naive (yesterday), level (3-day mean with level correction), or oracle (perfect knowledge)")
	fs.Func("forecast-archive", "CSV of forecasts as a provider issued them (issued,time,gco2_per_kwh), as PATH (with one --trace) or SITE=PATH; repeatable, one per site; --forecast fills what it lacks", func(s string) error {
		archives = append(archives, s)
		return nil
	})
	combine := fs.Bool("combine", false, "with --forecast-archive: combine the provider's forecast with --forecast by their recent errors instead of filling the provider's gaps with it")
	placements := fs.String("placements", "", "write one CSV row per job and policy (policy,job,origin,arrival,deadline,start,site,grams,reason)")
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
	var names []string
	for _, tr := range traces {
		name, path, ok := strings.Cut(tr, "=")
		if !ok {
			path, name = tr, strings.TrimSuffix(filepath.Base(tr), filepath.Ext(tr))
		}
		if name == "" || slices.Contains(names, name) {
			return fmt.Errorf("--trace %s: site name %q empty or repeated", tr, name)
		}
		rs, err := readFile(path, provider.ReadTrace)
		if err != nil {
			return err
		}
		names = append(names, name)
		cfg.Sites = append(cfg.Sites, sim.Site{Name: name, Readings: rs})
	}
	site := func(flagName, name string) (*sim.Site, error) {
		i := slices.Index(names, name)
		if i < 0 {
			return nil, fmt.Errorf("--%s: unknown site %q (sites: %s)", flagName, name, strings.Join(names, ", "))
		}
		return &cfg.Sites[i], nil
	}
	if n, err := strconv.Atoi(*capacity); err == nil {
		if n < 0 {
			return fmt.Errorf("--capacity %d: want 0 or more", n)
		}
		for i := range cfg.Sites {
			cfg.Sites[i].Capacity = n
		}
	} else if err := perSite(*capacity, func(name, v string) error {
		s, err := site("capacity", name)
		if err != nil {
			return err
		}
		if s.Capacity, err = strconv.Atoi(v); err != nil || s.Capacity < 0 {
			return fmt.Errorf("--capacity %s=%s: want a whole number ≥ 0", name, v)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := perSite(*pue, func(name, v string) error {
		s, err := site("pue", name)
		if err != nil {
			return err
		}
		if s.PUE, err = strconv.ParseFloat(v, 64); err != nil || s.PUE < 1 {
			return fmt.Errorf("--pue %s=%s: want a number ≥ 1", name, v)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, spec := range transfers {
		if d, err := time.ParseDuration(spec); err == nil && d >= 0 {
			for i := range cfg.Sites {
				cfg.Sites[i].Transfer = d
			}
			continue
		}
		if err := perSite(spec, func(key, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return fmt.Errorf("--transfer %s=%s: want a duration ≥ 0 such as 30m", key, v)
			}
			if a, b, pair := strings.Cut(key, ":"); pair {
				if _, err := site("transfer", a); err != nil {
					return err
				}
				if _, err := site("transfer", b); err != nil {
					return err
				}
				if cfg.Transfers == nil {
					cfg.Transfers = map[[2]string]time.Duration{}
				}
				cfg.Transfers[[2]string{a, b}] = d
				return nil
			}
			s, err := site("transfer", key)
			if err != nil {
				return err
			}
			s.Transfer = d
			return nil
		}); err != nil {
			return err
		}
	}
	for _, spec := range archives {
		name, path, ok := strings.Cut(spec, "=")
		if !ok {
			if len(names) != 1 {
				return fmt.Errorf("--forecast-archive %s: with several sites, name the site: SITE=PATH", spec)
			}
			name, path = names[0], spec
		}
		s, err := site("forecast-archive", name)
		if err != nil {
			return err
		}
		if cfg.Perfect {
			return fmt.Errorf("--forecast-archive %s: give a --forecast other than oracle for what the archive lacks", spec)
		}
		issues, err := readFile(path, provider.ReadForecastArchive)
		if err != nil {
			return err
		}
		if *combine {
			s.Forecaster = &carbon.Combined{Provider: carbon.Archive{Issues: issues, Source: filepath.Base(path)}, Own: cfg.Forecaster}
		} else {
			s.Forecaster = carbon.Archive{Issues: issues, Source: filepath.Base(path), Fallback: cfg.Forecaster}
		}
	}
	first := cfg.Sites[0].Readings
	lo, hi := first[0].Start, first[len(first)-1].End()
	for _, b := range []struct {
		flag, v string
		t       *time.Time
	}{{"from", *from, &lo}, {"to", *to, &hi}} {
		if b.v == "" {
			continue
		}
		t, err := parseWhen(b.v)
		if err != nil {
			return fmt.Errorf("--%s %q: want RFC 3339 or YYYY-MM-DD", b.flag, b.v)
		}
		*b.t = t
	}
	if *workload != "" {
		f, err := os.Open(*workload)
		if err != nil {
			return err
		}
		defer f.Close()
		all, err := sim.ReadWorkload(f, filepath.Base(*workload))
		if err != nil {
			return err
		}
		for _, j := range all {
			if !j.Arrival.Before(lo) && j.Arrival.Before(hi) {
				cfg.Jobs = append(cfg.Jobs, j)
			}
		}
		if len(cfg.Jobs) == 0 {
			return fmt.Errorf("workload %s: no job arrives between --from %s and --to %s", *workload, lo.Format(time.RFC3339), hi.Format(time.RFC3339))
		}
	} else {
		var err error
		cfg.Jobs, err = sim.Generate(sim.Workload{From: lo, To: hi, Every: *every, Jobs: *jobs, Grid: *step, Runtime: *runtime, Window: *window, Seed: *seed})
		if err != nil {
			return err
		}
	}
	switch *arrivals {
	case "first", "":
	case "all":
		cfg.Jobs = sim.AtEverySite(cfg.Jobs, names)
	default:
		weights := make([]float64, len(names))
		if err := perSite(*arrivals, func(name, v string) error {
			i := slices.Index(names, name)
			if i < 0 {
				return fmt.Errorf("--arrivals: unknown site %q (sites: %s)", name, strings.Join(names, ", "))
			}
			w, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("--arrivals %s=%s: want a weight", name, v)
			}
			weights[i] = w
			return nil
		}); err != nil {
			return err
		}
		var err error
		if cfg.Jobs, err = sim.WithOrigins(cfg.Jobs, names, weights, *seed); err != nil {
			return fmt.Errorf("--arrivals %s: %w", *arrivals, err)
		}
	}
	rep, err := sim.Run(cfg)
	if err != nil {
		return err
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if *placements != "" {
		if err := writeFile(*placements, rep.WritePlacements); err != nil {
			return fmt.Errorf("placements %s: %w", *placements, err)
		}
		fmt.Fprintf(stdout, "placements: %s\n", *placements)
	}
	if *plot != "" {
		from := cfg.Jobs[0].Arrival.Truncate(24 * time.Hour)
		for _, j := range cfg.Jobs {
			if j.Arrival.Before(from) {
				from = j.Arrival.Truncate(24 * time.Hour)
			}
		}
		err := writeFile(*plot, func(w io.Writer) error {
			return rep.WriteSVG(w, cfg.Sites, sim.PlotOptions{From: from, To: from.Add(time.Duration(*plotDays) * 24 * time.Hour)})
		})
		if err != nil {
			return fmt.Errorf("plot %s: %w", *plot, err)
		}
		fmt.Fprintf(stdout, "plot: %s\n", *plot)
	}
	return nil
}

// perSite calls set for every KEY=VALUE of a comma-separated list.
func perSite(spec string, set func(key, value string) error) error {
	if strings.TrimSpace(spec) == "" {
		return nil
	}
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return fmt.Errorf("%q: want KEY=VALUE", kv)
		}
		if err := set(k, v); err != nil {
			return err
		}
	}
	return nil
}

// parseWhen reads RFC 3339 or a date (midnight UTC).
func parseWhen(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	return time.Parse(time.DateOnly, s)
}

// writeFile creates path and writes it with write.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
