package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
	"github.com/tern-edge/tern/gpu"
)

// TestAICapability deploys the ai guest, asks it for a completion on the
// deterministic backend, and checks that an app loses the models its next
// release no longer grants.
func TestAICapability(t *testing.T) {
	key := mustKey(t)
	ta := startAgent(t, testConfig(t, t.TempDir()), key)
	hub := hubClient(t, ta.Agent)
	m, wasm := readGuest(t, "ai")
	ctx := context.Background()
	push := func(m artifact.Manifest) {
		t.Helper()
		res, err := deploy.Push(ctx, m, wasm, deploy.Options{Client: hub, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "install", func() bool { seq, _ := ta.Installed("ai"); return seq == res.Release.Sequence })
	}
	m.Capabilities.AIModels = []string{"det-llm"}
	push(m)

	det, err := gpu.NewDetBackend(gpu.DetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := det.Infer(ctx, gpu.DetDevice(), gpu.InferRequest{Model: "det-llm", Prompt: "hello edge", Params: gpu.DefaultInferParams})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := ta.get(t, "/ai?prompt=hello%20edge"); code != 200 || body != want.Text+"\n" {
		t.Fatalf("infer: %d %q, want 200 %q", code, body, want.Text+"\n")
	}
	if code, body := ta.get(t, "/ai?model=det-embed&prompt=hi"); code != 403 || !strings.HasPrefix(body, `error 1: `) || !strings.Contains(body, `does not have access to use "det-embed"`) {
		t.Fatalf("security: a model not granted: %d %q, want 403 error 1", code, body)
	}
	if n := gpuLeases(ta.Agent, "ai", "ok"); n != 1 {
		t.Errorf("tern_gpu_leases_total{app=ai,outcome=ok} = %g, want 1", n)
	}

	var offer gpu.SiteOffer
	if err := json.Unmarshal(ta.heartbeat().GPU, &offer); err != nil {
		t.Fatalf("heartbeat gpu offer: %v", err)
	}
	if !slices.Contains(offer.Models, "det-llm") || offer.Site != ta.site || offer.Slots == 0 {
		t.Errorf("offer = %+v, want det-llm at site %s with slots", offer, ta.site)
	}

	m.Version = "1.1.0"
	m.Capabilities.AIModels = nil
	push(m)
	if code, body := ta.get(t, "/ai?prompt=hello%20edge"); code != 403 || !strings.HasPrefix(body, "error 1: ") {
		t.Fatalf("security: after the grant is dropped: %d %q, want 403 error 1", code, body)
	}
}

// TestAIDisabled checks that an agent with [gpu] enabled = false denies
// every call and reports no offer.
func TestAIDisabled(t *testing.T) {
	key := mustKey(t)
	cfg := testConfig(t, t.TempDir())
	cfg.GPU.Enabled = false
	ta := startAgent(t, cfg, key)
	m, wasm := readGuest(t, "ai")
	res, err := deploy.Push(context.Background(), m, wasm, deploy.Options{Client: hubClient(t, ta.Agent), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "install", func() bool { seq, _ := ta.Installed("ai"); return seq == res.Release.Sequence })
	if code, body := ta.get(t, "/ai?prompt=hi"); code != 403 || !strings.HasPrefix(body, "error 1: ") {
		t.Fatalf("disabled: %d %q, want 403 error 1", code, body)
	}
	if hb := ta.heartbeat(); hb.GPU != nil {
		t.Errorf("heartbeat gpu = %s, want none", hb.GPU)
	}
}

func TestGPUConfig(t *testing.T) {
	base := "version = 1\n"
	tests := []struct {
		name, file, err string
	}{
		{"defaults", base, ""},
		{"full", base + `[gpu]
nvml_library = "libnvidia-ml.so.1"
det_models = ["det-small"]
det_slots = 2
max_queue_wait = "5s"
max_app_queue = 8
max_queue = 100
max_lease_time = "30s"
sample_interval = "1s"
grid_intensity = 250
pue = 1.2
[gpu.heat]
capture = 0.9
sink_kw = 40
demand = 1
displaced = "gas_boiler"
efficiency = 0.9
fuel_g_per_kwh = 183
[[gpu.backends]]
url = "http://127.0.0.1:8080"
models = ["llama3:8b"]
device = "0"
`, ""},
		{"det model name", base + "[gpu]\ndet_models = [\"small\"]\n", `gpu.det_models: "small" does not start with "det-"`},
		{"pue below 1", base + "[gpu]\npue = 0.5\n", "gpu: heat site: pue 0.5 below 1"},
		{"heat demand", base + "[gpu.heat]\ndemand = 2\n", "gpu: heat site: heat_demand 2 outside [0, 1]"},
		{"displaced kind", base + "[gpu.heat]\ndisplaced = \"coal\"\n", `gpu: displaced heating "coal": want none, gas_boiler, heat_pump or resistive`},
		{"backend url", base + "[[gpu.backends]]\nurl = \"ftp://x\"\nmodels = [\"m\"]\n", `gpu.backends[0].url = "ftp://x": want http(s)://host[:port]`},
		{"backend models", base + "[[gpu.backends]]\nurl = \"http://x\"\n", "gpu.backends[0]: models: at least one model is required"},
		{"backend det model", base + "[[gpu.backends]]\nurl = \"http://x\"\nmodels = [\"det-llm\"]\n", `gpu.backends[0].models: "det-llm": names must be non-empty and not start with "det-"`},
		{"device twice", base + "[[gpu.backends]]\nurl = \"http://x\"\nmodels = [\"a\"]\ndevice = \"0\"\n[[gpu.backends]]\nurl = \"http://y\"\nmodels = [\"b\"]\ndevice = \"0\"\n", `gpu.backends[1].device "0": already serves gpu.backends[0]`},
		{"negative queue", base + "[gpu]\nmax_queue = -1\n", "gpu.max_queue = -1: must not be negative"},
		{"unknown key", base + "[gpu]\nslots = 3\n", `unknown key "gpu.slots"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.file))
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !cfg.GPU.Enabled || !cfg.GPU.Det {
					t.Errorf("gpu = %+v: want enabled with the det backend by default", cfg.GPU)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
				t.Fatalf("err = %v, want %q", err, tt.err)
			}
		})
	}
}

// TestGPUPlacementsWithoutNVML checks that model servers are placed, and
// unmetered, on a host with no GPUs.
func TestGPUPlacementsWithoutNVML(t *testing.T) {
	cfg := defaultGPUConfig()
	cfg.Backends = []GPUBackendConfig{{URL: "http://127.0.0.1:1", Models: []string{"llama3"}, Device: "0"}}
	ps, err := gpuPlacements(cfg, gpu.Inventory{Source: "none: test"}, nil, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Device.UUID != "cpu-det-0" || ps[1].Device.UUID != "http-0" || ps[1].Reader != nil {
		t.Fatalf("placements = %+v, want det then an unmetered http-0", ps)
	}
}

// gpuLeases returns tern_gpu_leases_total for app and outcome.
func gpuLeases(a *Agent, app, outcome string) float64 {
	mfs, _ := a.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "tern_gpu_leases_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["app"] == app && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
