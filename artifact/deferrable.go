package artifact

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tern-edge/tern/internal/cron"
)

// Bounds of the [Deferrable] table.
const (
	// MaxDeferDelay bounds max_delay: a week covers every weekly cycle of a
	// grid, and longer would keep requests and their bodies on an agent's
	// disk for longer than any forecast reaches.
	MaxDeferDelay = Duration(7 * 24 * time.Hour)
	// MaxDeferRegions bounds how many regions one app may list.
	MaxDeferRegions = 32
	// MaxSchedules bounds how many schedules one app may declare.
	MaxSchedules = 16
	// MaxScheduleBody bounds a schedule's request body, which travels in
	// the manifest.
	MaxScheduleBody = 16 << 10
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
	// Schedules are requests the agent makes to the app itself on a cron
	// schedule, each occurrence a job that may run any time within its
	// window.
	Schedules []Schedule `toml:"schedules" json:"schedules,omitempty"`
}

// Schedule is one [[deferrable.schedules]] entry: a request to one of
// the app's own routes, made at every time Cron names, as a deferred job
// whose deadline is that time plus Window.
type Schedule struct {
	// Cron is a five-field cron expression ("0 2 * * *") or a macro
	// ("@daily"), evaluated in UTC.
	Cron string `toml:"cron" json:"cron"`
	// Window is how long after each occurrence its run may finish at the
	// latest; at least expected_runtime, at most MaxDeferDelay.
	Window Duration `toml:"window" json:"window"`
	// Method is the request's method; empty means POST.
	Method string `toml:"method" json:"method,omitempty"`
	// Path is the request target: a path under one of the app's routes,
	// with an optional query ("/reports/rebuild?full=1").
	Path string `toml:"path" json:"path"`
	// Host is the request's Host; empty means the route's host when it is
	// an exact name, else "localhost". A job is shown at /_tern/jobs/<id>
	// on this host.
	Host string `toml:"host" json:"host,omitempty"`
	// Body is the request body; Headers are its headers.
	Body    string            `toml:"body" json:"body,omitempty"`
	Headers map[string]string `toml:"headers" json:"headers,omitempty"`
}

// ScheduleRequest returns s's method, path (without the query), and the
// route path (prefix) of m that serves it; ok is false when no route does.
func (m Manifest) ScheduleRequest(s Schedule) (method, path string, route Route, ok bool) {
	method = s.Method
	if method == "" {
		method = http.MethodPost
	}
	path, _, _ = strings.Cut(s.Path, "?")
	best := -1
	for i, r := range m.Routes {
		prefix := r.Path
		if prefix == "" {
			prefix = "/"
		}
		under := prefix == "/" || path == prefix || strings.HasPrefix(path, strings.TrimSuffix(prefix, "/")+"/")
		if under && (s.Host == "" || r.Host == "" || strings.EqualFold(r.Host, s.Host) ||
			(strings.HasPrefix(r.Host, "*.") && strings.HasSuffix(strings.ToLower(s.Host), r.Host[1:]))) &&
			(best < 0 || len(prefix) > len(m.Routes[best].Path)) {
			best = i
		}
	}
	if best < 0 {
		return method, path, Route{}, false
	}
	return method, path, m.Routes[best], true
}

// regionRE is a grid region name as providers spell them: "DE", "eu",
// "GB-13", "CAISO_NORTH", "US-CAL-CISO".
var regionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (d *Deferrable) validate(m Manifest, p *problems) {
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
	d.validateSchedules(m, p)
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

// scheduleMethods are the methods a schedule may use.
var scheduleMethods = []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodGet}

func (d *Deferrable) validateSchedules(m Manifest, p *problems) {
	if len(d.Schedules) > MaxSchedules {
		p.add("deferrable.schedules: %d schedules, at most %d", len(d.Schedules), MaxSchedules)
		return
	}
	for i, s := range d.Schedules {
		at := func(f string, args ...any) {
			p.add("deferrable.schedules[%d]."+f, append([]any{i}, args...)...)
		}
		if s.Cron == "" {
			at("cron: required")
		} else if _, err := cron.Parse(s.Cron); err != nil {
			at("cron: %v", err)
		}
		switch {
		case s.Window <= 0:
			at("window %s: must be positive", s.Window)
		case s.Window > MaxDeferDelay:
			at("window %s: exceeds the maximum %s", s.Window, MaxDeferDelay)
		case d.ExpectedRuntime > 0 && s.Window < d.ExpectedRuntime:
			at("window %s: shorter than expected_runtime %s", s.Window, d.ExpectedRuntime)
		}
		if s.Method != "" && !slices.Contains(scheduleMethods, s.Method) {
			at("method %q: want POST, PUT, PATCH, DELETE or GET", s.Method)
		}
		if u, err := url.ParseRequestURI(s.Path); s.Path == "" || err != nil || !strings.HasPrefix(s.Path, "/") || u.Fragment != "" || hasControl(s.Path) || strings.Contains(s.Path, " ") {
			at("path %q: want a path starting with \"/\", with an optional query", s.Path)
		} else if _, _, _, ok := m.ScheduleRequest(s); !ok {
			at("path %q: under none of the app's routes", s.Path)
		}
		if s.Host != "" {
			if err := checkHost(strings.ToLower(s.Host)); err != nil || strings.HasPrefix(s.Host, "*.") {
				at("host %q: want an exact host name", s.Host)
			}
		}
		if len(s.Body) > MaxScheduleBody {
			at("body: %d bytes, at most %d", len(s.Body), MaxScheduleBody)
		}
		for name, v := range s.Headers {
			if !validHeaderName(name) || strings.ContainsAny(v, "\r\n\x00") {
				at("headers %q: not a valid header", name)
			}
		}
	}
}
