//go:build cgo && linux

package gpu

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// nvmlLib is the part of NVML that discovery uses. nvml.Interface and
// go-nvml's mocks (pkg/nvml/mock, pkg/nvml/mock/dgxa100) satisfy it.
type nvmlLib interface {
	Init() nvml.Return
	Shutdown() nvml.Return
	SystemGetDriverVersion() (string, nvml.Return)
	SystemGetNVMLVersion() (string, nvml.Return)
	SystemGetCudaDriverVersion() (int, nvml.Return)
	DeviceGetCount() (int, nvml.Return)
	DeviceGetHandleByIndex(int) (nvml.Device, nvml.Return)
}

// NVML is an initialized NVML library: it discovers devices and reads
// their telemetry as a [Reader]. Safe for concurrent use.
type NVML struct {
	lib    nvmlLib
	logger *slog.Logger

	mu      sync.Mutex
	handles map[string]nvmlHandle // by UUID, from the latest discovery
	closed  bool
}

type nvmlHandle struct {
	dev  nvml.Device
	caps Caps
}

var _ Reader = (*NVML)(nil)

// OpenNVML loads the NVIDIA management library (libraryPath, or the
// system's libnvidia-ml.so.1 when empty) and initializes it. Any failure
// to initialize wraps [ErrNoNVML], with NVML's reason: no library, no
// loaded driver, a driver/library mismatch. No other NVML call is made
// unless Init succeeded, since calling into an unloaded library kills
// the process.
func OpenNVML(logger *slog.Logger, libraryPath string) (*NVML, error) {
	var opts []nvml.LibraryOption
	if libraryPath != "" {
		opts = append(opts, nvml.WithLibraryPath(libraryPath))
	}
	return openNVML(nvml.New(opts...), logger)
}

func openNVML(lib nvmlLib, logger *slog.Logger) (*NVML, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvml init: %w: %w", ErrNoNVML, ret)
	}
	return &NVML{lib: lib, logger: logger, handles: map[string]nvmlHandle{}}, nil
}

// Close shuts NVML down; later calls do nothing.
func (n *NVML) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	n.handles = nil
	if ret := n.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvml shutdown: %w", ret)
	}
	return nil
}

// Discover lists the GPUs and, on GPUs with MIG enabled, their MIG
// instances, and probes which telemetry each supports. A GPU that fails
// to answer is logged and left out; only failing to count devices is an
// error.
func (n *NVML) Discover() (Inventory, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return Inventory{}, fmt.Errorf("nvml discover: %w", ErrClosed)
	}
	inv := Inventory{Source: "nvml", Time: time.Now()}
	var ret nvml.Return
	if inv.Driver, ret = n.lib.SystemGetDriverVersion(); ret != nvml.SUCCESS {
		n.logger.Debug("nvml driver version", "err", ret)
	}
	if inv.NVMLVersion, ret = n.lib.SystemGetNVMLVersion(); ret != nvml.SUCCESS {
		n.logger.Debug("nvml version", "err", ret)
	}
	if inv.CUDADriver, ret = n.lib.SystemGetCudaDriverVersion(); ret != nvml.SUCCESS {
		n.logger.Debug("nvml cuda driver version", "err", ret)
	}
	count, ret := n.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return Inventory{}, fmt.Errorf("nvml device count: %w", ret)
	}
	handles := map[string]nvmlHandle{}
	for i := range count {
		gpu, err := deviceAt(n.lib, i)
		if err != nil {
			n.logger.Warn("gpu skipped", "index", i, "err", err)
			continue
		}
		handles[gpu.dev.UUID] = nvmlHandle{dev: gpu.handle, caps: gpu.dev.Caps}
		inv.Devices = append(inv.Devices, gpu.dev)
		for _, mig := range migDevices(gpu, n.logger) {
			handles[mig.dev.UUID] = nvmlHandle{dev: mig.handle, caps: mig.dev.Caps}
			inv.Devices = append(inv.Devices, mig.dev)
		}
	}
	n.handles = handles
	return inv, nil
}

type found struct {
	dev    Device
	handle nvml.Device
}

// deviceAt describes the GPU at index i.
func deviceAt(lib nvmlLib, i int) (found, error) {
	h, ret := lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		return found{}, fmt.Errorf("nvml device %d: handle: %w", i, ret)
	}
	d, err := describe(h)
	if err != nil {
		return found{}, fmt.Errorf("nvml device %d: %w", i, err)
	}
	d.Index = i
	if cur, _, ret := callMig(h); ret == nvml.SUCCESS && cur == nvml.DEVICE_MIG_ENABLE {
		d.MIG = true
		// Utilization is not supported on MIG-enabled GPUs, and the
		// per-process view belongs to the instances.
		d.Caps.Util, d.Caps.Procs = false, false
	}
	return found{dev: d, handle: h}, nil
}

// describe reads a device's identity and probes its telemetry.
func describe(h nvml.Device) (Device, error) {
	var d Device
	var ret nvml.Return
	if d.UUID, ret = h.GetUUID(); ret != nvml.SUCCESS {
		return d, fmt.Errorf("uuid: %w", ret)
	}
	if d.Name, ret = h.GetName(); ret != nvml.SUCCESS {
		return d, fmt.Errorf("%s: name: %w", d.UUID, ret)
	}
	var maj, mnr int
	if guard(func() (r nvml.Return) { maj, mnr, r = h.GetCudaComputeCapability(); return }) == nvml.SUCCESS {
		d.Compute = fmt.Sprintf("%d.%d", maj, mnr)
	}
	var mem nvml.Memory
	if guard(func() (r nvml.Return) { mem, r = h.GetMemoryInfo(); return }) == nvml.SUCCESS {
		d.MemoryTotal = mem.Total
		d.Caps.Memory = true
	}
	var pci nvml.PciInfo
	if guard(func() (r nvml.Return) { pci, r = h.GetPciInfo(); return }) == nvml.SUCCESS {
		d.PCIBusID = cString(pci.BusId[:])
	}
	d.Caps.Energy = probe(func() nvml.Return { _, r := h.GetTotalEnergyConsumption(); return r })
	d.Caps.Power = probe(func() nvml.Return { _, r := h.GetPowerUsage(); return r })
	d.Caps.Util = probe(func() nvml.Return { _, r := h.GetUtilizationRates(); return r })
	d.Caps.Temp = probe(func() nvml.Return { _, r := h.GetTemperature(nvml.TEMPERATURE_GPU); return r })
	d.Caps.Procs = probe(func() nvml.Return { _, r := h.GetComputeRunningProcesses(); return r })
	return d, nil
}

// migDevices lists the MIG instances of a MIG-enabled GPU, each charged
// to the GPU's energy through Parent.
func migDevices(gpu found, logger *slog.Logger) []found {
	if !gpu.dev.MIG {
		return nil
	}
	var n int
	ret := guard(func() nvml.Return { var r nvml.Return; n, r = gpu.handle.GetMaxMigDeviceCount(); return r })
	if ret != nvml.SUCCESS {
		logger.Warn("mig instances not listed", "gpu", gpu.dev.UUID, "err", ret)
		return nil
	}
	var out []found
	for j := range n {
		var h nvml.Device
		ret := guard(func() nvml.Return { var r nvml.Return; h, r = gpu.handle.GetMigDeviceHandleByIndex(j); return r })
		if ret == nvml.ERROR_NOT_FOUND || ret == nvml.ERROR_INVALID_ARGUMENT {
			continue // no instance in this slot
		}
		if ret != nvml.SUCCESS {
			logger.Warn("mig instance skipped", "gpu", gpu.dev.UUID, "slot", j, "err", ret)
			continue
		}
		d, err := describe(h)
		if err != nil {
			logger.Warn("mig instance skipped", "gpu", gpu.dev.UUID, "slot", j, "err", err)
			continue
		}
		d.Index = gpu.dev.Index
		d.Parent = gpu.dev.UUID
		if d.Compute == "" {
			d.Compute = gpu.dev.Compute
		}
		// A MIG instance has no power or energy reading of its own: its
		// leases are metered on the parent.
		d.Caps = Caps{Memory: d.Caps.Memory, Procs: d.Caps.Procs}
		out = append(out, found{dev: d, handle: h})
	}
	return out
}

func callMig(h nvml.Device) (cur, pending int, ret nvml.Return) {
	ret = guard(func() nvml.Return { var r nvml.Return; cur, pending, r = h.GetMigMode(); return r })
	return cur, pending, ret
}

// probe reports whether a telemetry call works on this device.
func probe(call func() nvml.Return) bool {
	return guard(call) == nvml.SUCCESS
}

// guard runs an NVML call, turning a panic into ERROR_NOT_SUPPORTED. Real
// NVML never panics; go-nvml's generated mocks panic for every method a
// test did not fill in, and a missing method means "not supported".
func guard(call func() nvml.Return) (ret nvml.Return) {
	defer func() {
		if recover() != nil {
			ret = nvml.ERROR_NOT_SUPPORTED
		}
	}()
	return call()
}

func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

// Read samples the telemetry a device supports. GPU_IS_LOST is
// [ErrDeviceLost]; a failed power or energy read is an error, so that
// the meter never sees a made-up counter value; the other readings are
// best effort.
func (n *NVML) Read(uuid string) (Sample, error) {
	n.mu.Lock()
	h, ok := n.handles[uuid]
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return Sample{}, fmt.Errorf("nvml read %s: %w", uuid, ErrClosed)
	}
	if !ok {
		return Sample{}, fmt.Errorf("nvml read %s: not discovered: %w", uuid, ErrDeviceLost)
	}
	s := Sample{Time: time.Now()}
	lost := func(what string, ret nvml.Return) error {
		if ret == nvml.ERROR_GPU_IS_LOST {
			return fmt.Errorf("nvml read %s: %s: %w: %w", uuid, what, ErrDeviceLost, ret)
		}
		return nil
	}
	if h.caps.Energy {
		mj, ret := h.dev.GetTotalEnergyConsumption()
		if ret != nvml.SUCCESS {
			if err := lost("energy", ret); err != nil {
				return Sample{}, err
			}
			return Sample{}, fmt.Errorf("nvml read %s: energy: %w", uuid, ret)
		}
		s.EnergyMJ = mj
	}
	if h.caps.Power {
		mw, ret := h.dev.GetPowerUsage()
		if ret != nvml.SUCCESS {
			if err := lost("power", ret); err != nil {
				return Sample{}, err
			}
			return Sample{}, fmt.Errorf("nvml read %s: power: %w", uuid, ret)
		}
		s.PowerW = float64(mw) / 1000
	}
	if h.caps.Util {
		u, ret := h.dev.GetUtilizationRates()
		if err := lost("utilization", ret); err != nil {
			return Sample{}, err
		}
		if ret == nvml.SUCCESS {
			s.UtilGPU, s.UtilMemory = float64(u.Gpu)/100, float64(u.Memory)/100
		}
	}
	if h.caps.Memory {
		m, ret := h.dev.GetMemoryInfo()
		if err := lost("memory", ret); err != nil {
			return Sample{}, err
		}
		if ret == nvml.SUCCESS {
			s.MemoryUsed, s.MemoryTotal = m.Used, m.Total
		}
	}
	if h.caps.Temp {
		c, ret := h.dev.GetTemperature(nvml.TEMPERATURE_GPU)
		if err := lost("temperature", ret); err != nil {
			return Sample{}, err
		}
		if ret == nvml.SUCCESS {
			s.TempC = float64(c)
		}
	}
	return s, nil
}
