package sim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// Workload describes a generated workload.
type Workload struct {
	// From and To bound the arrivals; a job arrives in [From, To−Window−Runtime]
	// so that its whole window lies inside the trace.
	From, To time.Time
	// Every, when positive, gives one job per interval from From (the
	// README's reference setup); otherwise Jobs arrivals are drawn uniformly
	// at random on the Grid.
	Every time.Duration
	// Jobs is how many jobs to draw when Every is 0.
	Jobs int
	// Grid aligns random arrivals; 0 means 1h.
	Grid time.Duration
	// Runtime of every job.
	Runtime time.Duration
	// Window is how long after arrival a job may start; its deadline is
	// arrival + Window + Runtime.
	Window time.Duration
	// Seed makes the draw repeatable.
	Seed uint64
}

// Generate returns the workload's jobs sorted by arrival, with IDs
// "job-000001"….
func Generate(w Workload) ([]carbon.Job, error) {
	if w.Runtime <= 0 || w.Window < 0 {
		return nil, fmt.Errorf("workload: runtime %v must be positive and window %v not negative: %w", w.Runtime, w.Window, carbon.ErrInvalid)
	}
	last := w.To.Add(-w.Window - w.Runtime)
	if last.Before(w.From) {
		return nil, fmt.Errorf("workload: trace from %s to %s is shorter than window %v + runtime %v: %w", w.From.Format(time.RFC3339), w.To.Format(time.RFC3339), w.Window, w.Runtime, carbon.ErrInvalid)
	}
	var arrivals []time.Time
	if w.Every > 0 {
		for t := w.From; !t.After(last); t = t.Add(w.Every) {
			arrivals = append(arrivals, t)
		}
	} else {
		if w.Jobs <= 0 {
			return nil, fmt.Errorf("workload: %d jobs: want at least 1 (or an interval): %w", w.Jobs, carbon.ErrInvalid)
		}
		grid := w.Grid
		if grid <= 0 {
			grid = time.Hour
		}
		first := w.From.Truncate(grid)
		if first.Before(w.From) {
			first = first.Add(grid)
		}
		slots := int64(last.Sub(first)/grid) + 1
		if slots <= 0 {
			return nil, fmt.Errorf("workload: no %v-aligned arrival between %s and %s: %w", grid, w.From.Format(time.RFC3339), last.Format(time.RFC3339), carbon.ErrInvalid)
		}
		rng := rand.New(rand.NewPCG(w.Seed, 0x7465726e))
		for range w.Jobs {
			arrivals = append(arrivals, first.Add(time.Duration(rng.Int64N(slots))*grid))
		}
		slices.SortFunc(arrivals, func(a, b time.Time) int { return a.Compare(b) })
	}
	jobs := make([]carbon.Job, len(arrivals))
	for i, a := range arrivals {
		jobs[i] = carbon.Job{ID: fmt.Sprintf("job-%06d", i+1), Arrival: a, Runtime: w.Runtime, Deadline: a.Add(w.Window + w.Runtime)}
	}
	return jobs, nil
}

// ReadWorkload reads jobs from CSV with the header
// "id,arrival,runtime,deadline": arrival and deadline in RFC 3339 (the
// deadline is the latest finish), runtime a Go duration such as "1h30m".
func ReadWorkload(r io.Reader, name string) ([]carbon.Job, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 4
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("workload %s: header: %w: %w", name, carbon.ErrInvalid, err)
	}
	if strings.Join(head, ",") != "id,arrival,runtime,deadline" {
		return nil, fmt.Errorf("workload %s: header %q: want id,arrival,runtime,deadline: %w", name, strings.Join(head, ","), carbon.ErrInvalid)
	}
	var jobs []carbon.Job
	seen := map[string]bool{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("workload %s: %w: %w", name, carbon.ErrInvalid, err)
		}
		id := strings.TrimSpace(rec[0])
		a, err1 := time.Parse(time.RFC3339, strings.TrimSpace(rec[1]))
		rt, err2 := time.ParseDuration(strings.TrimSpace(rec[2]))
		d, err3 := time.Parse(time.RFC3339, strings.TrimSpace(rec[3]))
		switch {
		case id == "" || seen[id]:
			return nil, fmt.Errorf("workload %s line %d: id %q empty or repeated: %w", name, line, id, carbon.ErrInvalid)
		case err1 != nil || err3 != nil:
			return nil, fmt.Errorf("workload %s line %d: arrival %q or deadline %q not RFC 3339: %w", name, line, rec[1], rec[3], carbon.ErrInvalid)
		case err2 != nil || rt <= 0:
			return nil, fmt.Errorf("workload %s line %d: runtime %q: want a positive duration: %w", name, line, rec[2], carbon.ErrInvalid)
		case d.Before(a.Add(rt)):
			return nil, fmt.Errorf("workload %s line %d: deadline %s is before arrival + runtime: %w", name, line, rec[3], carbon.ErrInvalid)
		}
		seen[id] = true
		jobs = append(jobs, carbon.Job{ID: id, Arrival: a.UTC(), Runtime: rt, Deadline: d.UTC()})
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("workload %s: no jobs: %w", name, carbon.ErrNoData)
	}
	return jobs, nil
}

// WriteText prints the report as a small table, then a summary of what
// Tern did that a trustworthy run must show as zero: capacity violations
// and deadline misses.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "sites: %s   step: %v   forecast: %s\n", strings.Join(r.Sites, ", "), r.Step, r.Forecaster)
	fmt.Fprintf(&b, "%-8s %6s %14s %9s %7s %6s %8s\n", "policy", "jobs", "emissions_g", "saved_%", "misses", "moved", "over_cap")
	for _, o := range []Outcome{r.RunNow, r.Oracle, r.Tern} {
		fmt.Fprintf(&b, "%-8s %6d %14.1f %9.2f %7d %6d %8d\n", o.Policy, o.Jobs, o.Grams, r.SavedPct(o), o.Misses, o.Moved, o.Violations)
	}
	oracle := "planner with the actual future"
	if r.OracleExact {
		oracle = "exact"
	}
	fmt.Fprintf(&b, "oracle: %s\n", oracle)
	fmt.Fprintf(&b, "tern kept %s of the oracle's saving\n", pct(r.ShareOfOracle()))
	fmt.Fprintf(&b, "tern: capacity violations %d, deadline misses %d\n", r.Tern.Violations, r.Tern.Misses)
	_, err := io.WriteString(w, b.String())
	return err
}

// WritePlacements writes one CSV row per job and policy: policy, job,
// origin, arrival, deadline, start, site, grams, reason.
func (r Report) WritePlacements(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"policy", "job", "origin", "arrival", "deadline", "start", "site", "grams", "reason"})
	for _, o := range []Outcome{r.RunNow, r.Oracle, r.Tern} {
		for _, p := range o.Placements {
			_ = cw.Write([]string{o.Policy, p.JobID, p.Origin, p.Arrival.Format(time.RFC3339), p.Deadline.Format(time.RFC3339),
				p.Start.Format(time.RFC3339), p.Site, strconv.FormatFloat(p.Grams, 'f', 3, 64), p.Reason})
		}
	}
	cw.Flush()
	return cw.Error()
}

func pct(v float64) string {
	if v != v {
		return "n/a (the oracle saved nothing)"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " %"
}

// AtEverySite returns the jobs repeated at every site: each site's copy
// has the site as its origin and an ID prefixed "<site>/".
func AtEverySite(jobs []carbon.Job, sites []string) []carbon.Job {
	out := make([]carbon.Job, 0, len(jobs)*len(sites))
	for _, j := range jobs {
		for _, s := range sites {
			c := j
			c.ID, c.Origin = s+"/"+j.ID, s
			out = append(out, c)
		}
	}
	return out
}

// WithOrigins returns the jobs each with an origin drawn at random, in
// proportion to the sites' weights (names in sites order), repeatably
// for a seed.
func WithOrigins(jobs []carbon.Job, sites []string, weights []float64, seed uint64) ([]carbon.Job, error) {
	var total float64
	for i, w := range weights {
		if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("arrival weight %v of %s: want a finite number ≥ 0: %w", w, sites[i], carbon.ErrInvalid)
		}
		total += w
	}
	if total <= 0 {
		return nil, fmt.Errorf("arrival weights: none is positive: %w", carbon.ErrInvalid)
	}
	rng := rand.New(rand.NewPCG(seed, 0x6f726967))
	out := slices.Clone(jobs)
	for i := range out {
		x := rng.Float64() * total
		k := 0
		for ; k < len(weights)-1 && x >= weights[k]; k++ {
			x -= weights[k]
		}
		out[i].Origin = sites[k]
	}
	return out, nil
}
