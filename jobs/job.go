// Package jobs accepts deferrable requests as durable jobs and runs each
// through its app when the grid is expected to be cleanest before the
// job's deadline.
//
// A [Scheduler] stores every accepted request (method, target, headers,
// body) in the agent's store before answering 202 Accepted, plans it with
// a [carbon.Planner] over the forecast of the local site's grid, re-plans
// every queued job when the forecast changes, runs due jobs at their
// planned start, stores the response and accounts the energy and
// emissions of each run, next to what running at once would have emitted,
// in a [carbon.Ledger]. Its clock and its ticks are injected, so tests
// move time by hours without sleeping.
//
// Jobs survive restarts: on start the scheduler reloads every job from the
// store, re-plans the pending ones, and runs again the ones a crash
// interrupted (delivery is at least once). A job never starts at or after
// its deadline, and a run is cut off when the deadline comes.
package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Sentinel errors that HTTP handlers and callers branch on.
var (
	// ErrNotFound means no job has that id (or it was forgotten after
	// its results were kept long enough).
	ErrNotFound = errors.New("job not found")
	// ErrFinished means the job has already finished, so it cannot be
	// cancelled.
	ErrFinished = errors.New("job already finished")
	// ErrNotDone means the job has no result yet.
	ErrNotDone = errors.New("job not done")
	// ErrDeadline means a request's deadline is invalid or already past.
	ErrDeadline = errors.New("invalid deadline")
	// ErrRegion means the app's data may not be processed in this site's
	// region and no other site in an allowed region can take the job.
	ErrRegion = errors.New("region not allowed")
)

// States of a job.
const (
	StateScheduled = "scheduled" // waiting for its planned start
	StateRunning   = "running"   // running through its app now
	StateDone      = "done"      // ran; its response is stored
	StateCanceled  = "canceled"  // cancelled before it finished
	StateExpired   = "expired"   // its deadline passed before it could start
	// StateFailed: the job could not run anywhere it is allowed to (see
	// its error), and is never run elsewhere.
	StateFailed = "failed"
)

// DeadlineHeader is the request header that sets a job's deadline: an RFC
// 3339 time ("2026-11-24T06:00:00Z") or a duration from acceptance ("90m").
// It can only bring the app's max_delay forward.
const DeadlineHeader = "Tern-Deadline"

// PathPrefix is where job state and results are served, on every host.
const PathPrefix = "/_tern/jobs/"

// Spec is what an app's manifest says about its deferrable requests.
type Spec struct {
	// App names the app; Route is the route prefix the request matched.
	App, Route string
	// MaxDelay is the latest a job may finish after acceptance.
	MaxDelay time.Duration
	// Runtime is the expected run time.
	Runtime time.Duration
	// Regions lists where the app's data may be processed; empty is any.
	Regions []string
	// MaxRequest caps the stored request body, in bytes.
	MaxRequest int64
}

// record is one job as stored: everything but the request body and the
// response body, which are blobs beside it.
type record struct {
	ID    string `json:"id"`
	App   string `json:"app"`
	Route string `json:"route"`
	// The request, to rebuild it at run time.
	Method     string      `json:"method"`
	Target     string      `json:"target"` // request URI: path and query
	Host       string      `json:"host"`
	RemoteAddr string      `json:"remote_addr,omitempty"`
	TLS        bool        `json:"tls,omitempty"`
	Header     http.Header `json:"header,omitempty"`
	BodyBytes  int64       `json:"body_bytes"`

	Accepted time.Time     `json:"accepted"`
	Deadline time.Time     `json:"deadline"`
	Runtime  time.Duration `json:"runtime"`
	Regions  []string      `json:"regions,omitempty"`

	State string `json:"state"`
	Plan  *plan  `json:"plan,omitempty"`
	// Late is set when the job could not finish by its deadline even if
	// started at once, so it was run as soon as possible.
	Late bool `json:"late,omitempty"`
	// RunNow is the expected intensity over [Accepted, Accepted+Runtime)
	// at acceptance: the counterfactual of not deferring. Nil when no
	// forecast covered it.
	RunNow       *float64 `json:"run_now_gco2_per_kwh,omitempty"`
	RunNowSource string   `json:"run_now_source,omitempty"`

	// Schedule and Occurrence name the schedule and the occurrence a
	// scheduled job was made for.
	Schedule   string     `json:"schedule,omitempty"`
	Occurrence *time.Time `json:"occurrence,omitempty"`

	// QueueRef is the reference of the job's copy on the hub (see
	// Queue); 0 when it has none.
	QueueRef uint64 `json:"queue_ref,omitempty"`

	Attempts int        `json:"attempts,omitempty"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	Result   *result    `json:"result,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// plan is the planner's latest choice for a job.
type plan struct {
	Site      string    `json:"site"`
	Start     time.Time `json:"start"`
	Intensity *float64  `json:"expected_gco2_per_kwh,omitempty"`
	Source    string    `json:"source,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	// Gross and Avoided are the expected emissions of the run and those
	// its site's heat reuse avoids, in grams, kept apart.
	Gross   *float64 `json:"expected_gross_grams,omitempty"`
	Avoided *float64 `json:"expected_avoided_grams,omitempty"`
	// Offload says why a job planned at another site ran here instead.
	Offload string `json:"offload_error,omitempty"`
}

// result is a stored response without its body.
type result struct {
	Status    int         `json:"status"`
	Header    http.Header `json:"header,omitempty"`
	BodyBytes int         `json:"body_bytes"`
	// Grams and RunNowGrams are the run's accounted emissions and its
	// run-now counterfactual, when an intensity was known.
	Grams       *float64 `json:"grams,omitempty"`
	RunNowGrams *float64 `json:"run_now_grams,omitempty"`
	// Site is where the job ran, when not here.
	Site string `json:"site,omitempty"`
}

func (r *record) terminal() bool {
	return r.State == StateDone || r.State == StateCanceled || r.State == StateExpired || r.State == StateFailed
}

// regionAllowed reports whether a job limited to regions may run in
// region (no limit allows any).
func regionAllowed(regions []string, region string) bool {
	return len(regions) == 0 || slices.Contains(regions, region)
}

// View is a job's state as GET /_tern/jobs/<id> shows it.
type View struct {
	ID          string     `json:"id"`
	App         string     `json:"app"`
	State       string     `json:"state"`
	Accepted    time.Time  `json:"accepted"`
	Deadline    time.Time  `json:"deadline"`
	ScheduledAt *time.Time `json:"scheduled_at,omitempty"`
	Site        string     `json:"site,omitempty"`
	// ExpectedIntensity is the forecast mean over the planned run, in
	// gCO2/kWh; Source labels the forecast; Reason says why the start was
	// not chosen by emissions, when it was not.
	ExpectedIntensity *float64 `json:"expected_gco2_per_kwh,omitempty"`
	Source            string   `json:"forecast_source,omitempty"`
	Reason            string   `json:"reason,omitempty"`
	// ExpectedGross and ExpectedAvoided are the planner's expected grams
	// at the chosen site, kept apart (avoided heat is never netted).
	ExpectedGross   *float64 `json:"expected_gross_grams,omitempty"`
	ExpectedAvoided *float64 `json:"expected_avoided_grams,omitempty"`
	// OffloadError says why a job planned at another site ran here.
	OffloadError string `json:"offload_error,omitempty"`
	// Schedule and Occurrence are set for a job made by an app's
	// schedule: which one, and the occurrence it is for.
	Schedule   string     `json:"schedule,omitempty"`
	Occurrence *time.Time `json:"occurrence,omitempty"`
	Late       bool       `json:"late,omitempty"`
	Attempts   int        `json:"attempts,omitempty"`
	Started    *time.Time `json:"started,omitempty"`
	Done       *time.Time `json:"done,omitempty"`
	Error      string     `json:"error,omitempty"`
	// Result is the stored response's status and headers; its body is at
	// ResultURL.
	Result    *ResultView `json:"result,omitempty"`
	ResultURL string      `json:"result_url,omitempty"`
}

// ResultView is a finished job's response and what it emitted.
type ResultView struct {
	Status      int         `json:"status"`
	Header      http.Header `json:"headers,omitempty"`
	BodyBytes   int         `json:"body_bytes"`
	Grams       *float64    `json:"grams,omitempty"`
	RunNowGrams *float64    `json:"run_now_grams,omitempty"`
	// Site is where the job ran.
	Site string `json:"site,omitempty"`
}

func (r *record) view() View {
	v := View{ID: r.ID, App: r.App, State: r.State, Accepted: r.Accepted, Deadline: r.Deadline,
		Late: r.Late, Attempts: r.Attempts, Started: r.Started, Error: r.Error, Schedule: r.Schedule, Occurrence: r.Occurrence}
	if p := r.Plan; p != nil {
		start := p.Start
		v.ScheduledAt, v.Site, v.ExpectedIntensity, v.Source, v.Reason = &start, p.Site, p.Intensity, p.Source, p.Reason
		v.ExpectedGross, v.ExpectedAvoided, v.OffloadError = p.Gross, p.Avoided, p.Offload
	}
	if r.terminal() {
		v.Done = r.Finished
	}
	if res := r.Result; res != nil {
		v.Result = &ResultView{Status: res.Status, Header: res.Header, BodyBytes: res.BodyBytes, Grams: res.Grams, RunNowGrams: res.RunNowGrams, Site: res.Site}
		v.ResultURL = PathPrefix + r.ID + "/result"
	}
	return v
}

// newID returns a random job id. Ids are 128-bit and unguessable because
// knowing one is what lets a client read a job's result or cancel it.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// deadline returns a job's deadline: accepted + maxDelay, brought forward
// by the request's Tern-Deadline header when it names an earlier time.
func deadline(h string, accepted time.Time, maxDelay time.Duration) (time.Time, error) {
	latest := accepted.Add(maxDelay)
	if h == "" {
		return latest, nil
	}
	var t time.Time
	if d, err := time.ParseDuration(h); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("%s %q: duration must be positive: %w", DeadlineHeader, h, ErrDeadline)
		}
		t = accepted.Add(d)
	} else if t, err = time.Parse(time.RFC3339, h); err != nil {
		return time.Time{}, fmt.Errorf("%s %q: want an RFC 3339 time or a duration such as \"90m\": %w", DeadlineHeader, h, ErrDeadline)
	}
	if !t.After(accepted) {
		return time.Time{}, fmt.Errorf("%s %s: already past at %s: %w", DeadlineHeader, t.UTC().Format(time.RFC3339), accepted.UTC().Format(time.RFC3339), ErrDeadline)
	}
	if t.After(latest) {
		return latest, nil
	}
	return t, nil
}

// safeMethod reports whether a request is served at once even by a
// deferrable app: RFC 9110's safe methods only read, so deferring them
// would only delay the answer.
func safeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}
