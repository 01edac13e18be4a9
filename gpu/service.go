package gpu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Placement binds a device to the backend that runs models on it and the
// reader that samples it.
type Placement struct {
	Device Device
	// Backend runs the device's models; nil for a device that is only
	// metered (a MIG-enabled GPU whose instances are placed separately).
	Backend InferenceBackend
	// Reader samples the device; nil when nothing can (no energy is
	// attributed then). MIG instances need none: their parent is read.
	Reader   Reader
	Slots    int // concurrent leases, default 1
	Resident int // models the backend keeps loaded, default 1
}

// ServiceConfig configures a [Service].
type ServiceConfig struct {
	Site       string
	Placements []Placement
	Scheduler  SchedulerConfig
	Telemetry  TelemetryConfig // Meter, OnLost and Registerer are set by the Service
	// MaxLeaseTime is the deadline of every backend call; default 60s. A
	// lease is never revoked: a backend that ignores its deadline keeps
	// the slot until it returns.
	MaxLeaseTime time.Duration
	// Heat is the site's facility and heat-reuse parameters.
	Heat HeatSite
	// GridIntensity returns the grid's intensity in gCO2e/kWh at a time;
	// nil means 0 (no gross emissions are accounted).
	GridIntensity func(time.Time) float64
	// Rediscover is called after a device is lost; devices it returns
	// again become available again. Nil means lost devices stay lost.
	Rediscover func() (Inventory, error)
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// AppPolicy is what an app's manifest grants it.
type AppPolicy struct {
	Models []string // models the app may call; everything else is denied
	Weight float64  // fair-share weight; 0 means 1
}

// Result is the outcome of one call through the Service.
type Result struct {
	InferResult
	Usage Usage // EnergyJ is an estimate until the next sample settles it
}

// EmbedOutcome is the outcome of one embedding call through the Service.
type EmbedOutcome struct {
	EmbedResult
	Usage Usage
}

// Service is the API the wasm host module calls: it checks the app's
// grant, takes a fair-share lease, runs the backend under a deadline,
// releases the lease and accounts tokens, GPU-seconds, energy and
// emissions to the app. Safe for concurrent use.
type Service struct {
	cfg       ServiceConfig
	logger    *slog.Logger
	sched     *Scheduler
	meter     *Meter
	telemetry *Telemetry
	ledger    *Ledger
	metrics   *appMetrics
	backends  map[string]InferenceBackend // by device UUID
	lost      chan string

	mu       sync.Mutex
	policies map[string]AppPolicy
	perCall  map[string]float64 // model → EWMA joules per call
}

// NewService builds the scheduler, meter and telemetry over the
// placements. It starts nothing; Run samples telemetry.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.MaxLeaseTime <= 0 {
		cfg.MaxLeaseTime = 60 * time.Second
	}
	if cfg.GridIntensity == nil {
		cfg.GridIntensity = func(time.Time) float64 { return 0 }
	}
	if cfg.Heat.PUE == 0 {
		cfg.Heat.PUE = 1
	}
	if err := cfg.Heat.Validate(); err != nil {
		return nil, fmt.Errorf("gpu service: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg: cfg, logger: logger, ledger: NewLedger(), backends: map[string]InferenceBackend{},
		lost: make(chan string, 16), policies: map[string]AppPolicy{}, perCall: map[string]float64{},
	}
	var err error
	if s.metrics, err = newAppMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	s.meter = NewMeter(s.settle)
	var pools []Pool
	var sources []Source
	for _, p := range cfg.Placements {
		if p.Reader != nil && p.Device.Parent == "" {
			sources = append(sources, Source{Device: p.Device, Reader: p.Reader})
		}
		if p.Backend == nil || p.Device.MIG {
			continue
		}
		s.backends[p.Device.UUID] = p.Backend
		pools = append(pools, Pool{Device: p.Device, Models: p.Backend.Models(), Slots: p.Slots, Resident: p.Resident})
	}
	if s.sched, err = NewScheduler(cfg.Scheduler, pools); err != nil {
		return nil, fmt.Errorf("gpu service: %w", err)
	}
	tc := cfg.Telemetry
	tc.Meter, tc.Registerer, tc.Logger = s.meter, cfg.Registerer, logger
	tc.OnLost = s.onLost
	if s.telemetry, err = NewTelemetry(tc, sources); err != nil {
		return nil, err
	}
	return s, nil
}

// Scheduler returns the service's lease scheduler.
func (s *Service) Scheduler() *Scheduler { return s.sched }

// Meter returns the service's energy meter.
func (s *Service) Meter() *Meter { return s.meter }

// Telemetry returns the service's sampler.
func (s *Service) Telemetry() *Telemetry { return s.telemetry }

// Ledger returns the per-app and per-site emissions ledger.
func (s *Service) Ledger() *Ledger { return s.ledger }

// SetApp records what app's manifest grants; calling it again replaces
// the grant. Apps never set are denied every model.
func (s *Service) SetApp(app string, p AppPolicy) {
	p.Models = slices.Clone(p.Models)
	s.mu.Lock()
	s.policies[app] = p
	s.mu.Unlock()
	w := p.Weight
	if w == 0 {
		w = 1
	}
	s.sched.SetWeight(app, w)
}

// Granted reports whether any app is granted a model.
func (s *Service) Granted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.policies) > 0
}

// RemoveApp revokes every grant of app.
func (s *Service) RemoveApp(app string) {
	s.mu.Lock()
	delete(s.policies, app)
	s.mu.Unlock()
}

// allowed returns ErrModelNotAllowed, with Spin's wording, unless app may
// use model.
func (s *Service) allowed(app, model string) error {
	s.mu.Lock()
	p, ok := s.policies[app]
	s.mu.Unlock()
	if ok && slices.Contains(p.Models, model) {
		return nil
	}
	return fmt.Errorf("%w: the component does not have access to use %q; add it to ai_models in the manifest", ErrModelNotAllowed, model)
}

// Infer runs one inference for app, Spin's llm.infer: zero params take
// Spin's defaults. It returns [ErrModelNotAllowed] for a model the app
// was not granted, [ErrModelNotSupported] for one no backend here serves,
// a [*BusyError] when no lease came in time, ctx's error if it ended
// while queued, and otherwise the backend's result or error.
func (s *Service) Infer(ctx context.Context, app, model, prompt string, params InferParams) (Result, error) {
	if err := s.allowed(app, model); err != nil {
		s.metrics.outcome(app, err)
		return Result{}, fmt.Errorf("infer %s for %s: %w", model, app, err)
	}
	p := params.WithDefaults()
	if err := p.validate(); err != nil {
		s.metrics.outcome(app, err)
		return Result{}, fmt.Errorf("infer %s for %s: %w", model, app, err)
	}
	var res InferResult
	u, err := s.run(ctx, app, model, func(ctx context.Context, b InferenceBackend, d Device) error {
		var err error
		res, err = b.Infer(ctx, d, InferRequest{Model: model, Prompt: prompt, Params: p})
		return err
	})
	if err != nil {
		return Result{Usage: u}, fmt.Errorf("infer %s for %s: %w", model, app, err)
	}
	s.metrics.tokens(app, model, res.Usage.PromptTokenCount, res.Usage.GeneratedTokenCount)
	return Result{InferResult: res, Usage: u}, nil
}

// Embed computes embeddings for app, Spin's llm.generate-embeddings, with
// the errors of [Service.Infer].
func (s *Service) Embed(ctx context.Context, app, model string, texts []string) (EmbedOutcome, error) {
	if err := s.allowed(app, model); err != nil {
		s.metrics.outcome(app, err)
		return EmbedOutcome{}, fmt.Errorf("embed %s for %s: %w", model, app, err)
	}
	var res EmbedResult
	u, err := s.run(ctx, app, model, func(ctx context.Context, b InferenceBackend, d Device) error {
		var err error
		res, err = b.Embed(ctx, d, EmbedRequest{Model: model, Texts: texts})
		return err
	})
	if err != nil {
		return EmbedOutcome{Usage: u}, fmt.Errorf("embed %s for %s: %w", model, app, err)
	}
	s.metrics.tokens(app, model, res.Usage.PromptTokenCount, 0)
	return EmbedOutcome{EmbedResult: res, Usage: u}, nil
}

// run holds a lease around call: Acquire, backend under MaxLeaseTime,
// Release, accounting.
func (s *Service) run(ctx context.Context, app, model string, call func(context.Context, InferenceBackend, Device) error) (Usage, error) {
	lease, err := s.sched.Acquire(ctx, app, model)
	if err != nil {
		s.metrics.outcome(app, err)
		return Usage{}, err
	}
	dev := lease.Device()
	ml := s.meter.Begin(dev.meterKey(), app, model, lease.Granted())
	bctx, cancel := context.WithTimeout(ctx, s.cfg.MaxLeaseTime)
	err = call(bctx, s.backends[dev.UUID], dev)
	cancel()
	u := lease.Release()
	u.EnergyJ, u.EnergySource = s.meter.End(ml, u.Released)
	if err != nil && !errorsIsKnown(err) {
		err = fmt.Errorf("%w: %w", ErrBackend, err)
	}
	s.metrics.lease(app, u, err)
	return u, err
}

// errorsIsKnown reports whether err already carries a sentinel callers
// branch on, or a context error.
func errorsIsKnown(err error) bool {
	for _, t := range []error{ErrBackend, ErrModelNotSupported, ErrInvalidInput, context.DeadlineExceeded, context.Canceled} {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// settle accounts a lease's final energy: emissions, gross and avoided
// apart, to the app and the site, and the model's energy per call.
func (s *Service) settle(st Settled) {
	s.mu.Lock()
	heat := s.cfg.Heat
	s.mu.Unlock()
	e, err := heat.Account(st.Joules, st.Held, s.cfg.GridIntensity(time.Now()))
	if err != nil {
		s.logger.Error("gpu accounting", "app", st.App, "err", err)
		return
	}
	s.ledger.Add(st.App, e)
	s.metrics.energy(st.App, s.cfg.Site, heat.Displaced.Kind, st.Joules, e)
	s.mu.Lock()
	if old, ok := s.perCall[st.Model]; ok {
		s.perCall[st.Model] = old + (st.Joules-old)/16
	} else {
		s.perCall[st.Model] = st.Joules
	}
	s.mu.Unlock()
}

// Offer returns what the site advertises in its heartbeat now.
func (s *Service) Offer() SiteOffer {
	st := s.sched.Stats()
	site := s.ledger.Site()
	facility := site.FacilityKWh
	o := SiteOffer{
		Site: s.cfg.Site, Time: time.Now(), Models: st.Models, Slots: st.Slots, FreeSlots: st.FreeSlots,
		Queued: st.Queued, QueueWaitP95: st.WaitP95, EnergyPerCallJ: map[string]float64{},
		ERF: ERF(facility, site.HeatDeliveredKWh), ERE: ERE(facility, site.ITKWh, site.HeatDeliveredKWh),
	}
	s.mu.Lock()
	o.HeatSite = s.cfg.Heat
	for m, j := range s.perCall {
		o.EnergyPerCallJ[m] = j
	}
	s.mu.Unlock()
	return o
}

// SetHeatDemand updates u, whether the heat sink wants heat now, in [0, 1].
func (s *Service) SetHeatDemand(u float64) error {
	if u < 0 || u > 1 {
		return fmt.Errorf("heat demand %g outside [0, 1]", u)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.Heat.HeatDemand = u
	return nil
}

// onLost takes a lost device and its MIG instances out of scheduling and
// asks Run to rediscover.
func (s *Service) onLost(uuid string) {
	for _, p := range s.cfg.Placements {
		if p.Device.UUID == uuid || p.Device.Parent == uuid {
			s.sched.SetAvailable(p.Device.UUID, false)
		}
	}
	select {
	case s.lost <- uuid:
	default: // a rediscovery is already pending
	}
}

// Run samples telemetry and rediscovers lost devices until ctx is done,
// then closes the scheduler. It returns nil when ctx ends.
func (s *Service) Run(ctx context.Context) error {
	defer s.sched.Close()
	var wg sync.WaitGroup
	wg.Go(func() { s.telemetry.Run(ctx) })
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case uuid := <-s.lost:
			s.rediscover(uuid)
		}
	}
}

// rediscover runs discovery again after uuid was lost, and brings back
// the placements whose devices it finds.
func (s *Service) rediscover(uuid string) {
	if s.cfg.Rediscover == nil {
		s.logger.Warn("gpu lost; no rediscovery configured", "device", uuid)
		return
	}
	inv, err := s.cfg.Rediscover()
	if err != nil {
		s.logger.Warn("gpu rediscovery failed", "device", uuid, "err", err)
		return
	}
	present := map[string]bool{}
	for _, d := range inv.Devices {
		present[d.UUID] = true
	}
	var sources []Source
	for _, p := range s.cfg.Placements {
		// Virtual devices (the CPU backend's) are never lost.
		nvmlDev := strings.HasPrefix(p.Device.UUID, "GPU-") || strings.HasPrefix(p.Device.UUID, "MIG-")
		if nvmlDev && !present[p.Device.UUID] {
			continue
		}
		if p.Reader != nil && p.Device.Parent == "" {
			sources = append(sources, Source{Device: p.Device, Reader: p.Reader})
		}
		s.sched.SetAvailable(p.Device.UUID, true)
	}
	s.telemetry.SetSources(sources)
	s.logger.Info("gpu rediscovered", "lost", uuid, "devices", len(inv.Devices), "back", present[uuid])
}

// OpenHost opens the host's NVML and discovers its devices. Without NVML
// (no cgo, no library, no driver) it logs one line, "no GPUs", with the
// reason, and returns an empty inventory whose Source says why and a nil
// *NVML: the caller goes on with the CPU backend.
func OpenHost(logger *slog.Logger, libraryPath string) (Inventory, *NVML) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n, err := OpenNVML(logger, libraryPath)
	if err == nil {
		var inv Inventory
		if inv, err = n.Discover(); err == nil {
			logger.Info("gpus discovered", "devices", len(inv.Devices), "driver", inv.Driver, "cuda", inv.CUDADriver)
			return inv, n
		}
		n.Close()
	}
	logger.Info("no GPUs", "reason", err)
	return Inventory{Source: "none: " + err.Error(), Time: time.Now()}, nil
}
