package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape parses the admin listener's /metrics as Prometheus text, failing
// the test if it does not parse.
func scrape(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s/metrics does not parse: %v", admin, err)
	}
	return fams
}

// sample returns the value of family's sample whose labels include want,
// or -1 when there is none.
func sample(fams map[string]*dto.MetricFamily, family string, want map[string]string) float64 {
	f := fams[family]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestCacheMetrics drives a miss, a hit, a revalidation, an eviction and a
// purge through `tern up` and finds each in a parsed scrape, labelled by
// origin and nothing finer.
func TestCacheMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildTern(t)
	origin := newTestOrigin(t)
	data := filepath.Join(dir, "data")
	conf := filepath.Join(dir, "tern.toml")
	// A budget of 64 KiB: 40 KiB bodies evict each other.
	os.WriteFile(conf, fmt.Appendf(nil, "version = 1\ndata = %q\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n"+
		"[hub]\nlisten = \"127.0.0.1:0\"\n[cache]\nmax_size = \"64KiB\"\n[[origins]]\nname = \"web\"\npath = \"/o/\"\nupstreams = [%q]\n", data, origin), 0o644)
	up := start(t, bin, "up", "--config", conf)
	base := up.await(t, `(https://localhost:\d+)`)
	admin := "http://" + up.await(t, `metrics +http://(\S+)/metrics`)
	client := tlsClient(t, data)
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("Cache-Status")
	}
	get("/o/a")     // miss
	get("/o/a")     // hit
	get("/o/stale") // miss, stale at once
	get("/o/stale") // revalidated
	get("/o/big/1") // miss
	get("/o/big/2") // evicts the first
	token, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", admin+"/cache", strings.NewReader(`{"urls":["`+base+`/o/a"]}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("purge: %v %v", resp, err)
	}

	fams := scrape(t, admin)
	for _, c := range []struct {
		family string
		labels map[string]string
	}{
		{"tern_cache_requests_total", map[string]string{"origin": "web", "result": "hit"}},
		{"tern_cache_requests_total", map[string]string{"origin": "web", "result": "miss"}},
		{"tern_cache_revalidations_total", map[string]string{"origin": "web"}},
		{"tern_cache_served_bytes_total", map[string]string{"origin": "web"}},
		{"tern_cache_stored_bytes", nil},
		{"tern_cache_evictions_total", nil},
		{"tern_cache_purges_total", nil},
		{"tern_cache_purged_total", nil},
	} {
		if v := sample(fams, c.family, c.labels); v <= 0 {
			t.Errorf("%s%v = %v after the traffic that drives it", c.family, c.labels, v)
		}
	}
	if sample(fams, "tern_cache_requests_total", map[string]string{"origin": "web", "result": "stale"}) < 0 {
		t.Error("tern_cache_requests_total{result=stale} missing")
	}
	for _, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if strings.Contains(l.GetValue(), "/") || strings.Contains(l.GetValue(), "127.0.0.1") {
					t.Errorf("%s has label %s=%q: URLs and addresses are unbounded", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// newTestOrigin serves /o/a and /o/big/N fresh for an hour (N of 40 KiB)
// and /o/stale stale at once, with an ETag it answers 304 to.
func newTestOrigin(t *testing.T) string {
	t.Helper()
	big := strings.Repeat("x", 40<<10)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/o/stale":
			w.Header().Set("Cache-Control", "max-age=0")
			w.Header().Set("ETag", `"v1"`)
			if r.Header.Get("If-None-Match") == `"v1"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			io.WriteString(w, "stale")
		case strings.HasPrefix(r.URL.Path, "/o/big/"):
			w.Header().Set("Cache-Control", "max-age=3600")
			io.WriteString(w, big)
		default:
			w.Header().Set("Cache-Control", "max-age=3600")
			io.WriteString(w, "a")
		}
	}))
	t.Cleanup(s.Close)
	return s.URL
}

// TestFleetMetrics drives an install, heartbeats and a deferred job through
// `tern up`, and starts a standalone `tern hub`: the sync, jobs and hub
// families are each in a parsed scrape of the admin listener.
func TestFleetMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildTern(t)
	data := filepath.Join(dir, "data")
	conf := filepath.Join(dir, "tern.toml")
	os.WriteFile(conf, fmt.Appendf(nil, "version = 1\ndata = %q\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nheartbeat = \"1s\"\n"+
		"[hub]\nlisten = \"127.0.0.1:0\"\n", data), 0o644)
	up := start(t, bin, "up", "--config", conf)
	base := up.await(t, `(https://localhost:\d+)`)
	admin := "http://" + up.await(t, `metrics +http://(\S+)/metrics`)
	client := tlsClient(t, data)

	app := helloApp(t, dir, "batch", "1.0.0", "deferred job ran")
	f, _ := os.OpenFile(filepath.Join(app, "tern.toml"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("[deferrable]\nmax_delay = \"1m\"\nexpected_runtime = \"1s\"\n")
	f.Close()
	if code, text := runTern("deploy", "--data", data, app); code != 0 {
		t.Fatal(text)
	}
	resp, err := client.Post(base+"/batch", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /batch: %d, want 202", resp.StatusCode)
	}

	var fams map[string]*dto.MetricFamily
	poll(t, 30*time.Second, func() bool {
		fams = scrape(t, admin)
		return sample(fams, "tern_jobs_run_total", nil) >= 1 && sample(fams, "tern_hub_heartbeats_total", nil) >= 1
	}, func() string { return "the job did not run or no heartbeat was stored\n" + up.logs.String() })
	for _, c := range []struct {
		family string
		labels map[string]string
		min    float64 // the least value the traffic above gives it
	}{
		{"tern_artifacts_total", map[string]string{"result": "accepted"}, 1},
		{"tern_install_seconds", nil, 1},
		{"tern_hub_link_up", nil, 1},
		{"tern_hub_link_changes_total", map[string]string{"state": "down"}, 0},
		{"tern_jobs_queued_total", nil, 1},
		{"tern_jobs_deferred_total", nil, 0},
		{"tern_jobs_run_total", nil, 1},
		{"tern_jobs_offloaded_total", nil, 0},
		{"tern_jobs_deadline_misses_total", nil, 0},
		{"tern_hub_agents_connected", nil, 0},
		{"tern_hub_heartbeats_total", nil, 1},
		{"tern_rollout_waves_total", nil, 0},
		{"tern_rollouts_finished_total", map[string]string{"result": "failed"}, 0},
	} {
		if v := sample(fams, c.family, c.labels); v < c.min {
			t.Errorf("%s%v = %v, want at least %v (-1: missing)", c.family, c.labels, v, c.min)
		}
	}

	hub := start(t, bin, "hub", "--data", filepath.Join(dir, "hub"), "--listen", "127.0.0.1:0", "--leaf-listen", "127.0.0.1:0", "--admin", "127.0.0.1:0")
	hubAdmin := hub.await(t, `component=admin addr=(\S+)`)
	hub.await(t, `(Tern hub is up)`)
	hf := scrape(t, "http://"+hubAdmin)
	for _, name := range []string{"tern_hub_agents_connected", "tern_hub_heartbeats_total", "tern_rollout_waves_total", "tern_rollouts_finished_total"} {
		if sample(hf, name, nil) < 0 {
			t.Errorf("tern hub --admin: no %s", name)
		}
	}
}
