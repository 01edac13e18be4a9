package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tern-edge/tern/carbon"
	"github.com/tern-edge/tern/carbon/provider"
	"github.com/tern-edge/tern/store"
)

// t0 is the test's start, on the hour.
var t0 = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)

// hourly is the test grid: dirty now, cleanest two hours ahead.
var hourly = []float64{500, 450, 100, 300, 400, 450, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500}

type clock struct {
	mu gosync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// fixture is a scheduler over a real store, a trace provider and a
// counting runner.
type fixture struct {
	t      *testing.T
	dir    string
	clock  *clock
	store  *store.Store
	s      *Scheduler
	ledger *carbon.Ledger
	runs   atomic.Int32
	// block, when set, makes runs wait for their context.
	block atomic.Bool
	// runCtx records the deadline of the last run's context.
	mu       gosync.Mutex
	deadline time.Time
}

func trace(from time.Time, vals []float64) []carbon.Reading {
	rs := make([]carbon.Reading, len(vals))
	for i, v := range vals {
		rs[i] = carbon.Reading{Start: from.Add(time.Duration(i) * time.Hour), Duration: time.Hour, GCO2PerKWh: v, Kind: carbon.Actual, Signal: carbon.Average, Source: "trace:test"}
	}
	return rs
}

func newFixture(t *testing.T, capacity int) *fixture {
	f := &fixture{t: t, dir: t.TempDir(), clock: &clock{t: t0.Add(10 * time.Minute)}}
	f.open(capacity)
	return f
}

func (f *fixture) open(capacity int) {
	t := f.t
	var err error
	f.store, err = store.Open(f.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.store.Close() })
	tr := provider.NewTrace("test", trace(t0, hourly))
	tr.Now = f.clock.Now
	site := carbon.Site{Name: "pop1", Region: "test", Capacity: capacity}
	f.ledger, err = carbon.NewLedger(carbon.PowerModel{WattsPerCore: 10}, []carbon.Site{site})
	if err != nil {
		t.Fatal(err)
	}
	f.s, err = New(Config{
		Store: f.store, Site: site, Intensity: tr, Ledger: f.ledger,
		Now: f.clock.Now, Tick: time.Second, Run: f.run,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) run(app, route string, w http.ResponseWriter, r *http.Request) error {
	f.runs.Add(1)
	dl, _ := r.Context().Deadline()
	f.mu.Lock()
	f.deadline = dl
	f.mu.Unlock()
	if f.block.Load() {
		<-r.Context().Done()
		return r.Context().Err()
	}
	body, _ := io.ReadAll(r.Body)
	// Burn some CPU so the run has energy to account.
	for start := time.Now(); time.Since(start) < 20*time.Millisecond; {
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-App", app)
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, "%s %s %s route=%s body=%s", r.Method, r.Host, r.URL.RequestURI(), route, body)
	return nil
}

// restart closes the store and opens everything again, as a restarted
// agent does.
func (f *fixture) restart() {
	f.s.wg.Wait()
	if err := f.store.Close(); err != nil {
		f.t.Fatal(err)
	}
	f.open(f.s.cfg.Site.Capacity)
}

// step runs one tick at the clock's time and waits for the runs it started.
func (f *fixture) step() {
	f.s.step(context.Background())
	f.s.wg.Wait()
}

var spec = Spec{App: "reports", Route: "/reports", MaxDelay: 12 * time.Hour, Runtime: time.Hour, MaxRequest: 1 << 20}

func (f *fixture) post(h http.Header, body string) (int, View, http.Header) {
	f.t.Helper()
	code, v, hdr, _ := f.postSpec(spec, h, body)
	return code, v, hdr
}

// postSpec posts to an app of sp and returns the status, the job (on
// 202), the headers and the body.
func (f *fixture) postSpec(sp Spec, h http.Header, body string) (int, View, http.Header, string) {
	f.t.Helper()
	req := httptest.NewRequest(http.MethodPost, "https://pop.example/reports/rebuild?full=1", strings.NewReader(body))
	for k, v := range h {
		req.Header[k] = v
	}
	w := httptest.NewRecorder()
	f.s.Defer(sp, http.NotFoundHandler()).ServeHTTP(w, req)
	var v View
	if w.Code == http.StatusAccepted {
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			f.t.Fatalf("202 body: %v: %s", err, w.Body)
		}
	}
	return w.Code, v, w.Header(), w.Body.String()
}

func (f *fixture) do(method, path string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "https://pop.example"+path, nil)
	w := httptest.NewRecorder()
	f.s.ServeHTTP(w, req)
	return w
}

func (f *fixture) get(id string) View {
	f.t.Helper()
	w := f.do(http.MethodGet, PathPrefix+id)
	if w.Code != http.StatusOK {
		f.t.Fatalf("GET job: %d %s", w.Code, w.Body)
	}
	var v View
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		f.t.Fatal(err)
	}
	return v
}

// TestDeferredFlow: POST → 202 with Location → the job is planned into
// the clean hour, does not run before it, runs when the clock reaches it,
// and its stored response and accounting are served.
func TestDeferredFlow(t *testing.T) {
	f := newFixture(t, 0)
	f.step() // read the forecast
	code, v, h := f.post(nil, "hello")
	if code != http.StatusAccepted || h.Get("Location") != PathPrefix+v.ID {
		t.Fatalf("POST = %d, Location %q, view %+v", code, h.Get("Location"), v)
	}
	if v.ScheduledAt == nil || !v.ScheduledAt.Equal(t0.Add(2*time.Hour)) || v.State != StateScheduled || v.Site != "pop1" {
		t.Fatalf("planned %+v, want scheduled at %s on pop1", v, t0.Add(2*time.Hour))
	}
	if !v.Deadline.Equal(t0.Add(10*time.Minute + 12*time.Hour)) {
		t.Fatalf("deadline %s", v.Deadline)
	}
	if w := f.do(http.MethodGet, PathPrefix+v.ID+"/result"); w.Code != http.StatusConflict {
		t.Fatalf("result before done: %d", w.Code)
	}
	f.clock.Set(t0.Add(time.Hour + 59*time.Minute))
	f.step()
	if n := f.runs.Load(); n != 0 {
		t.Fatalf("ran %d times before its start", n)
	}
	f.clock.Set(t0.Add(2 * time.Hour))
	f.step()
	got := f.get(v.ID)
	if got.State != StateDone || got.Started == nil || !got.Started.Equal(t0.Add(2*time.Hour)) || got.Result == nil || got.Result.Status != http.StatusCreated {
		t.Fatalf("after start: %+v", got)
	}
	w := f.do(http.MethodGet, got.ResultURL)
	if w.Code != http.StatusCreated || w.Header().Get("X-App") != "reports" ||
		w.Body.String() != "POST pop.example /reports/rebuild?full=1 route=/reports body=hello" {
		t.Fatalf("result: %d %v %q", w.Code, w.Header(), w.Body)
	}
	totals := f.ledger.ByApp()
	if len(totals) != 1 || totals[0].Invocations != 1 || totals[0].App != "reports" {
		t.Fatalf("ledger: %+v", totals)
	}
	// Ran at 100 g/kWh; on acceptance (00:10) the next hour averaged
	// (50 min × 500 + 10 min × 450) / 60, whatever the energy was.
	want := (50*500.0 + 10*450) / 60 / 100
	if tt := totals[0].Totals; tt.ITJoules <= 0 || tt.Grams <= 0 || math.Abs(tt.RunNowGrams/tt.Grams-want) > 1e-9 {
		t.Fatalf("grams %g, run-now %g: want run-now %.4f × actual", tt.Grams, tt.RunNowGrams, want)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.ledger)
	if n, err := testutil.GatherAndCount(reg, "tern_carbon_emissions_grams_total"); err != nil || n != 2 {
		t.Fatalf("emission series = %d, %v; want actual and run_now", n, err)
	}
	// Safe methods go to the app at once.
	req := httptest.NewRequest(http.MethodGet, "https://pop.example/reports/", nil)
	rw := httptest.NewRecorder()
	f.s.Defer(spec, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(299) })).ServeHTTP(rw, req)
	if rw.Code != 299 {
		t.Fatalf("GET on a deferrable app: %d", rw.Code)
	}
}

// TestReplanOnForecastChange: a new forecast moves a queued job.
func TestReplanOnForecastChange(t *testing.T) {
	f := newFixture(t, 0)
	f.step()
	_, v, _ := f.post(nil, "")
	if !v.ScheduledAt.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("first plan %s", v.ScheduledAt)
	}
	vals := append([]float64(nil), hourly...)
	vals[2], vals[5] = 480, 50
	tr := provider.NewTrace("test", trace(t0, vals))
	tr.Now = f.clock.Now
	f.s.cfg.Intensity = tr
	f.clock.Set(t0.Add(30 * time.Minute)) // refresh is due after 15 min
	f.step()
	if got := f.get(v.ID); !got.ScheduledAt.Equal(t0.Add(5 * time.Hour)) {
		t.Fatalf("after the forecast changed: scheduled at %s, want %s", got.ScheduledAt, t0.Add(5*time.Hour))
	}
}

// TestRestartKeepsJobs: queued jobs survive a restart and run at their
// time; a run a shutdown interrupted runs again after it.
func TestRestartKeepsJobs(t *testing.T) {
	f := newFixture(t, 0)
	f.step()
	_, v, _ := f.post(http.Header{"X-Trace": {"a"}}, "payload")
	f.restart()
	got := f.get(v.ID)
	if got.State != StateScheduled || got.ScheduledAt == nil {
		t.Fatalf("after restart: %+v", got)
	}
	f.step() // forecast again
	if got := f.get(v.ID); !got.ScheduledAt.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("re-planned at %s", got.ScheduledAt)
	}
	// Start it and shut down mid-run.
	f.clock.Set(t0.Add(2 * time.Hour))
	f.block.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	f.s.step(ctx)
	if got := f.get(v.ID); got.State != StateRunning {
		t.Fatalf("not running: %+v", got)
	}
	cancel()
	f.s.wg.Wait()
	f.block.Store(false)
	f.restart()
	f.step()
	got = f.get(v.ID)
	if got.State != StateDone || got.Attempts != 2 || f.runs.Load() != 2 {
		t.Fatalf("after the interrupted run: %+v, %d runs", got, f.runs.Load())
	}
	if w := f.do(http.MethodGet, got.ResultURL); !strings.HasSuffix(w.Body.String(), "body=payload") {
		t.Fatalf("result %q", w.Body)
	}
}

// TestDeadlines: a job is never started at or after its deadline, a job
// that cannot meet it runs at once and is marked late, and a run gets its
// deadline as its context's.
func TestDeadlines(t *testing.T) {
	f := newFixture(t, 0)
	f.step()

	// Tern-Deadline brings the deadline forward; 30m cannot fit 1h.
	_, late, _ := f.post(http.Header{DeadlineHeader: {"30m"}}, "")
	if !late.Late || !late.ScheduledAt.Equal(f.clock.Now()) || late.Reason != carbon.ReasonPastDeadline {
		t.Fatalf("late job planned %+v", late)
	}
	// An RFC 3339 deadline 3h40m away: the clean hour still fits.
	dl := t0.Add(3*time.Hour + 50*time.Minute)
	_, tight, _ := f.post(http.Header{DeadlineHeader: {dl.Format(time.RFC3339)}}, "")
	if !tight.Deadline.Equal(dl) || !tight.ScheduledAt.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("tight job %+v", tight)
	}
	// A later deadline than max_delay is capped.
	_, capped, _ := f.post(http.Header{DeadlineHeader: {"100h"}}, "")
	if !capped.Deadline.Equal(f.clock.Now().Add(12 * time.Hour)) {
		t.Fatalf("deadline not capped: %s", capped.Deadline)
	}
	for _, h := range []string{"-5m", "yesterday", t0.Add(-time.Hour).Format(time.RFC3339)} {
		if code, _, _ := f.post(http.Header{DeadlineHeader: {h}}, ""); code != http.StatusBadRequest {
			t.Errorf("deadline %q: %d, want 400", h, code)
		}
	}
	f.step()
	if got := f.get(late.ID); got.State != StateDone || !got.Late {
		t.Fatalf("late job: %+v", got)
	}
	f.mu.Lock()
	if want := time.Now().Add(late.Deadline.Sub(f.clock.Now())); f.deadline.After(want) {
		t.Errorf("run context deadline %s is after the job's %s", f.deadline, want)
	}
	f.mu.Unlock()

	// The agent is down past tight's deadline: it expires, never runs.
	f.restartAt(dl.Add(time.Minute))
	if got := f.get(tight.ID); got.State != StateExpired {
		t.Fatalf("job past its deadline: %+v", got)
	}
	runs := f.runs.Load()
	f.step()
	if got := f.get(tight.ID); got.State != StateExpired || f.runs.Load() != runs+1 {
		// capped runs now (its window is open and the clock is past the
		// clean hours); tight must not.
		t.Fatalf("after restart: tight %+v, runs %d → %d", got, runs, f.runs.Load())
	}
}

func (f *fixture) restartAt(t time.Time) {
	f.clock.Set(t)
	f.restart()
}

// TestNeverAfterDeadline places many jobs with random deadlines on a site
// of capacity 2 and moves the clock in steps: no job starts at or after
// its deadline, and every job ends done or expired.
func TestNeverAfterDeadline(t *testing.T) {
	f := newFixture(t, 2)
	f.step()
	var ids []string
	for i := range 40 {
		d := time.Duration(30+i*17%600) * time.Minute
		code, v, _ := f.post(http.Header{DeadlineHeader: {d.String()}}, "")
		if code != http.StatusAccepted {
			t.Fatalf("post %d: %d", i, code)
		}
		ids = append(ids, v.ID)
	}
	for m := 0; m <= 13*60; m += 5 {
		f.clock.Set(t0.Add(10*time.Minute + time.Duration(m)*time.Minute))
		f.step()
	}
	for _, id := range ids {
		v := f.get(id)
		switch {
		case v.State != StateDone && v.State != StateExpired:
			t.Errorf("job %s ended %s", id, v.State)
		case v.Started != nil && !v.Started.Before(v.Deadline):
			t.Errorf("job %s started %s, deadline %s", id, v.Started, v.Deadline)
		case v.State == StateDone && !v.Late && v.Started.Add(time.Hour).After(v.Deadline):
			t.Errorf("job %s not marked late but cannot finish: started %s, deadline %s", id, v.Started, v.Deadline)
		}
	}
}

// TestCancel: DELETE cancels a queued job (which then never runs) and a
// running one; a finished job answers 409.
func TestCancel(t *testing.T) {
	f := newFixture(t, 0)
	f.step()
	_, v, _ := f.post(nil, "")
	if w := f.do(http.MethodDelete, PathPrefix+v.ID); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"canceled"`) {
		t.Fatalf("DELETE: %d %s", w.Code, w.Body)
	}
	f.clock.Set(t0.Add(3 * time.Hour))
	f.step()
	if f.runs.Load() != 0 {
		t.Fatal("cancelled job ran")
	}
	if w := f.do(http.MethodDelete, PathPrefix+v.ID); w.Code != http.StatusConflict {
		t.Fatalf("second DELETE: %d", w.Code)
	}
	// Cancel while running.
	f.block.Store(true)
	_, v2, _ := f.post(http.Header{DeadlineHeader: {"1h"}}, "") // runs at once
	f.s.step(context.Background())
	if got := f.get(v2.ID); got.State != StateRunning {
		t.Fatalf("not running: %+v", got)
	}
	if w := f.do(http.MethodDelete, PathPrefix+v2.ID); w.Code != http.StatusOK {
		t.Fatalf("DELETE running: %d", w.Code)
	}
	f.s.wg.Wait()
	f.restart() // the cancellation is durable
	if got := f.get(v2.ID); got.State != StateCanceled || got.Result != nil {
		t.Fatalf("after cancelling a running job: %+v", got)
	}
}

// TestJobsAreScoped: a job is only visible by its id, on its host.
func TestJobsAreScoped(t *testing.T) {
	f := newFixture(t, 0)
	_, v, _ := f.post(nil, "")
	req := httptest.NewRequest(http.MethodGet, "https://other.example"+PathPrefix+v.ID, nil)
	w := httptest.NewRecorder()
	f.s.ServeHTTP(w, req)
	if w.Code != http.StatusNotFound {
		t.Fatalf("other host: %d", w.Code)
	}
	for _, p := range []string{PathPrefix + "nope", PathPrefix + strings.ToUpper(v.ID), PathPrefix + v.ID + "/x"} {
		if w := f.do(http.MethodGet, p); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d", p, w.Code)
		}
	}
	if w := f.do(http.MethodPut, PathPrefix+v.ID); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", w.Code)
	}
}

// TestAcceptLimits: oversize bodies and disallowed regions are refused
// before anything is stored.
func TestAcceptLimits(t *testing.T) {
	f := newFixture(t, 0)
	small := spec
	small.MaxRequest = 4
	req := httptest.NewRequest(http.MethodPost, "https://pop.example/reports", strings.NewReader("12345"))
	w := httptest.NewRecorder()
	f.s.Accept(w, req, small)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize: %d", w.Code)
	}
	elsewhere := spec
	elsewhere.Regions = []string{"eu"}
	w = httptest.NewRecorder()
	f.s.Accept(w, httptest.NewRequest(http.MethodPost, "https://pop.example/reports", nil), elsewhere)
	if w.Code != http.StatusMisdirectedRequest {
		t.Fatalf("region: %d %s", w.Code, w.Body)
	}
	n := 0
	_ = f.store.Jobs(func(string, []byte) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d jobs stored", n)
	}
}

func TestDeadlineHeader(t *testing.T) {
	at := t0
	for _, tc := range []struct {
		h    string
		want time.Time
		err  string
	}{
		{"", at.Add(12 * time.Hour), ""},
		{"90m", at.Add(90 * time.Minute), ""},
		{"2026-11-24T06:00:00Z", at.Add(6 * time.Hour), ""},
		{"2026-11-25T06:00:00+01:00", at.Add(12 * time.Hour), ""},
		{"0s", time.Time{}, `Tern-Deadline "0s": duration must be positive: invalid deadline`},
		{"soon", time.Time{}, `Tern-Deadline "soon": want an RFC 3339 time or a duration such as "90m": invalid deadline`},
		{"2026-11-23T06:00:00Z", time.Time{}, `Tern-Deadline 2026-11-23T06:00:00Z: already past at 2026-11-24T00:00:00Z: invalid deadline`},
	} {
		got, err := deadline(tc.h, at, 12*time.Hour)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err || !errors.Is(err, ErrDeadline) {
				t.Errorf("%q: err %v, want %s", tc.h, err, tc.err)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("%q: %s, %v; want %s", tc.h, got, err, tc.want)
		}
	}
}

// TestRunLoop drives Run through its tick channel.
func TestRunLoop(t *testing.T) {
	f := newFixture(t, 0)
	ticks := make(chan time.Time)
	f.s.cfg.Ticks = ticks
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.s.Run(ctx) }()
	ticks <- time.Time{} // the first step has read the forecast by now
	_, v, _ := f.post(nil, "")
	f.clock.Set(t0.Add(2 * time.Hour))
	ticks <- time.Time{}
	ticks <- time.Time{} // the second tick was taken, so the first step finished starting it
	deadline := time.Now().Add(10 * time.Second)
	for f.get(v.ID).State != StateDone {
		if time.Now().After(deadline) {
			t.Fatal("job did not finish")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := f.s.Status(); st.Queued != 0 || st.Now == nil || len(st.Forecast) == 0 || st.Site != "pop1" {
		t.Fatalf("status %+v", st)
	}
}
