//go:build cgo && linux

package gpu

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
)

func openMock(t *testing.T, lib nvmlLib) (*NVML, Inventory) {
	t.Helper()
	n, err := openNVML(lib, nil)
	must(t, err)
	t.Cleanup(func() { n.Close() })
	inv, err := n.Discover()
	must(t, err)
	return n, inv
}

func TestDiscoverDGXA100(t *testing.T) {
	_, inv := openMock(t, dgxa100.New())
	equal(t, "source", inv.Source, "nvml")
	equal(t, "driver", inv.Driver, "550.54.15")
	equal(t, "nvml", inv.NVMLVersion, "12.550.54.15")
	equal(t, "cuda", inv.CUDADriver, 12040)
	equal(t, "devices", len(inv.Devices), 8)
	seen := map[string]bool{}
	for i, d := range inv.Devices {
		equal(t, "name", d.Name, "Mock NVIDIA A100-SXM4-40GB")
		equal(t, "memory", d.MemoryTotal, uint64(40<<30))
		equal(t, "compute", d.Compute, "8.0")
		equal(t, "index", d.Index, i)
		equal(t, "parent", d.Parent, "")
		if !strings.HasPrefix(d.UUID, "GPU-") || seen[d.UUID] {
			t.Fatalf("device %d UUID %q is not a distinct GPU- UUID", i, d.UUID)
		}
		seen[d.UUID] = true
		// The mock implements no telemetry call: all probes say unsupported.
		equal(t, "caps", d.Caps, Caps{Memory: true})
	}
}

func TestDiscoverMixedInventory(t *testing.T) {
	_, inv := openMock(t, dgxa100.NewWithGPUs(gpus.H100_SXM5_80GB, gpus.A30_PCIE_24GB, gpus.H100_SXM5_80GB))
	equal(t, "devices", len(inv.Devices), 3)
	for i, want := range []struct {
		name    string
		memory  uint64
		compute string
	}{
		{"NVIDIA H100 80GB HBM3", 80 << 30, "9.0"},
		{"NVIDIA A30-PCIE-24GB", 24 << 30, "8.0"},
		{"NVIDIA H100 80GB HBM3", 80 << 30, "9.0"},
	} {
		d := inv.Devices[i]
		equal(t, "name", d.Name, want.name)
		equal(t, "memory", d.MemoryTotal, want.memory)
		equal(t, "compute", d.Compute, want.compute)
	}
}

func TestDiscoverIndexOutOfRange(t *testing.T) {
	_, err := deviceAt(dgxa100.New(), 8)
	equal(t, "error", err.Error(), "nvml device 8: handle: ERROR_INVALID_ARGUMENT")
	// A count that overstates the devices skips the missing one, logged.
	srv := dgxa100.New()
	srv.DeviceGetCountFunc = func() (int, nvml.Return) { return 9, nvml.SUCCESS }
	logger, buf := testLogger()
	n, err := openNVML(srv, logger)
	must(t, err)
	inv, err := n.Discover()
	must(t, err)
	equal(t, "devices", len(inv.Devices), 8)
	if !strings.Contains(buf.String(), "nvml device 8: handle") {
		t.Fatalf("log does not name index 8:\n%s", buf)
	}
}

// Init failing means no NVML, and nothing else is called.
func TestNoLibrary(t *testing.T) {
	_, err := OpenNVML(nil, "/nonexistent/libnvidia-ml.so.1")
	isErr(t, "open", err, ErrNoNVML)
	isErr(t, "open", err, nvml.ERROR_LIBRARY_NOT_FOUND)
	equal(t, "message", err.Error(), "nvml init: no NVML: ERROR_LIBRARY_NOT_FOUND")

	var calls atomic.Int32
	lib := &mock.Interface{
		InitFunc: func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED },
		DeviceGetCountFunc: func() (int, nvml.Return) {
			calls.Add(1)
			return 0, nvml.SUCCESS
		},
	}
	_, err = openNVML(lib, nil)
	isErr(t, "driver not loaded", err, ErrNoNVML)
	equal(t, "calls after failed init", calls.Load(), int32(0))
}

// Calls that answer NOT_SUPPORTED switch the capability off; without an
// energy counter, power is integrated.
func TestCapabilityFallbacks(t *testing.T) {
	srv := dgxa100.New()
	d0 := srv.Devices[0].(*dgxa100.Device)
	d0.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	d0.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 312000, nvml.SUCCESS }
	d0.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: 73, Memory: 41}, nvml.SUCCESS }
	d0.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	d1 := srv.Devices[1].(*dgxa100.Device)
	var mj atomic.Uint64
	d1.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) { return mj.Add(31200), nvml.SUCCESS }
	d1.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 312000, nvml.SUCCESS }
	d1.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 61, nvml.SUCCESS }

	n, inv := openMock(t, srv)
	equal(t, "caps 0", inv.Devices[0].Caps, Caps{Power: true, Util: true, Memory: true})
	equal(t, "caps 1", inv.Devices[1].Caps, Caps{Energy: true, Power: true, Memory: true, Temp: true})
	m := NewMeter(nil)
	m.AddDevice(inv.Devices[0].UUID, inv.Devices[0].Caps)
	m.AddDevice(inv.Devices[1].UUID, inv.Devices[1].Caps)
	equal(t, "fallback", m.Source(inv.Devices[0].UUID), SourcePowerIntegral)
	equal(t, "counter", m.Source(inv.Devices[1].UUID), SourceCounter)

	s, err := n.Read(inv.Devices[0].UUID)
	must(t, err)
	equal(t, "power", s.PowerW, 312.0)
	equal(t, "util", s.UtilGPU, 0.73)
	equal(t, "temp not read", s.TempC, 0.0)
	s, err = n.Read(inv.Devices[1].UUID)
	must(t, err)
	equal(t, "temp", s.TempC, 61.0)
	equal(t, "energy", s.EnergyMJ, uint64(62400)) // probed once, read once

	// A lost GPU reads as ErrDeviceLost.
	d1.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) { return 0, nvml.ERROR_GPU_IS_LOST }
	_, err = n.Read(inv.Devices[1].UUID)
	isErr(t, "lost", err, ErrDeviceLost)
}

// A lost GPU is taken out of scheduling, discovery runs again, and the
// GPU comes back when discovery finds it.
func TestLostGPURediscovered(t *testing.T) {
	srv := dgxa100.NewWithGPUs(gpus.H100_SXM5_80GB)
	d0 := srv.Devices[0].(*dgxa100.Device)
	var lost atomic.Bool
	d0.GetPowerUsageFunc = func() (uint32, nvml.Return) {
		if lost.Load() {
			return 0, nvml.ERROR_GPU_IS_LOST
		}
		return 100000, nvml.SUCCESS
	}
	n, inv := openMock(t, srv)
	det, err := NewDetBackend(DetConfig{})
	must(t, err)
	var rediscovered atomic.Int32
	rediscovery := make(chan struct{}, 1)
	ticks := make(chan time.Time)
	logger, logs := testLogger()
	svc, err := NewService(ServiceConfig{
		Placements: []Placement{{Device: inv.Devices[0], Backend: det, Reader: n}},
		Telemetry:  TelemetryConfig{NewTicker: func(time.Duration) (<-chan time.Time, func()) { return ticks, func() {} }},
		Rediscover: func() (Inventory, error) {
			lost.Store(false)
			rediscovered.Add(1)
			defer func() { rediscovery <- struct{}{} }()
			return n.Discover()
		},
		Logger: logger,
	})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- svc.Run(ctx) }()
	lost.Store(true)
	ticks <- time.Now()
	<-rediscovery
	// Rediscovery found the GPU again: it is available once more.
	deadline := time.Now().Add(5 * time.Second)
	for svc.Scheduler().Stats().FreeSlots != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("GPU not back after rediscovery; log:\n%s", logs)
		}
		time.Sleep(time.Millisecond)
	}
	equal(t, "rediscoveries", rediscovered.Load(), int32(1))
	cancel()
	must(t, <-done)
	if !strings.Contains(logs.String(), "gpu lost") {
		t.Fatalf("no loss logged:\n%s", logs)
	}
}

// MIG instances of a MIG-enabled GPU are devices of their own, with the
// GPU as Parent, and the GPU is marked MIG.
func TestDiscoverMIG(t *testing.T) {
	srv := dgxa100.New()
	d0 := srv.Devices[0].(*dgxa100.Device)
	_, ret := d0.SetMigMode(nvml.DEVICE_MIG_ENABLE)
	equal(t, "set mig", ret, nvml.SUCCESS)
	info, ret := d0.GetGpuInstanceProfileInfo(nvml.GPU_INSTANCE_PROFILE_1_SLICE)
	equal(t, "profile", ret, nvml.SUCCESS)
	equal(t, "1-slice memory MiB", info.MemorySizeMB, uint64(4864))
	var migs []nvml.Device
	for i := range 2 {
		gi, ret := d0.CreateGpuInstance(&info)
		equal(t, "create gi", ret, nvml.SUCCESS)
		ciInfo, ret := gi.GetComputeInstanceProfileInfo(nvml.COMPUTE_INSTANCE_PROFILE_1_SLICE, nvml.COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
		equal(t, "ci profile", ret, nvml.SUCCESS)
		_, ret = gi.CreateComputeInstance(&ciInfo)
		equal(t, "create ci", ret, nvml.SUCCESS)
		uuid := "MIG-test-" + string(rune('a'+i))
		migs = append(migs, &mock.Device{
			GetUUIDFunc:       func() (string, nvml.Return) { return uuid, nvml.SUCCESS },
			GetNameFunc:       func() (string, nvml.Return) { return "NVIDIA A100-SXM4-40GB MIG 1g.5gb", nvml.SUCCESS },
			GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) { return nvml.Memory{Total: info.MemorySizeMB << 20}, nvml.SUCCESS },
		})
	}
	gis, ret := d0.GetGpuInstances(&info)
	equal(t, "gpu instances", ret, nvml.SUCCESS)
	equal(t, "gpu instances", len(gis), 2)
	d0.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return int(info.InstanceCount), nvml.SUCCESS }
	d0.GetMigDeviceHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i < len(migs) {
			return migs[i], nvml.SUCCESS
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
	d0.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) { return 1000, nvml.SUCCESS }

	_, inv := openMock(t, srv)
	equal(t, "devices", len(inv.Devices), 8+2)
	gpu := inv.Devices[0]
	equal(t, "gpu mig", gpu.MIG, true)
	equal(t, "gpu keeps its energy counter", gpu.Caps.Energy, true)
	for _, m := range inv.Devices[1:3] {
		equal(t, "parent", m.Parent, gpu.UUID)
		equal(t, "mig memory", m.MemoryTotal, uint64(4864<<20))
		equal(t, "mig compute from parent", m.Compute, "8.0")
		equal(t, "mig caps", m.Caps, Caps{Memory: true})
		equal(t, "metered on", m.meterKey(), gpu.UUID)
	}
	equal(t, "mig a", inv.Devices[1].UUID, "MIG-test-a")
	equal(t, "next gpu", inv.Devices[3].MIG, false)
}
