package gpu

import (
	"slices"
	"sync"
	"time"
)

// Energy sources, the values of the source label and of
// [Usage.EnergySource].
const (
	SourceCounter       = "nvml_counter"   // the device's total energy counter
	SourcePowerIntegral = "power_integral" // trapezoid integral of power samples
	SourceNone          = "none"           // neither is supported: no energy is attributed
)

// Meter attributes measured device energy to the leases that held the
// device. Grant and release only record timestamps: reading an energy
// counter can take milliseconds, and the counter only moves about every
// 100 ms, so the sampler reads it on an interval instead and splits each
// interval's energy among the leases by their time in it, evenly between
// leases that overlap. Time with no lease is idle energy, never charged
// to an app. Safe for concurrent use.
type Meter struct {
	onSettle func(Settled)

	mu      sync.Mutex
	devices map[string]*meterDevice
}

type meterDevice struct {
	source  string
	last    Sample
	started bool
	rateW   float64 // average power over the last interval
	leases  []*MeterLease
	totalJ  float64
	idleJ   float64
	resets  int
}

// MeterLease is one lease's record in a [Meter].
type MeterLease struct {
	key        string
	app        string
	model      string
	start, end time.Time
	joules     float64 // settled so far
}

// Interval is what one sample added to a device's energy.
type Interval struct {
	Device  string
	Source  string
	TotalJ  float64 // energy of the interval
	IdleJ   float64 // the part no lease overlapped
	Reset   bool    // the counter went down (driver reload)
	Settled int     // leases settled by this sample
}

// Settled is a lease's final energy.
type Settled struct {
	App, Model, Device string
	Held               time.Duration
	Joules             float64
	Source             string
}

// NewMeter returns a meter. onSettle, when not nil, is called (without
// locks held) with each lease's final energy once a sample at or after
// its end arrives.
func NewMeter(onSettle func(Settled)) *Meter {
	return &Meter{onSettle: onSettle, devices: map[string]*meterDevice{}}
}

// AddDevice starts metering a device (a whole GPU; MIG instances are
// metered on their parent) with the given caps; a device already added
// keeps its state.
func (m *Meter) AddDevice(key string, caps Caps) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.devices[key] != nil {
		return
	}
	src := SourceNone
	switch {
	case caps.Energy:
		src = SourceCounter
	case caps.Power:
		src = SourcePowerIntegral
	}
	m.devices[key] = &meterDevice{source: src}
}

// Source returns the energy source of device key, "" if not metered.
func (m *Meter) Source(key string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.devices[key]; d != nil {
		return d.source
	}
	return ""
}

// Begin records that app holds a lease on device key from t. A device
// that is not metered gets a record that never accrues energy.
func (m *Meter) Begin(key, app, model string, t time.Time) *MeterLease {
	l := &MeterLease{key: key, app: app, model: model, start: t}
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.devices[key]; d != nil {
		d.leases = append(d.leases, l)
	}
	return l
}

// End records that the lease ended at t and returns its energy so far
// plus an estimate of the part no sample has covered yet (the latest
// interval's power, shared with the leases still open). The exact value
// reaches OnSettle after the next sample.
func (m *Meter) End(l *MeterLease, t time.Time) (estimateJ float64, source string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l.end = t
	d := m.devices[l.key]
	if d == nil {
		return 0, SourceNone
	}
	est := l.joules
	if d.started && t.After(d.last.Time) {
		from := d.last.Time
		if l.start.After(from) {
			from = l.start
		}
		open := 0
		for _, o := range d.leases {
			if o.end.IsZero() || o.end.After(from) {
				open++
			}
		}
		est += d.rateW * t.Sub(from).Seconds() / float64(max(open, 1))
	}
	return est, d.source
}

// Observe feeds a device sample: the energy since the previous sample
// (the counter's delta, or the power integral) is split among the leases
// that overlapped the interval. The first sample only sets the baseline.
func (m *Meter) Observe(key string, s Sample) Interval {
	m.mu.Lock()
	d := m.devices[key]
	if d == nil {
		m.mu.Unlock()
		return Interval{Device: key, Source: SourceNone}
	}
	iv := Interval{Device: key, Source: d.source}
	if !d.started || !s.Time.After(d.last.Time) {
		if !d.started {
			d.started = true
			d.last = s
		}
		m.mu.Unlock()
		return iv
	}
	t0, t1 := d.last.Time, s.Time
	switch d.source {
	case SourceCounter:
		if s.EnergyMJ < d.last.EnergyMJ {
			// The driver reloaded and the counter restarted from zero:
			// what it reads now is the energy since then, a lower bound.
			iv.Reset = true
			d.resets++
			iv.TotalJ = float64(s.EnergyMJ) / 1000
		} else {
			iv.TotalJ = float64(s.EnergyMJ-d.last.EnergyMJ) / 1000
		}
	case SourcePowerIntegral:
		iv.TotalJ = (d.last.PowerW + s.PowerW) / 2 * t1.Sub(t0).Seconds()
	}
	d.rateW = iv.TotalJ / t1.Sub(t0).Seconds()
	iv.IdleJ = d.split(t0, t1, iv.TotalJ)
	d.totalJ += iv.TotalJ
	d.idleJ += iv.IdleJ
	d.last = s
	var settled []*MeterLease
	d.leases = slices.DeleteFunc(d.leases, func(l *MeterLease) bool {
		if !l.end.IsZero() && !l.end.After(t1) {
			settled = append(settled, l)
			return true
		}
		return false
	})
	iv.Settled = len(settled)
	src := d.source
	m.mu.Unlock()
	if m.onSettle != nil {
		for _, l := range settled {
			m.onSettle(Settled{App: l.app, Model: l.model, Device: l.key, Held: l.end.Sub(l.start), Joules: l.joules, Source: src})
		}
	}
	return iv
}

// split shares energy e over [t0, t1] among the leases overlapping it,
// at a constant rate, evenly between leases that overlap each other, and
// returns the idle part; m.mu is held.
func (d *meterDevice) split(t0, t1 time.Time, e float64) (idle float64) {
	dt := t1.Sub(t0)
	points := []time.Time{t0, t1}
	var live []*MeterLease
	for _, l := range d.leases {
		if !l.start.Before(t1) || (!l.end.IsZero() && !l.end.After(t0)) {
			continue
		}
		live = append(live, l)
		if l.start.After(t0) {
			points = append(points, l.start)
		}
		if !l.end.IsZero() && l.end.Before(t1) {
			points = append(points, l.end)
		}
	}
	if len(live) == 0 {
		return e
	}
	slices.SortFunc(points, func(a, b time.Time) int { return a.Compare(b) })
	points = slices.Compact(points)
	var charged float64
	for i := 0; i+1 < len(points); i++ {
		a, b := points[i], points[i+1]
		n := 0
		for _, l := range live {
			if !l.start.After(a) && (l.end.IsZero() || !l.end.Before(b)) {
				n++
			}
		}
		if n == 0 {
			continue
		}
		part := e * float64(b.Sub(a)) / float64(dt) / float64(n)
		for _, l := range live {
			if !l.start.After(a) && (l.end.IsZero() || !l.end.Before(b)) {
				l.joules += part
				charged += part
			}
		}
	}
	// Idle is what is left, so that leases plus idle add up to the
	// interval's energy whatever the rounding.
	return max(e-charged, 0)
}

// DeviceEnergy is a device's metered energy since metering started.
type DeviceEnergy struct {
	Source string
	TotalJ float64
	IdleJ  float64 // never charged to an app
	Resets int     // counter resets seen
}

// Device returns device key's metered energy.
func (m *Meter) Device(key string) DeviceEnergy {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.devices[key]
	if d == nil {
		return DeviceEnergy{Source: SourceNone}
	}
	return DeviceEnergy{Source: d.source, TotalJ: d.totalJ, IdleJ: d.idleJ, Resets: d.resets}
}
