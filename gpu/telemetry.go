package gpu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reader reads a device's telemetry. Fields the device does not support
// are left zero. A device that stopped answering is [ErrDeviceLost].
// Implementations are safe for concurrent use.
type Reader interface {
	Read(uuid string) (Sample, error)
}

// Source pairs a device with the reader that samples it.
type Source struct {
	Device Device
	Reader Reader
}

// TelemetryConfig configures a [Telemetry].
type TelemetryConfig struct {
	// Interval between samples; default 100ms, the update period of
	// NVML's energy counter and power reading.
	Interval time.Duration
	// NewTicker returns a tick channel and its stop function; nil means
	// time.NewTicker. Tests drive ticks themselves or run under synctest.
	NewTicker func(time.Duration) (<-chan time.Time, func())
	// Meter receives every sample for energy attribution; may be nil.
	Meter *Meter
	// OnLost is called (without locks held) when a device answers
	// ErrDeviceLost; the Service rediscovers. May be nil.
	OnLost func(uuid string)
	Logger *slog.Logger
	// Registerer for the per-device collectors; nil registers nothing.
	Registerer prometheus.Registerer
}

// Telemetry samples devices on an interval, feeds the energy meter and
// exports the readings as Prometheus metrics labelled by device. Safe for
// concurrent use.
type Telemetry struct {
	cfg     TelemetryConfig
	logger  *slog.Logger
	metrics *deviceMetrics
	changed chan struct{} // signalled by SetSources

	mu      sync.Mutex
	sources []Source
	latest  map[string]Sample
	lost    map[string]bool
}

// NewTelemetry returns a sampler over sources (MIG instances are skipped:
// their telemetry is their parent's).
func NewTelemetry(cfg TelemetryConfig, sources []Source) (*Telemetry, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.NewTicker == nil {
		cfg.NewTicker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newDeviceMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{cfg: cfg, logger: logger, metrics: m, changed: make(chan struct{}, 1), latest: map[string]Sample{}, lost: map[string]bool{}}
	t.SetSources(sources)
	return t, nil
}

// SetSources replaces the sampled devices, after a rediscovery.
func (t *Telemetry) SetSources(sources []Source) {
	var keep []Source
	for _, s := range sources {
		if s.Device.Parent != "" {
			continue
		}
		keep = append(keep, s)
		if t.cfg.Meter != nil {
			t.cfg.Meter.AddDevice(s.Device.UUID, s.Device.Caps)
		}
		t.metrics.device(s.Device)
	}
	t.mu.Lock()
	t.sources = keep
	t.lost = map[string]bool{}
	t.mu.Unlock()
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// hasSources reports whether there is a device to sample.
func (t *Telemetry) hasSources() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sources) > 0
}

// Run samples every Interval until ctx is done; it returns nil then.
// Without devices (a site with no GPU) it sleeps until SetSources gives
// it some, rather than waking every Interval for nothing.
func (t *Telemetry) Run(ctx context.Context) error {
	for {
		for !t.hasSources() {
			select {
			case <-ctx.Done():
				return nil
			case <-t.changed:
			}
		}
		if !t.sample(ctx) {
			return nil
		}
	}
}

// sample samples every Interval until the devices are gone (true) or ctx
// is done (false).
func (t *Telemetry) sample(ctx context.Context) bool {
	ticks, stop := t.cfg.NewTicker(t.cfg.Interval)
	defer stop()
	t.SampleOnce()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-ticks:
			if !t.hasSources() {
				return true
			}
			t.SampleOnce()
		}
	}
}

// SampleOnce reads every device once. A lost device is reported to
// OnLost once and skipped until SetSources is called again.
func (t *Telemetry) SampleOnce() {
	t.mu.Lock()
	sources := t.sources
	t.mu.Unlock()
	for _, s := range sources {
		uuid := s.Device.UUID
		t.mu.Lock()
		skip := t.lost[uuid]
		t.mu.Unlock()
		if skip {
			continue
		}
		sample, err := s.Reader.Read(uuid)
		if err != nil {
			if errors.Is(err, ErrDeviceLost) {
				t.mu.Lock()
				t.lost[uuid] = true
				t.mu.Unlock()
				t.logger.Warn("gpu lost", "device", uuid, "err", err)
				if t.cfg.OnLost != nil {
					t.cfg.OnLost(uuid)
				}
				continue
			}
			t.logger.Debug("gpu sample failed", "device", uuid, "err", err)
			continue
		}
		t.mu.Lock()
		t.latest[uuid] = sample
		t.mu.Unlock()
		var iv Interval
		if t.cfg.Meter != nil {
			iv = t.cfg.Meter.Observe(uuid, sample)
		}
		t.metrics.observe(s.Device, sample, iv)
	}
}

// Latest returns the latest sample of a device and whether there is one.
func (t *Telemetry) Latest(uuid string) (Sample, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.latest[uuid]
	return s, ok
}

// deviceMetrics are the per-device collectors; a nil one records nothing.
type deviceMetrics struct {
	devices *prometheus.GaugeVec
	power   *prometheus.GaugeVec
	util    *prometheus.GaugeVec
	memUsed *prometheus.GaugeVec
	temp    *prometheus.GaugeVec
	energy  *prometheus.CounterVec
	idle    *prometheus.CounterVec
	seen    sync.Map // device UUID → true once counted in devices
}

func newDeviceMetrics(reg prometheus.Registerer) (*deviceMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	g := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	}
	m := &deviceMetrics{
		devices: g("tern_gpu_devices", "Schedulable devices discovered, by product name.", "model"),
		power:   g("tern_gpu_power_watts", "Power draw at the latest sample.", "device"),
		util:    g("tern_gpu_utilization_ratio", "GPU utilization over the driver's last sample period.", "device"),
		memUsed: g("tern_gpu_memory_used_bytes", "Device memory in use.", "device"),
		temp:    g("tern_gpu_temperature_celsius", "GPU temperature.", "device"),
		energy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tern_gpu_energy_joules_total", Help: "Device energy metered since start, by source.",
		}, []string{"device", "source"}),
		idle: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tern_gpu_idle_energy_joules_total", Help: "Device energy while no lease was held, never charged to an app.",
		}, []string{"device"}),
	}
	var err error
	for _, p := range []**prometheus.GaugeVec{&m.devices, &m.power, &m.util, &m.memUsed, &m.temp} {
		if *p, err = register(reg, *p); err != nil {
			return nil, err
		}
	}
	if m.energy, err = register(reg, m.energy); err != nil {
		return nil, err
	}
	if m.idle, err = register(reg, m.idle); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *deviceMetrics) device(d Device) {
	if m == nil {
		return
	}
	if _, dup := m.seen.LoadOrStore(d.UUID, true); !dup {
		m.devices.WithLabelValues(d.Name).Inc()
	}
}

func (m *deviceMetrics) observe(d Device, s Sample, iv Interval) {
	if m == nil {
		return
	}
	id := d.UUID
	if d.Caps.Power {
		m.power.WithLabelValues(id).Set(s.PowerW)
	}
	if d.Caps.Util {
		m.util.WithLabelValues(id).Set(s.UtilGPU)
	}
	if d.Caps.Memory {
		m.memUsed.WithLabelValues(id).Set(float64(s.MemoryUsed))
	}
	if d.Caps.Temp {
		m.temp.WithLabelValues(id).Set(s.TempC)
	}
	if iv.Source != SourceNone && iv.Source != "" {
		m.energy.WithLabelValues(id, iv.Source).Add(iv.TotalJ)
		m.idle.WithLabelValues(id).Add(iv.IdleJ)
	}
}

// register registers c, or returns the equal collector reg already has.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register gpu metrics: %w", err)
}
