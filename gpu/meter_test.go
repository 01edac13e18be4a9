package gpu

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeCounter is a device whose energy counter advances by power × time
// on the synctest clock.
type fakeCounter struct {
	mu     sync.Mutex
	powerW float64
	last   time.Time
	mj     float64
	reset  bool
}

func newFakeCounter(w float64) *fakeCounter { return &fakeCounter{powerW: w, last: time.Now()} }

func (c *fakeCounter) advance() {
	now := time.Now()
	c.mj += c.powerW * now.Sub(c.last).Seconds() * 1000
	c.last = now
}

func (c *fakeCounter) setPower(w float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance()
	c.powerW = w
}

func (c *fakeCounter) Read(string) (Sample, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance()
	if c.reset {
		c.mj, c.reset = 0, false
	}
	return Sample{Time: c.last, PowerW: c.powerW, EnergyMJ: uint64(c.mj + 0.5)}, nil
}

// settledSink collects settled leases by app.
type settledSink struct {
	mu  sync.Mutex
	app map[string]float64
}

func (s *settledSink) add(st Settled) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.app == nil {
		s.app = map[string]float64{}
	}
	s.app[st.App] += st.Joules
}

func (s *settledSink) get(app string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app[app]
}

// The joules attributed to each app equal what the counter advanced by
// while it held the device; idle time goes to the idle bucket.
func TestMeterExactAttribution(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sink settledSink
		m := NewMeter(sink.add)
		dev := newFakeCounter(50) // idle draw
		m.AddDevice("GPU-0", Caps{Energy: true})
		tel, err := NewTelemetry(TelemetryConfig{Meter: m, Interval: 100 * time.Millisecond}, []Source{{Device: Device{UUID: "GPU-0", Caps: Caps{Energy: true}}, Reader: dev}})
		must(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { tel.Run(ctx) })
		synctest.Wait()

		lease := func(app string, start, length time.Duration, watts float64) {
			time.Sleep(start)
			dev.setPower(watts)
			l := m.Begin("GPU-0", app, "det-llm", time.Now())
			time.Sleep(length)
			dev.setPower(50)
			m.End(l, time.Now())
		}
		lease("a", 200*time.Millisecond, time.Second, 300)          // 300 J
		lease("b", 300*time.Millisecond, 500*time.Millisecond, 200) // 100 J
		lease("a", 0, 200*time.Millisecond, 400)                    // 80 J
		time.Sleep(300 * time.Millisecond)
		synctest.Wait() // the sampler has taken the last sample
		cancel()
		wg.Wait()
		near(t, "a joules", sink.get("a"), 380, 1e-9)
		near(t, "b joules", sink.get("b"), 100, 1e-9)
		e := m.Device("GPU-0")
		equal(t, "source", e.Source, SourceCounter)
		// 2.5 s in all, 0.8 s idle at 50 W.
		near(t, "idle", e.IdleJ, 40, 1e-9)
		near(t, "total", e.TotalJ, 520, 1e-9)
	})
}

func TestMeterSplitsOverlapsEvenly(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var sink settledSink
	m := NewMeter(sink.add)
	m.AddDevice("GPU-0", Caps{Energy: true})
	m.Observe("GPU-0", Sample{Time: at(0), EnergyMJ: 1_000_000})
	a := m.Begin("GPU-0", "a", "m", at(0))
	b := m.Begin("GPU-0", "b", "m", at(500))
	m.End(a, at(1000))
	iv := m.Observe("GPU-0", Sample{Time: at(1000), EnergyMJ: 1_400_000}) // 400 J over 1 s
	equal(t, "settled", iv.Settled, 1)
	near(t, "idle", iv.IdleJ, 0, 1e-12)
	near(t, "a", sink.get("a"), 200+100, 1e-9) // alone for 0.5 s, shared for 0.5 s
	est, src := m.End(b, at(1500))
	equal(t, "source", src, SourceCounter)
	near(t, "b estimate", est, 100+200, 1e-9)                       // 100 settled + 0.5 s at the last 400 W
	m.Observe("GPU-0", Sample{Time: at(2000), EnergyMJ: 1_600_000}) // 200 J, b holds half
	near(t, "b", sink.get("b"), 100+100, 1e-9)
	near(t, "idle", m.Device("GPU-0").IdleJ, 100, 1e-9)
}

func TestMeterCounterReset(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var sink settledSink
	m := NewMeter(sink.add)
	m.AddDevice("GPU-0", Caps{Energy: true})
	m.Observe("GPU-0", Sample{Time: t0, EnergyMJ: 9_000_000})
	l := m.Begin("GPU-0", "a", "m", t0)
	m.End(l, t0.Add(time.Second))
	// The driver reloaded: the counter restarted and now reads 250 J.
	iv := m.Observe("GPU-0", Sample{Time: t0.Add(time.Second), EnergyMJ: 250_000})
	equal(t, "reset", iv.Reset, true)
	near(t, "a", sink.get("a"), 250, 1e-9)
	equal(t, "resets", m.Device("GPU-0").Resets, 1)
}

// Without an energy counter, power samples are integrated (trapezoid).
func TestMeterPowerIntegral(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var sink settledSink
	m := NewMeter(sink.add)
	m.AddDevice("GPU-0", Caps{Power: true})
	equal(t, "source", m.Source("GPU-0"), SourcePowerIntegral)
	m.Observe("GPU-0", Sample{Time: t0, PowerW: 100})
	l := m.Begin("GPU-0", "a", "m", t0)
	m.End(l, t0.Add(2*time.Second))
	m.Observe("GPU-0", Sample{Time: t0.Add(time.Second), PowerW: 300})
	m.Observe("GPU-0", Sample{Time: t0.Add(2 * time.Second), PowerW: 300})
	near(t, "a", sink.get("a"), 200+300, 1e-9)

	m.AddDevice("GPU-1", Caps{})
	equal(t, "no telemetry", m.Source("GPU-1"), SourceNone)
	l = m.Begin("GPU-1", "b", "m", t0)
	est, src := m.End(l, t0.Add(time.Second))
	equal(t, "none source", src, SourceNone)
	near(t, "none energy", est, 0, 0)
}

// Energy while no lease is held is idle and never reaches an app.
func TestMeterIdleNeverCharged(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var sink settledSink
	m := NewMeter(sink.add)
	m.AddDevice("GPU-0", Caps{Energy: true})
	for i := range 10 {
		m.Observe("GPU-0", Sample{Time: t0.Add(time.Duration(i) * 100 * time.Millisecond), EnergyMJ: uint64(i) * 7000})
	}
	near(t, "idle", m.Device("GPU-0").IdleJ, 63, 1e-9)
	equal(t, "apps charged", len(sink.app), 0)
}
