package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/gpu"
	"github.com/tern-edge/tern/jobs"
	"github.com/tern-edge/tern/wasmhost"
)

// offloadFleet starts a hub agent and two leaf agents for site names,
// with heartbeats every second; configure adjusts each leaf's config.
func offloadFleet(t *testing.T, key ed25519.PrivateKey, configure func(i int, cfg *Config) Options) (hub *testAgent, leaves []*testAgent) {
	t.Helper()
	hubCfg := testConfig(t, t.TempDir())
	hubCfg.Site = "hub"
	hubCfg.Hub.LeafListen = "127.0.0.1:0"
	hubCfg.Carbon.Offload = false
	hub = startAgent(t, hubCfg, key)
	for i := range 2 {
		cfg := testConfig(t, t.TempDir())
		cfg.Hub.URL = hub.hub.LeafURL()
		cfg.Heartbeat = artifact.Duration(time.Second)
		opts := configure(i, &cfg)
		opts.ExtraTrusted = []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
		ta := startAgentWith(t, cfg, opts)
		ta.key = key
		leaves = append(leaves, ta)
	}
	return hub, leaves
}

// TestOffloadDeferredJobs runs two sites on one hub: "dirty" (500
// gCO2/kWh) and "clean" (100). A deferred job accepted at dirty runs at
// clean and its result is served at dirty; a second one, whose run at
// clean is cut off from the hub mid-job, runs at dirty after the offload
// timeout, before its deadline.
func TestOffloadDeferredJobs(t *testing.T) {
	key := mustKey(t)
	clk := &testClock{t: time.Now().UTC()}
	ticks := make(chan time.Time)
	var proxy *linkProxy
	hub, leaves := offloadFleet(t, key, func(i int, cfg *Config) Options {
		cfg.Carbon.Region = "eu"
		if i == 0 {
			cfg.Site, cfg.Carbon.Constant = "dirty", 500
			cfg.Carbon.OffloadTimeout = artifact.Duration(2 * time.Second)
			return Options{Now: clk.Now, CarbonTicks: ticks}
		}
		cfg.Site, cfg.Carbon.Constant, cfg.Carbon.Capacity = "clean", 100, 2
		proxy = newLinkProxy(t, strings.TrimPrefix(cfg.Hub.URL, "nats-leaf://"))
		cfg.Hub.URL = "nats-leaf://" + proxy.addr
		return Options{}
	})
	dirty, clean := leaves[0], leaves[1]
	ticks <- time.Time{} // the first step has read the forecast

	deployKV(t, hub.Agent, key, "[deferrable]\nmax_delay = \"12h\"\nexpected_runtime = \"1m\"\nregions = [\"eu\"]\n", leaves...)
	waitFor(t, "dirty to learn that clean runs kv", func() bool {
		sites, _ := dirty.fleet.Sites()
		return len(sites) == 1 && sites[0].Name == "clean" && slices.Contains(sites[0].Apps, "kv") && sites[0].Forecast != nil
	})
	ticks <- time.Time{} // the planner takes the new site

	// Offloaded: planned at clean after the transfer, run there, the
	// result kept at dirty.
	resp, body := dirty.do(t, http.MethodPost, "/kv?set&colour&blue", "")
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	v := dirty.job(t, loc)
	if v.Site != "clean" || v.ExpectedIntensity == nil || *v.ExpectedIntensity != 100 || v.ExpectedGross == nil || v.ExpectedAvoided == nil {
		intensity := "none"
		if v.ExpectedIntensity != nil {
			intensity = fmt.Sprint(*v.ExpectedIntensity)
		}
		sites, _ := dirty.fleet.Sites()
		t.Fatalf("planned %+v (intensity %s), want clean at 100 g/kWh with gross and avoided apart; dirty knows %+v", v, intensity, sites)
	}
	clk.Set(*v.ScheduledAt)
	ticks <- time.Time{}
	waitFor(t, "offloaded job done", func() bool { return dirty.job(t, loc).State == jobs.StateDone })
	v = dirty.job(t, loc)
	if v.Result == nil || v.Result.Status != http.StatusOK || v.Result.Site != "clean" || v.OffloadError != "" {
		t.Fatalf("offloaded job: %+v", v)
	}
	if resp, body := dirty.do(t, http.MethodGet, v.ResultURL, ""); resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Fatalf("result at the origin: %d %q", resp.StatusCode, body)
	}
	if _, body := clean.do(t, http.MethodGet, "/kv?get&colour", ""); body != "value=blue\n" {
		t.Fatalf("clean's kv after the offloaded job: %q, want it ran there", body)
	}
	if _, body := dirty.do(t, http.MethodGet, "/kv?get&colour", ""); !strings.HasPrefix(body, "error=") {
		t.Fatalf("dirty's kv after the offloaded job: %q, want it did not run here", body)
	}
	if o := carbonStatusOf(t, dirty).Offloaded; len(o) != 1 || o[0].App != "kv" || o[0].Site != "clean" || o[0].Runs != 1 {
		t.Fatalf("dirty's status of offloaded runs: %+v", o)
	}

	// Clean loses its uplink mid-job: the answer never comes, and the
	// job runs at dirty after the offload timeout.
	var once gosync.Once
	hook := offloadHook(func(string) { once.Do(proxy.cut) })
	clean.offloadHook.Store(&hook)
	resp, _ = dirty.do(t, http.MethodPost, "/kv?set&colour&red", "")
	loc = resp.Header.Get("Location")
	v = dirty.job(t, loc)
	if v.Site != "clean" {
		t.Fatalf("second job planned at %s, want clean", v.Site)
	}
	clk.Set(*v.ScheduledAt)
	ticks <- time.Time{}
	waitFor(t, "fallback job done", func() bool { return dirty.job(t, loc).State == jobs.StateDone })
	v = dirty.job(t, loc)
	if v.Site != "dirty" || !strings.Contains(v.OffloadError, "did not answer within 2s") || v.Result == nil || v.Result.Status != http.StatusOK || v.Result.Site != "" || v.Late {
		t.Fatalf("fallback job: %+v", v)
	}
	if _, body := dirty.do(t, http.MethodGet, "/kv?get&colour", ""); body != "value=red\n" {
		t.Fatalf("dirty's kv after the fallback: %q", body)
	}
}

// TestRemoteInference has an app call a model its site's backends lack;
// another site's heartbeat offers it, so the call goes there over NATS
// and the answer is the deterministic backend's. The adapter is called as
// the tern_ai host module calls it (the wasm side is TestAICapability's),
// with the grants an install of the app records at both sites.
func TestRemoteInference(t *testing.T) {
	key := mustKey(t)
	_, leaves := offloadFleet(t, key, func(i int, cfg *Config) Options {
		cfg.Site = []string{"edge", "gpusite"}[i]
		if i == 0 {
			cfg.GPU.DetModels = []string{"det-small"}
		}
		return Options{}
	})
	edge, gpusite := leaves[0], leaves[1]
	var m artifact.Manifest
	m.Capabilities.AIModels = []string{"det-llm", "det-huge"}
	for _, ta := range leaves {
		ta.grantAI("ai", m)
	}
	waitFor(t, "edge to learn that gpusite offers det-llm", func() bool { site, _ := edge.fleet.modelSite("det-llm"); return site == "gpusite" })

	det, err := gpu.NewDetBackend(gpu.DetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want, err := det.Infer(ctx, gpu.DetDevice(), gpu.InferRequest{Model: "det-llm", Prompt: "hello edge", Params: gpu.DefaultInferParams})
	if err != nil {
		t.Fatal(err)
	}
	ai := edge.aiFor(m)
	got, err := ai.Infer(ctx, "ai", "det-llm", "hello edge", wasmhost.InferParams{})
	if err != nil || got.Text != want.Text || got.GeneratedTokenCount != want.Usage.GeneratedTokenCount {
		t.Fatalf("remote infer: %+v, %v; want %q", got, err, want.Text)
	}
	if n := gpuLeases(gpusite.Agent, "ai", "ok"); n != 1 {
		t.Errorf("leases at gpusite = %g, want 1 (the call ran there)", n)
	}
	emb, err := ai.Embed(ctx, "ai", "det-llm", []string{"a", "b"})
	if err != nil || len(emb.Embeddings) != 2 {
		t.Fatalf("remote embed: %d vectors, %v", len(emb.Embeddings), err)
	}

	// The grant is checked at the calling site first: nothing is sent.
	if _, err := ai.Infer(ctx, "ai", "det-embed", "hi", wasmhost.InferParams{}); !errors.Is(err, wasmhost.ErrAIModelNotAllowed) {
		t.Fatalf("security: a model not granted here: %v, want not allowed", err)
	}
	if n := gpuLeases(gpusite.Agent, "ai", "not_allowed"); n != 0 {
		t.Errorf("a call denied here reached gpusite %g times", n)
	}
	// The remote site checks its own grant too.
	gpusite.grantAI("ai", artifact.Manifest{})
	if _, err := ai.Infer(ctx, "ai", "det-llm", "hi", wasmhost.InferParams{}); !errors.Is(err, wasmhost.ErrAIModelNotAllowed) || !strings.Contains(err.Error(), "at site gpusite") {
		t.Fatalf("security: a model the remote site does not grant: %v, want not allowed, naming the site", err)
	}
	// No site offers the model: the local answer stands.
	if _, err := ai.Infer(ctx, "ai", "det-huge", "hi", wasmhost.InferParams{}); !errors.Is(err, wasmhost.ErrAIModelNotSupported) {
		t.Fatalf("a model nobody serves: %v, want not supported", err)
	}
}

// TestOffloadOutsideRegion runs two sites on one hub: "paris" (region eu)
// and "oregon" (region us, behind a cuttable link). A job of an app that
// may run only in us is accepted at paris because oregon runs the app,
// runs at oregon and never at paris; when oregon is cut off mid-job the
// job fails rather than run at paris; once oregon has stopped and its
// heartbeat is stale, paris refuses such jobs with 421.
func TestOffloadOutsideRegion(t *testing.T) {
	key := mustKey(t)
	clk := &testClock{t: time.Now().UTC()}
	ticks := make(chan time.Time)
	var proxy *linkProxy
	hub, leaves := offloadFleet(t, key, func(i int, cfg *Config) Options {
		if i == 0 {
			cfg.Site, cfg.Carbon.Region, cfg.Carbon.Constant = "paris", "eu", 50
			cfg.Carbon.OffloadTimeout = artifact.Duration(2 * time.Second)
			return Options{Now: clk.Now, CarbonTicks: ticks}
		}
		cfg.Site, cfg.Carbon.Region, cfg.Carbon.Constant = "oregon", "us", 300
		proxy = newLinkProxy(t, strings.TrimPrefix(cfg.Hub.URL, "nats-leaf://"))
		cfg.Hub.URL = "nats-leaf://" + proxy.addr
		return Options{}
	})
	paris, oregon := leaves[0], leaves[1]
	ticks <- time.Time{}

	deployKV(t, hub.Agent, key, "[deferrable]\nmax_delay = \"12h\"\nexpected_runtime = \"1m\"\nregions = [\"us\"]\n", leaves...)
	waitFor(t, "paris to learn that oregon runs kv", func() bool {
		sites, _ := paris.fleet.Sites()
		return len(sites) == 1 && sites[0].Name == "oregon" && slices.Contains(sites[0].Apps, "kv")
	})

	// Accepted at paris although paris may not run it; planned at
	// oregon, though its grid is dirtier; run there.
	resp, body := paris.do(t, http.MethodPost, "/kv?set&colour&green", "")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	v := paris.job(t, loc)
	if v.Site != "oregon" {
		t.Fatalf("planned %+v, want oregon", v)
	}
	clk.Set(*v.ScheduledAt)
	ticks <- time.Time{}
	waitFor(t, "job done at oregon", func() bool { return paris.job(t, loc).State == jobs.StateDone })
	if v = paris.job(t, loc); v.Result == nil || v.Result.Site != "oregon" || v.Result.Status != http.StatusOK {
		t.Fatalf("job: %+v", v)
	}
	if _, body := oregon.do(t, http.MethodGet, "/kv?get&colour", ""); body != "value=green\n" {
		t.Fatalf("oregon's kv: %q, want the job ran there", body)
	}

	// Oregon is cut off mid-job: no allowed site is left, so the job
	// fails, and paris's kv never sees it.
	var once gosync.Once
	hook := offloadHook(func(string) { once.Do(proxy.cut) })
	oregon.offloadHook.Store(&hook)
	resp, _ = paris.do(t, http.MethodPost, "/kv?set&colour&red", "")
	loc = resp.Header.Get("Location")
	v = paris.job(t, loc)
	clk.Set(*v.ScheduledAt)
	ticks <- time.Time{}
	waitFor(t, "job failed", func() bool { return paris.job(t, loc).State == jobs.StateFailed })
	v = paris.job(t, loc)
	if !strings.Contains(v.Error, "site oregon did not answer within 2s") || !strings.Contains(v.Error, `may not run at paris (region "eu")`) || v.Result != nil {
		t.Fatalf("failed job: %+v", v)
	}
	if _, body := paris.do(t, http.MethodGet, "/kv?get&colour", ""); !strings.HasPrefix(body, "error=") {
		t.Fatalf("paris's kv: %q, want the job never ran here", body)
	}

	// Oregon stops, and once its heartbeat is stale paris refuses the
	// next job. (A cut uplink is not enough: the leaf reconnects to the
	// hub's advertised address.)
	oregon.stop()
	waitFor(t, "oregon to drop out of paris's view", func() bool { sites, _ := paris.fleet.Sites(); return len(sites) == 0 })
	resp, body = paris.do(t, http.MethodPost, "/kv?set&colour&blue", "")
	if resp.StatusCode != http.StatusMisdirectedRequest || !strings.Contains(body, "may run only in regions us") || !strings.Contains(body, "no site of the fleet") {
		t.Fatalf("POST with no allowed site: %d %q", resp.StatusCode, body)
	}
}
