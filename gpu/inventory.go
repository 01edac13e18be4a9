package gpu

import "time"

// Inventory is what discovery found on this machine.
type Inventory struct {
	Driver      string    // driver version, e.g. "550.54.15"; "" without NVML
	NVMLVersion string    // e.g. "12.550.54.15"
	CUDADriver  int       // CUDA driver API version, e.g. 12040 for 12.4
	Source      string    // "nvml", or "none: <reason>" when there are no GPUs
	Devices     []Device  // whole GPUs without MIG, and MIG instances
	Time        time.Time // when discovery ran
}

// Device is one schedulable accelerator: a whole GPU, a MIG instance, or
// the virtual CPU device of the deterministic backend.
type Device struct {
	UUID        string // "GPU-…", "MIG-…", or "cpu-…" for a virtual device
	Name        string // product name as NVML reports it
	Index       int    // NVML index of the GPU (of the parent for MIG)
	PCIBusID    string // "" when unknown
	Compute     string // CUDA compute capability, e.g. "8.0"; "" for CPU
	MemoryTotal uint64 // bytes
	// Parent is the UUID of the GPU a MIG instance belongs to, "" for a
	// whole GPU. Energy of MIG instances is metered on the parent.
	Parent string
	// MIG is set on a GPU with MIG enabled: it is metered, but leases go
	// to its instances, which are listed as devices of their own.
	MIG  bool
	Caps Caps // telemetry the device supports, probed once at discovery
}

// Caps says which telemetry a device supports. A call that returned
// NOT_SUPPORTED at discovery is never made again for that device.
type Caps struct {
	Energy bool // total energy counter (Volta and later)
	Power  bool // power draw; integrated into energy when Energy is false
	Util   bool // utilization rates (not on MIG-enabled GPUs)
	Memory bool // memory used and total
	Temp   bool // GPU temperature
	Procs  bool // running compute processes
}

// meterKey is the device whose energy a lease on d is charged from: the
// parent GPU for a MIG instance, since MIG instances have no counter.
func (d Device) meterKey() string {
	if d.Parent != "" {
		return d.Parent
	}
	return d.UUID
}

// Sample is one reading of a device's telemetry. Fields the device does
// not support (see [Caps]) are zero.
type Sample struct {
	Time        time.Time
	PowerW      float64 // watts
	EnergyMJ    uint64  // millijoules since the driver loaded
	UtilGPU     float64 // 0..1 over the driver's last sample period
	UtilMemory  float64 // 0..1
	MemoryUsed  uint64  // bytes
	MemoryTotal uint64  // bytes
	TempC       float64 // degrees Celsius
}
