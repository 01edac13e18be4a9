package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
	"github.com/tern-edge/tern/jobs"
)

type testClock struct {
	mu gosync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// do sends a request to the agent's public listener.
func (ta *testAgent) do(t *testing.T, method, path, body string) (*http.Response, string) {
	t.Helper()
	url := "https://" + strings.Replace(ta.Addr().String(), "127.0.0.1", "localhost", 1) + path
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ta.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (ta *testAgent) job(t *testing.T, loc string) jobs.View {
	t.Helper()
	resp, body := ta.do(t, http.MethodGet, loc, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", loc, resp.StatusCode, body)
	}
	var v jobs.View
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// carbonAgent starts an agent on data whose grid is a trace, dirty at h0
// and cleanest two hours later, with an injected clock and tick channel.
func carbonAgent(t *testing.T, data string, key ed25519.PrivateKey, clk *testClock, h0 time.Time) (*testAgent, chan time.Time) {
	t.Helper()
	trace := filepath.Join(t.TempDir(), "grid.csv")
	var csv strings.Builder
	csv.WriteString("time,gco2_per_kwh\n")
	for i := range 48 {
		v := 500.0
		if i < 6 {
			v = []float64{500, 450, 100, 300, 400, 450}[i]
		}
		fmt.Fprintf(&csv, "%s,%g\n", h0.Add(time.Duration(i)*time.Hour).Format(time.RFC3339), v)
	}
	if err := os.WriteFile(trace, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, data)
	cfg.Site = "pop1"
	cfg.Carbon.Region = "eu"
	cfg.Carbon.Trace = trace
	ticks := make(chan time.Time)
	ta := startAgentWith(t, cfg, Options{Now: clk.Now, CarbonTicks: ticks, ExtraTrusted: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}})
	ta.key = key
	ticks <- time.Time{} // taken after the first step: the forecast is read
	return ta, ticks
}

// TestDeferredJobs drives the whole flow through the agent's listeners:
// POST to a deferrable app → 202 and Location → the job is planned into
// the clean hour → it survives a restart → it runs when the clock reaches
// that hour → its stored response is served, and /carbon on the admin
// listener shows the saving.
func TestDeferredJobs(t *testing.T) {
	key := mustKey(t)
	data := t.TempDir()
	h0 := time.Now().UTC().Truncate(time.Hour)
	clk := &testClock{t: h0.Add(10 * time.Minute)}
	ta, ticks := carbonAgent(t, data, key, clk, h0)

	// A deferred write shows when it ran through what a later read sees.
	seq := deployKV(t, ta.Agent, key, "[deferrable]\nmax_delay = \"12h\"\nexpected_runtime = \"1h\"\nregions = [\"eu\"]\n", ta)

	resp, body := ta.do(t, http.MethodPost, "/kv?set&colour&blue", "payload")
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || !strings.HasPrefix(loc, jobs.PathPrefix) {
		t.Fatalf("POST: %d, Location %q, %s", resp.StatusCode, loc, body)
	}
	// Safe methods are served at once; the write has not happened yet.
	if resp, body := ta.do(t, http.MethodGet, "/kv?get&colour", ""); resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "error=") {
		t.Fatalf("GET before the job ran: %d %q", resp.StatusCode, body)
	}
	clean := h0.Add(2 * time.Hour)
	if v := ta.job(t, loc); v.State != jobs.StateScheduled || v.ScheduledAt == nil || !v.ScheduledAt.Equal(clean) || v.Site != "pop1" {
		t.Fatalf("planned %+v, want %s at pop1", v, clean)
	}

	// Restart: the job is still there and planned again.
	ta.stop()
	ta, ticks = carbonAgent(t, data, key, clk, h0)
	waitFor(t, "reinstall", func() bool { got, _ := ta.Installed("kv"); return got == seq })
	if v := ta.job(t, loc); v.State != jobs.StateScheduled || !v.ScheduledAt.Equal(clean) {
		t.Fatalf("after restart %+v", v)
	}
	clk.Set(clean.Add(-time.Minute))
	ticks <- time.Time{}
	ticks <- time.Time{}
	if v := ta.job(t, loc); v.State != jobs.StateScheduled {
		t.Fatalf("before its start: %+v", v)
	}
	clk.Set(clean)
	ticks <- time.Time{}
	waitFor(t, "job done", func() bool { return ta.job(t, loc).State == jobs.StateDone })
	v := ta.job(t, loc)
	if v.Result == nil || v.Result.Status != http.StatusOK || v.Late || !v.Started.Equal(clean) {
		t.Fatalf("done: %+v", v)
	}
	if resp, body := ta.do(t, http.MethodGet, v.ResultURL, ""); resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Fatalf("result: %d %q", resp.StatusCode, body)
	}
	if _, body := ta.do(t, http.MethodGet, "/kv?get&colour", ""); body != "value=blue\n" {
		t.Fatalf("GET after the job ran: %q", body)
	}
	if resp, _ := ta.do(t, http.MethodDelete, loc, ""); resp.StatusCode != http.StatusConflict {
		t.Fatalf("DELETE a done job: %d", resp.StatusCode)
	}

	// A second job, cancelled before it runs.
	resp, _ = ta.do(t, http.MethodPost, "/kv?set&colour&red", "")
	loc2 := resp.Header.Get("Location")
	if resp, body := ta.do(t, http.MethodDelete, loc2, ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"canceled"`) {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
	}

	st := carbonStatusOf(t, ta)
	if st.Site != "pop1" || st.Region != "eu" || st.Now == nil || len(st.Forecast) == 0 || st.Queued != 0 {
		t.Fatalf("status %+v", st)
	}
	// Since the restart: the job, and the GET served at once after it
	// (its run-now counterfactual is itself, so only the job saved).
	if len(st.Apps) != 1 || st.Apps[0].Invocations != 2 || st.Apps[0].RunNowGrams <= st.Apps[0].Grams {
		t.Fatalf("accounting %+v", st.Apps)
	}
	before := st.Apps[0]
	for range 3 {
		if resp, _ := ta.do(t, http.MethodGet, "/kv?get&colour", ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET: %d", resp.StatusCode)
		}
	}
	after := carbonStatusOf(t, ta).Apps[0]
	saved := func(a CarbonTotals) float64 { return a.RunNowGrams - a.Grams }
	if after.Invocations != before.Invocations+3 || after.Grams <= before.Grams || math.Abs(saved(after)-saved(before)) > 1e-12 {
		t.Fatalf("three GETs served at once: %+v, then %+v; want 3 more invocations, more grams, no more saving", before, after)
	}
}

// deployKV deploys the tiny kv guest, which compiles fast even under the
// race detector, with its /kv route, the default KV namespace and the
// manifest tables given, through the hub hub runs; it waits until every
// agent in on installed it and returns the release's sequence.
func deployKV(t *testing.T, hub *Agent, key ed25519.PrivateKey, tables string, on ...*testAgent) uint64 {
	t.Helper()
	wasm, err := os.ReadFile(filepath.Join("..", "guests", "caps", "kv.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := artifact.ParseManifest([]byte("name = \"kv\"\nversion = \"1.0.0\"\nwasm = \"kv.wasm\"\n[[routes]]\npath = \"/kv\"\n" +
		"[capabilities]\nkv = [\"default\"]\n" + tables))
	if err != nil {
		t.Fatal(err)
	}
	res, err := deploy.Push(context.Background(), m, wasm, deploy.Options{Client: hubClient(t, hub), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	for _, ta := range on {
		waitFor(t, "install", func() bool { got, _ := ta.Installed("kv"); return got == res.Release.Sequence })
	}
	return res.Release.Sequence
}

func carbonStatusOf(t *testing.T, ta *testAgent) CarbonStatus {
	t.Helper()
	resp, err := http.Get("http://" + ta.AdminAddr().String() + "/carbon")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st CarbonStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestCarbonConfig(t *testing.T) {
	base := "version = 1\n[carbon]\n"
	for _, tc := range []struct{ toml, err string }{
		{"region = \"DE\"\nprovider = \"electricitymaps\"\nconstant = 300\ncapacity = 4\npue = 1.2\nstep = \"30m\"\n[carbon.electricitymaps]\ntoken = \"s3cret\"\n", ""},
		{"provider = \"carbonaware\"\n", `carbon.provider = "carbonaware": want electricitymaps, watttime, ukgrid or nothing`},
		{"pue = 0.5\n", "carbon.pue = 0.5: must be at least 1"},
		{"tick = \"1h\"\n", "carbon.tick = 1h0m0s: must lie in [100ms, 1m]"},
		{"capacity = -1\n", "carbon.capacity = -1: must not be negative"},
		{"regoin = \"DE\"\n", `unknown key "carbon.regoin"`},
	} {
		cfg, err := ParseConfig([]byte(base + tc.toml))
		if tc.err == "" {
			if err != nil {
				t.Errorf("%q: %v", tc.toml, err)
			} else if s := fmt.Sprintf("%v %+v", cfg.Carbon, cfg.Carbon); strings.Contains(s, "s3cret") {
				t.Errorf("token printed: %s", s)
			}
			continue
		}
		if err == nil || err.Error() != tc.err {
			t.Errorf("%q: err %v, want %s", tc.toml, err, tc.err)
		}
	}
}

// TestScheduledRuns deploys an app whose tern.toml schedules a nightly
// write with a 6-hour window: the occurrence becomes a job planned into
// the clean hour of its window, runs there once, and a restart neither
// loses nor repeats it.
func TestScheduledRuns(t *testing.T) {
	key := mustKey(t)
	data := t.TempDir()
	h0 := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour) // a midnight ahead
	clk := &testClock{t: h0.Add(-50 * time.Minute)}
	ta, ticks := carbonAgent(t, data, key, clk, h0)

	seq := deployKV(t, ta.Agent, key, "[deferrable]\nmax_delay = \"12h\"\nexpected_runtime = \"1h\"\n[[deferrable.schedules]]\ncron = \"0 0 * * *\"\nwindow = \"6h\"\npath = \"/kv?set&colour&night\"\n", ta)
	ticks <- time.Time{} // the schedule is seen: from now on
	ticks <- time.Time{}
	if st := ta.jobs.Status(); st.Queued != 0 {
		t.Fatalf("before midnight: %d jobs queued", st.Queued)
	}

	// Midnight: the occurrence is a job, planned at 02:00 (the clean
	// hour), deadline 06:00.
	clk.Set(h0)
	ticks <- time.Time{}
	ticks <- time.Time{}
	st := ta.jobs.Status()
	if st.Queued != 1 || len(st.Next) != 1 {
		t.Fatalf("after midnight: %+v", st)
	}
	v := st.Next[0]
	if v.Occurrence == nil || !v.Occurrence.Equal(h0) || !v.Deadline.Equal(h0.Add(6*time.Hour)) || !v.ScheduledAt.Equal(h0.Add(2*time.Hour)) || v.Schedule == "" {
		t.Fatalf("scheduled job: %+v", v)
	}

	// Restart: still one job, none added.
	ta.stop()
	ta, ticks = carbonAgent(t, data, key, clk, h0)
	waitFor(t, "reinstall", func() bool { got, _ := ta.Installed("kv"); return got == seq })
	ticks <- time.Time{}
	if st := ta.jobs.Status(); st.Queued != 1 || st.Next[0].ID != v.ID {
		t.Fatalf("after restart: %+v", st)
	}
	clk.Set(h0.Add(2 * time.Hour))
	ticks <- time.Time{}
	waitFor(t, "scheduled job done", func() bool { g, err := ta.jobs.Get(v.ID); return err == nil && g.State == jobs.StateDone })
	if _, body := ta.do(t, http.MethodGet, "/kv?get&colour", ""); body != "value=night\n" {
		t.Fatalf("kv after the scheduled run: %q", body)
	}
	ticks <- time.Time{}
	if st := ta.jobs.Status(); st.Queued != 0 || st.Running != 0 {
		t.Fatalf("after the run: %+v", st)
	}
}

// TestNoCarbonSource checks that a config naming no intensity source
// plans without forecasts (no provider), rather than with a chain whose
// every refresh fails and warns; any source gives a provider.
func TestNoCarbonSource(t *testing.T) {
	for _, tc := range []struct {
		toml string
		want bool
	}{
		{"", false},
		{"region = \"DE\"\n", false},
		{"constant = 300\n", true},
		{"trace = \"../carbon/testdata/traces/gb-2020-10-29_11-01.csv\"\n", true},
	} {
		cfg, err := ParseConfig([]byte("version = 1\n[carbon]\n" + tc.toml))
		if err != nil {
			t.Fatalf("%q: %v", tc.toml, err)
		}
		a := &Agent{cfg: cfg, now: time.Now}
		p, err := a.intensity(slog.New(slog.DiscardHandler))
		if err != nil || (p != nil) != tc.want {
			t.Errorf("%q: provider %v, err %v; want a provider: %v", tc.toml, p, err, tc.want)
		}
	}
}
