//go:build nvmlhw && cgo && linux

package gpu

// Tests against a real GPU, run with
//
//	go test -tags nvmlhw -run HW -v ./gpu
//
// They skip when NVML is absent. TestHWHandOver also needs an
// OpenAI-compatible model server on the GPU: set TERN_HW_OPENAI_URL
// (e.g. http://127.0.0.1:8080) and TERN_HW_MODEL.

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// hwOpen opens the host's NVML or skips the test.
func hwOpen(t *testing.T) (*NVML, Inventory) {
	t.Helper()
	n, err := OpenNVML(nil, "")
	if errors.Is(err, ErrNoNVML) {
		t.Skipf("no NVML: %v", err)
	}
	must(t, err)
	t.Cleanup(func() { n.Close() })
	inv, err := n.Discover()
	must(t, err)
	if len(inv.Devices) == 0 {
		t.Skip("NVML has no devices")
	}
	return n, inv
}

// hwGPU returns the first whole GPU and its raw handle.
func hwGPU(t *testing.T, n *NVML, inv Inventory) (Device, nvml.Device) {
	t.Helper()
	for _, d := range inv.Devices {
		if d.Parent == "" {
			n.mu.Lock()
			h := n.handles[d.UUID].dev
			n.mu.Unlock()
			return d, h
		}
	}
	t.Skip("no whole GPU")
	return Device{}, nil
}

func TestHWInventory(t *testing.T) {
	_, inv := hwOpen(t)
	t.Logf("driver %s, NVML %s, CUDA %d, %d devices", inv.Driver, inv.NVMLVersion, inv.CUDADriver, len(inv.Devices))
	for _, d := range inv.Devices {
		t.Logf("%s %q index %d compute %s memory %d MiB pci %s parent %q mig %v caps %+v",
			d.UUID, d.Name, d.Index, d.Compute, d.MemoryTotal>>20, d.PCIBusID, d.Parent, d.MIG, d.Caps)
	}
}

// TestHWCallCost times each telemetry call, which sets the sampling
// interval and shows why the energy counter stays off the lease path.
func TestHWCallCost(t *testing.T) {
	n, inv := hwOpen(t)
	_, h := hwGPU(t, n, inv)
	const calls = 2000
	for _, c := range []struct {
		name string
		call func() nvml.Return
	}{
		{"GetPowerUsage", func() nvml.Return { _, r := h.GetPowerUsage(); return r }},
		{"GetTemperature", func() nvml.Return { _, r := h.GetTemperature(nvml.TEMPERATURE_GPU); return r }},
		{"GetUtilizationRates", func() nvml.Return { _, r := h.GetUtilizationRates(); return r }},
		{"GetMemoryInfo", func() nvml.Return { _, r := h.GetMemoryInfo(); return r }},
		{"GetComputeRunningProcesses", func() nvml.Return { _, r := h.GetComputeRunningProcesses(); return r }},
		{"GetTotalEnergyConsumption", func() nvml.Return { _, r := h.GetTotalEnergyConsumption(); return r }},
	} {
		d := make([]time.Duration, 0, calls)
		var ret nvml.Return
		for range calls {
			start := time.Now()
			ret = c.call()
			d = append(d, time.Since(start))
		}
		slices.Sort(d)
		t.Logf("%-28s %-20v p50 %9v  p99 %9v", c.name, ret, d[len(d)/2], d[len(d)*99/100])
	}
}

// TestHWEnergyGranularity reads the counter and the power every
// millisecond for 3 s: how often each changes, and the counter's delta
// against the power integral over windows of 10 ms to 1 s.
func TestHWEnergyGranularity(t *testing.T) {
	n, inv := hwOpen(t)
	d, h := hwGPU(t, n, inv)
	if !d.Caps.Energy || !d.Caps.Power {
		t.Skipf("caps %+v: no energy counter or power", d.Caps)
	}
	type pt struct {
		at time.Time
		mj uint64
		mw uint32
	}
	var pts []pt
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		mj, _ := h.GetTotalEnergyConsumption()
		mw, _ := h.GetPowerUsage()
		pts = append(pts, pt{time.Now(), mj, mw})
		time.Sleep(time.Millisecond)
	}
	var counterChanges, powerChanges int
	var gaps []time.Duration
	last := pts[0]
	for i := 1; i < len(pts); i++ {
		if pts[i].mj != pts[i-1].mj {
			counterChanges++
			gaps = append(gaps, pts[i].at.Sub(last.at))
			last = pts[i]
		}
		if pts[i].mw != pts[i-1].mw {
			powerChanges++
		}
	}
	slices.Sort(gaps)
	var median time.Duration
	if len(gaps) > 0 {
		median = gaps[len(gaps)/2]
	}
	t.Logf("%d samples; counter changed %d times (median gap %v), power %d times", len(pts), counterChanges, median, powerChanges)
	for _, w := range []time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, time.Second} {
		var i0 int
		var worst float64
		windows := 0
		for i := range pts {
			if pts[i].at.Sub(pts[i0].at) < w {
				continue
			}
			counter := float64(pts[i].mj-pts[i0].mj) / 1000
			var integral float64
			for k := i0 + 1; k <= i; k++ {
				integral += float64(pts[k-1].mw+pts[k].mw) / 2000 * pts[k].at.Sub(pts[k-1].at).Seconds()
			}
			if integral > 0 {
				worst = max(worst, abs(counter-integral)/integral)
			}
			windows++
			i0 = i
		}
		t.Logf("window %-6v %3d windows, worst |counter − power integral| / integral = %.1f%%", w, windows, worst*100)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestHWConcurrentReads reads from 8 goroutines; run with -race.
func TestHWConcurrentReads(t *testing.T) {
	n, inv := hwOpen(t)
	d, _ := hwGPU(t, n, inv)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := n.Read(d.UUID); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestHWLeaseEnergy holds 1 s leases on the real GPU through the
// Service (with the det backend, so the GPU idles) and checks that the
// metered energy adds up: attributed plus idle equals the counter.
func TestHWLeaseEnergy(t *testing.T) {
	n, inv := hwOpen(t)
	d, _ := hwGPU(t, n, inv)
	if !d.Caps.Energy && !d.Caps.Power {
		t.Skipf("caps %+v: no energy source", d.Caps)
	}
	det, err := NewDetBackend(DetConfig{Models: []string{"det-llm"}, Base: time.Second})
	must(t, err)
	s, err := NewService(ServiceConfig{Placements: []Placement{{Device: d, Backend: det, Reader: n}}})
	must(t, err)
	s.SetApp("a", AppPolicy{Models: []string{"det-llm"}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	time.Sleep(300 * time.Millisecond)
	for range 3 {
		r, err := s.Infer(ctx, "a", "det-llm", "x", InferParams{})
		must(t, err)
		t.Logf("lease held %v, energy estimate %.2f J (%s)", r.Usage.Held, r.Usage.EnergyJ, r.Usage.EnergySource)
		time.Sleep(500 * time.Millisecond)
	}
	cancel()
	must(t, <-done)
	e := s.Meter().Device(d.UUID)
	app := s.Ledger().App("a").GPUKWh * 3.6e6
	t.Logf("device %.2f J (idle %.2f J, source %s); app a %.2f J, i.e. %.1f W over its 3 s", e.TotalJ, e.IdleJ, e.Source, app, app/3)
	near(t, "attributed + idle", app+e.IdleJ, e.TotalJ, 1e-6*e.TotalJ+1e-9)
}

// TestHWHandOver runs two apps against a real model server on the GPU
// and reports queue-wait p95 and joules per call.
func TestHWHandOver(t *testing.T) {
	url, model := os.Getenv("TERN_HW_OPENAI_URL"), os.Getenv("TERN_HW_MODEL")
	if url == "" || model == "" {
		t.Skip("set TERN_HW_OPENAI_URL and TERN_HW_MODEL to a model server on the GPU")
	}
	n, inv := hwOpen(t)
	d, _ := hwGPU(t, n, inv)
	b, err := NewHTTPBackend(HTTPConfig{BaseURL: url, Models: []string{model}})
	must(t, err)
	s, err := NewService(ServiceConfig{Placements: []Placement{{Device: d, Backend: b, Reader: n}}})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	var mu sync.Mutex
	var waits []time.Duration
	var wg sync.WaitGroup
	for _, app := range []string{"a", "b"} {
		s.SetApp(app, AppPolicy{Models: []string{model}})
		wg.Go(func() {
			for range 20 {
				r, err := s.Infer(ctx, app, model, "Write one sentence about swimming pools.", InferParams{MaxTokens: 32})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				waits = append(waits, r.Usage.Wait)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond)
	cancel()
	must(t, <-done)
	slices.Sort(waits)
	o := s.Offer()
	t.Logf("queue wait p50 %v p95 %v; %.2f J per call; app a %.1f J, app b %.1f J",
		waits[len(waits)/2], waits[len(waits)*95/100], o.EnergyPerCallJ[model],
		s.Ledger().App("a").GPUKWh*3.6e6, s.Ledger().App("b").GPUKWh*3.6e6)
}
