// Package gpu shares a site's accelerators between apps and counts what
// that costs: it discovers GPUs and MIG instances through NVML, samples
// their telemetry, hands out short leases with per-app fair share,
// attributes measured energy to the apps that held the leases, and keeps
// the heat-reuse accounting a GPU site advertises to the fleet.
//
// The host module for wasm guests calls [Service.Infer] and
// [Service.Embed]: each call acquires a lease, runs the model on the
// leased device's backend under a deadline, releases the lease and
// records tokens, GPU-seconds and joules for the app. Backends implement
// [InferenceBackend]: the deterministic CPU backend ([DetBackend], models
// named det-*), an OpenAI-compatible HTTP backend ([HTTPBackend]) for a
// model server on the site, and a remote backend over a transport that
// another package provides ([RemoteTransport]).
//
// It is the only package that imports go-nvml. NVML needs cgo; a build
// without cgo, a machine without the NVIDIA library or without a loaded
// driver all mean "no GPUs" ([ErrNoNVML]): the CPU backend still works.
// docs/GPU.md describes the design and the measured overheads.
package gpu
