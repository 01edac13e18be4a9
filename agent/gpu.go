package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/gpu"
	"github.com/tern-edge/tern/wasmhost"
)

// GPUConfig is the [gpu] section: the inference service that guests reach
// through tern_ai (docs/GPU.md). Zero fields take the defaults named on
// each.
type GPUConfig struct {
	// Enabled runs the inference service; false denies every tern_ai
	// call. Default true.
	Enabled bool `toml:"enabled"`
	// NVMLLibrary is the path of libnvidia-ml.so.1; empty means the
	// system's. Without NVML the agent logs "no GPUs" once and goes on.
	NVMLLibrary string `toml:"nvml_library"`
	// Det runs the deterministic CPU backend (models named det-*), so that
	// apps and tests run without a GPU. Default true.
	Det bool `toml:"det"`
	// DetModels are the models the CPU backend serves; each starts with
	// "det-". Empty means det-llm and det-embed.
	DetModels []string `toml:"det_models"`
	// DetSlots is how many calls the CPU backend runs at once; default 4.
	DetSlots int `toml:"det_slots"`
	// Backends are OpenAI-compatible model servers on the site.
	Backends []GPUBackendConfig `toml:"backends"`
	// MaxQueueWait is the longest a call waits for a device before the
	// guest gets "busy"; default 10s.
	MaxQueueWait artifact.Duration `toml:"max_queue_wait"`
	// MaxAppQueue is how many calls one app may have waiting; default 64.
	MaxAppQueue int `toml:"max_app_queue"`
	// MaxQueue is how many calls may wait in all; default 1024.
	MaxQueue int `toml:"max_queue"`
	// MaxLeaseTime is the deadline of one backend call; default 60s.
	MaxLeaseTime artifact.Duration `toml:"max_lease_time"`
	// SampleInterval is how often devices are sampled; default 100ms.
	SampleInterval artifact.Duration `toml:"sample_interval"`
	// GridIntensity is the grid's carbon intensity in gCO2e/kWh, for the
	// emissions accounted to apps; 0 accounts none.
	GridIntensity float64 `toml:"grid_intensity"`
	// PUE is the site's power usage effectiveness; default 1.
	PUE float64 `toml:"pue"`
	// Heat describes what happens to the site's waste heat.
	Heat GPUHeatConfig `toml:"heat"`
}

// GPUBackendConfig is one OpenAI-compatible model server ([[gpu.backends]]).
type GPUBackendConfig struct {
	// URL of the server, e.g. "http://127.0.0.1:8080" (llama.cpp server,
	// vLLM, Ollama).
	URL string `toml:"url"`
	// Models it serves, as apps name them in ai_models.
	Models []string `toml:"models"`
	// Chat sends prompts to /v1/chat/completions instead of
	// /v1/completions.
	Chat bool `toml:"chat"`
	// Device is the GPU the server runs on, by UUID ("GPU-…", "MIG-…") or
	// NVML index ("0"), so that its energy is metered. Empty, or a device
	// NVML does not report, leaves the server unmetered.
	Device string `toml:"device"`
	// Slots is how many calls the server takes at once; default 1.
	Slots int `toml:"slots"`
}

// GPUHeatConfig is [gpu.heat]: heat reuse, for the accounting of avoided
// emissions (never netted against gross ones).
type GPUHeatConfig struct {
	// ITOverhead is server energy over GPU energy, ≥ 1; 0 means 1.
	ITOverhead float64 `toml:"it_overhead"`
	// Capture is the fraction of IT energy captured as usable heat.
	Capture float64 `toml:"capture"`
	// SinkKW is the most heat the sink takes, in kW; 0 means no cap.
	SinkKW float64 `toml:"sink_kw"`
	// Demand in [0, 1] is whether the sink wants heat now.
	Demand float64 `toml:"demand"`
	// Displaced is what the heat replaces: none, gas_boiler, heat_pump
	// or resistive. Default none.
	Displaced string `toml:"displaced"`
	// Efficiency is the boiler's efficiency or the heat pump's COP.
	Efficiency float64 `toml:"efficiency"`
	// FuelGPerKWh is the boiler fuel's emission factor.
	FuelGPerKWh float64 `toml:"fuel_g_per_kwh"`
}

// defaultGPUConfig is [gpu] when the file says nothing: on, with the CPU
// backend, so that `tern up` serves AI apps on any machine.
func defaultGPUConfig() GPUConfig {
	return GPUConfig{Enabled: true, Det: true}
}

// heatSite returns the section's heat parameters as the gpu package
// takes them.
func (c GPUConfig) heatSite() gpu.HeatSite {
	kind := c.Heat.Displaced
	if kind == "" {
		kind = gpu.DisplacedNone
	}
	pue := c.PUE
	if pue == 0 {
		pue = 1
	}
	return gpu.HeatSite{
		PUE: pue, ITOverhead: c.Heat.ITOverhead, HeatCapture: c.Heat.Capture,
		HeatSinkKW: c.Heat.SinkKW, HeatDemand: c.Heat.Demand,
		Displaced: gpu.Displaced{Kind: kind, Efficiency: c.Heat.Efficiency, FuelGPerKWh: c.Heat.FuelGPerKWh},
	}
}

// validate checks [gpu]; the error names the first bad field.
func (c GPUConfig) validate() error {
	for _, m := range c.DetModels {
		if !strings.HasPrefix(m, gpu.DetPrefix) {
			return fmt.Errorf("gpu.det_models: %q does not start with %q", m, gpu.DetPrefix)
		}
	}
	for name, n := range map[string]int{"det_slots": c.DetSlots, "max_app_queue": c.MaxAppQueue, "max_queue": c.MaxQueue} {
		if n < 0 {
			return fmt.Errorf("gpu.%s = %d: must not be negative", name, n)
		}
	}
	for name, d := range map[string]artifact.Duration{"max_queue_wait": c.MaxQueueWait, "max_lease_time": c.MaxLeaseTime, "sample_interval": c.SampleInterval} {
		if d < 0 {
			return fmt.Errorf("gpu.%s = %s: must not be negative", name, d)
		}
	}
	if c.GridIntensity < 0 {
		return fmt.Errorf("gpu.grid_intensity = %g: must not be negative", c.GridIntensity)
	}
	if err := c.heatSite().Validate(); err != nil {
		return fmt.Errorf("gpu: %w", err)
	}
	devices := map[string]int{}
	for i, b := range c.Backends {
		u, err := url.Parse(b.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("gpu.backends[%d].url = %q: want http(s)://host[:port]", i, b.URL)
		}
		if len(b.Models) == 0 {
			return fmt.Errorf("gpu.backends[%d]: models: at least one model is required", i)
		}
		for _, m := range b.Models {
			if m == "" || strings.HasPrefix(m, gpu.DetPrefix) {
				return fmt.Errorf("gpu.backends[%d].models: %q: names must be non-empty and not start with %q", i, m, gpu.DetPrefix)
			}
		}
		if b.Slots < 0 {
			return fmt.Errorf("gpu.backends[%d].slots = %d: must not be negative", i, b.Slots)
		}
		if b.Device != "" {
			if j, dup := devices[b.Device]; dup {
				return fmt.Errorf("gpu.backends[%d].device %q: already serves gpu.backends[%d]", i, b.Device, j)
			}
			devices[b.Device] = i
		}
	}
	return nil
}

// gpuHost is the agent's inference service and what it was built from.
type gpuHost struct {
	svc  *gpu.Service
	inv  gpu.Inventory
	nvml *gpu.NVML // nil without NVML
}

// openGPU discovers the host's GPUs and builds the inference service from
// [gpu]. No NVML is not an error: the service runs with the CPU backend
// and the configured model servers, unmetered.
func (a *Agent) openGPU() error {
	cfg := a.cfg.GPU
	if !cfg.Enabled {
		a.logger.Info("inference disabled: every tern_ai call is denied")
		return nil
	}
	logger := a.logger.With("component", "gpu")
	inv, nvml := gpu.OpenHost(logger, cfg.NVMLLibrary)
	if nvml != nil {
		a.onUndo(func() {
			if err := nvml.Close(); err != nil {
				logger.Warn("close nvml", "err", err)
			}
		})
	}
	placements, err := gpuPlacements(cfg, inv, nvml, logger)
	if err != nil {
		return err
	}
	sc := gpu.ServiceConfig{
		Site:       a.site,
		Placements: placements,
		Scheduler: gpu.SchedulerConfig{
			MaxQueueWait: time.Duration(cfg.MaxQueueWait),
			MaxAppQueue:  cfg.MaxAppQueue,
			MaxQueue:     cfg.MaxQueue,
		},
		Telemetry:    gpu.TelemetryConfig{Interval: time.Duration(cfg.SampleInterval)},
		MaxLeaseTime: time.Duration(cfg.MaxLeaseTime),
		Heat:         cfg.heatSite(),
		Logger:       logger,
		Registerer:   a.reg,
	}
	if cfg.GridIntensity > 0 {
		intensity := cfg.GridIntensity
		sc.GridIntensity = func(time.Time) float64 { return intensity }
	}
	if nvml != nil {
		sc.Rediscover = nvml.Discover
	}
	svc, err := gpu.NewService(sc)
	if err != nil {
		return fmt.Errorf("gpu: %w", err)
	}
	a.gpu = &gpuHost{svc: svc, inv: inv, nvml: nvml}
	var models []string
	for _, p := range placements {
		if p.Backend != nil {
			models = append(models, p.Backend.Models()...)
		}
	}
	slices.Sort(models)
	logger.Info("inference ready", "gpus", len(inv.Devices), "models", slices.Compact(models))
	return nil
}

// gpuPlacements binds the configured backends to devices: the CPU backend
// to its virtual device, each model server to the GPU it names (metered
// through NVML) or to a virtual device of its own (unmetered), and every
// other GPU NVML found to no backend, so that it is still sampled.
func gpuPlacements(cfg GPUConfig, inv gpu.Inventory, nvml *gpu.NVML, logger *slog.Logger) ([]gpu.Placement, error) {
	var out []gpu.Placement
	if cfg.Det {
		det, err := gpu.NewDetBackend(gpu.DetConfig{Models: cfg.DetModels})
		if err != nil {
			return nil, fmt.Errorf("gpu: %w", err)
		}
		slots := cfg.DetSlots
		if slots == 0 {
			slots = 4
		}
		out = append(out, gpu.Placement{Device: gpu.DetDevice(), Backend: det, Reader: det, Slots: slots})
	}
	used := map[string]bool{}
	for i, b := range cfg.Backends {
		be, err := gpu.NewHTTPBackend(gpu.HTTPConfig{BaseURL: b.URL, Models: b.Models, Chat: b.Chat})
		if err != nil {
			return nil, fmt.Errorf("gpu.backends[%d]: %w", i, err)
		}
		p := gpu.Placement{Backend: be, Slots: b.Slots}
		if dev, ok := findDevice(inv, b.Device); ok && !used[dev.UUID] {
			used[dev.UUID] = true
			p.Device = dev
			if dev.Parent == "" && nvml != nil {
				p.Reader = nvml
			}
		} else {
			if b.Device != "" {
				logger.Warn("model server's device not found; its energy is not metered",
					"backend", b.URL, "device", b.Device)
			}
			p.Device = gpu.Device{UUID: "http-" + strconv.Itoa(i), Name: "model server " + b.URL}
		}
		out = append(out, p)
	}
	for _, d := range inv.Devices {
		if used[d.UUID] || d.Parent != "" || nvml == nil {
			continue
		}
		// A GPU without a backend is still sampled, and a MIG parent is
		// where its instances' energy is read.
		out = append(out, gpu.Placement{Device: d, Reader: nvml})
	}
	return out, nil
}

// findDevice finds a device by UUID, or a whole GPU by NVML index.
func findDevice(inv gpu.Inventory, name string) (gpu.Device, bool) {
	if name == "" {
		return gpu.Device{}, false
	}
	idx, err := strconv.Atoi(name)
	for _, d := range inv.Devices {
		if d.UUID == name || (err == nil && d.Parent == "" && d.Index == idx) {
			return d, true
		}
	}
	return gpu.Device{}, false
}

// runGPU runs the service's sampling and rediscovery until ctx ends.
func (a *Agent) runGPU(ctx context.Context) error {
	if a.gpu == nil {
		return nil
	}
	return a.gpu.svc.Run(ctx)
}

// aiFor returns what an app with manifest m reaches through tern_ai: the
// inference service when the manifest grants models and the agent runs
// one, nil (every call denied) otherwise.
func (a *Agent) aiFor(m artifact.Manifest) wasmhost.AI {
	if a.gpu == nil || len(m.Capabilities.AIModels) == 0 {
		return nil
	}
	return aiAdapter{svc: a.gpu.svc, remote: remoteAI{a}, fleet: a.fleet}
}

// grantAI records app's models and fair-share weight once its release is
// installed; a release without ai_models revokes what an earlier one
// granted.
func (a *Agent) grantAI(app string, m artifact.Manifest) {
	if a.gpu == nil {
		return
	}
	if len(m.Capabilities.AIModels) == 0 {
		a.gpu.svc.RemoveApp(app)
		return
	}
	a.gpu.svc.SetApp(app, gpu.AppPolicy{Models: m.Capabilities.AIModels, Weight: m.Capabilities.GPUWeight})
	if a.fleet != nil {
		// Models missing here may be offered elsewhere.
		a.fleet.nudge()
	}
}

// gpuOffer is the site's GPU offer for the heartbeat, or nil without an
// inference service.
func (a *Agent) gpuOffer() json.RawMessage {
	if a.gpu == nil {
		return nil
	}
	b, err := json.Marshal(a.gpu.svc.Offer())
	if err != nil {
		a.logger.Warn("gpu offer", "err", err)
		return nil
	}
	return b
}

// aiAdapter serves wasmhost's tern_ai calls from the gpu service, and
// from another site's (remote) when no backend here serves the model but
// a site's heartbeat offers it.
type aiAdapter struct {
	svc    *gpu.Service
	remote gpu.RemoteTransport
	fleet  *fleetView // nil: no remote sites
}

var _ wasmhost.AI = aiAdapter{}

// remoteSite returns the site to send a call that failed here with err
// to: only a model no backend here serves goes elsewhere, after the
// service checked the app's grant here.
func (ad aiAdapter) remoteSite(err error, model string) (string, bool) {
	if ad.fleet == nil || ad.remote == nil || !(errors.Is(err, gpu.ErrModelNotSupported) || errors.Is(err, gpu.ErrNoDevice)) {
		return "", false
	}
	return ad.fleet.modelSite(model)
}

// Infer runs one inference for app.
func (ad aiAdapter) Infer(ctx context.Context, app, model, prompt string, p wasmhost.InferParams) (wasmhost.InferResult, error) {
	res, err := ad.svc.Infer(ctx, app, model, prompt, gpu.InferParams(p))
	if site, ok := ad.remoteSite(err, model); ok {
		ctx, cancel := withDefaultTimeout(ctx, remoteCallTimeout)
		defer cancel()
		var r gpu.InferResult
		r, _, err = ad.remote.InferRemote(ctx, site, app, gpu.InferRequest{Model: model, Prompt: prompt, Params: gpu.InferParams(p)})
		res = gpu.Result{InferResult: r}
	}
	if err != nil {
		return wasmhost.InferResult{}, aiError(err)
	}
	return wasmhost.InferResult{
		Text:                res.Text,
		PromptTokenCount:    res.InferResult.Usage.PromptTokenCount,
		GeneratedTokenCount: res.InferResult.Usage.GeneratedTokenCount,
	}, nil
}

// Embed computes embeddings for app.
func (ad aiAdapter) Embed(ctx context.Context, app, model string, texts []string) (wasmhost.EmbedResult, error) {
	res, err := ad.svc.Embed(ctx, app, model, texts)
	if site, ok := ad.remoteSite(err, model); ok {
		ctx, cancel := withDefaultTimeout(ctx, remoteCallTimeout)
		defer cancel()
		var r gpu.EmbedResult
		r, _, err = ad.remote.EmbedRemote(ctx, site, app, gpu.EmbedRequest{Model: model, Texts: texts})
		res = gpu.EmbedOutcome{EmbedResult: r}
	}
	if err != nil {
		return wasmhost.EmbedResult{}, aiError(err)
	}
	return wasmhost.EmbedResult{Embeddings: res.Embeddings, PromptTokenCount: res.EmbedResult.Usage.PromptTokenCount}, nil
}

// withDefaultTimeout bounds ctx by d unless it has a deadline already.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// aiError gives a gpu error the wasmhost sentinel its guest code comes
// from, keeping its message and its gpu sentinel. Context errors and
// anything unknown (a runtime error) pass unchanged.
func aiError(err error) error {
	var busy *gpu.BusyError
	switch {
	case errors.As(err, &busy):
		return &wasmhost.AIBusyError{RetryAfter: busy.RetryAfter, Err: err}
	case errors.Is(err, gpu.ErrQueueFull), errors.Is(err, gpu.ErrQueueTimeout):
		return kindError{wasmhost.ErrAIBusy, err}
	case errors.Is(err, gpu.ErrModelNotAllowed):
		return kindError{wasmhost.ErrAIModelNotAllowed, err}
	case errors.Is(err, gpu.ErrModelNotSupported), errors.Is(err, gpu.ErrNoDevice):
		return kindError{wasmhost.ErrAIModelNotSupported, err}
	case errors.Is(err, gpu.ErrInvalidInput):
		return kindError{wasmhost.ErrAIInvalidInput, err}
	}
	return err
}

// kindError is err, also matching kind.
type kindError struct{ kind, err error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.kind, e.err} }
