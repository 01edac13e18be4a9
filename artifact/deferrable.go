package artifact

import (
	"regexp"
	"time"
)

// Bounds of the [Deferrable] table.
const (
	// MaxDeferDelay bounds max_delay: a week covers every weekly cycle of a
	// grid, and longer would keep requests and their bodies on an agent's
	// disk for longer than any forecast reaches.
	MaxDeferDelay = Duration(7 * 24 * time.Hour)
	// MaxDeferRegions bounds how many regions one app may list.
	MaxDeferRegions = 32
)

// Deferrable marks an app as delay-tolerant: its non-safe requests (POST,
// PUT, PATCH, DELETE) are accepted as jobs, answered 202 Accepted, and run
// when the grid is cleanest before their deadline. Safe requests (GET,
// HEAD, OPTIONS) are served at once as usual.
type Deferrable struct {
	// MaxDelay is how long after acceptance a job may finish at the latest;
	// a request's Tern-Deadline header may shorten it, never extend it.
	MaxDelay Duration `toml:"max_delay" json:"max_delay"`
	// ExpectedRuntime is how long one job is expected to run, which the
	// planner uses to average the forecast over the run.
	ExpectedRuntime Duration `toml:"expected_runtime" json:"expected_runtime"`
	// Regions lists the grid regions where the app's data may be
	// processed; empty means any. A site in another region accepts the
	// app's jobs only for a site of the fleet in one of these regions.
	Regions []string `toml:"regions" json:"regions,omitempty"`
}

// regionRE is a grid region name as providers spell them: "DE", "eu",
// "GB-13", "CAISO_NORTH", "US-CAL-CISO".
var regionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (d *Deferrable) validate(p *problems) {
	if d == nil {
		return
	}
	switch {
	case d.MaxDelay <= 0:
		p.add("deferrable.max_delay %s: must be positive", d.MaxDelay)
	case d.MaxDelay > MaxDeferDelay:
		p.add("deferrable.max_delay %s: exceeds the maximum %s", d.MaxDelay, MaxDeferDelay)
	}
	switch {
	case d.ExpectedRuntime <= 0:
		p.add("deferrable.expected_runtime %s: must be positive", d.ExpectedRuntime)
	case d.MaxDelay > 0 && d.ExpectedRuntime > d.MaxDelay:
		p.add("deferrable.expected_runtime %s: exceeds max_delay %s", d.ExpectedRuntime, d.MaxDelay)
	}
	if len(d.Regions) > MaxDeferRegions {
		p.add("deferrable.regions: %d regions, at most %d", len(d.Regions), MaxDeferRegions)
	}
	seen := map[string]bool{}
	for i, r := range d.Regions {
		if !regionRE.MatchString(r) {
			p.add("deferrable.regions[%d] %q: invalid region (want 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit)", i, r)
		} else if seen[r] {
			p.add("deferrable.regions[%d] %q: listed twice", i, r)
		}
		seen[r] = true
	}
}
