package gpu

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func newDetService(t *testing.T, cfg ServiceConfig, det DetConfig) (*Service, *DetBackend) {
	t.Helper()
	b, err := NewDetBackend(det)
	must(t, err)
	cfg.Placements = []Placement{{Device: DetDevice(), Backend: b, Reader: b}}
	s, err := NewService(cfg)
	must(t, err)
	return s, b
}

func TestServiceInfer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		heat := HeatSite{PUE: 1.05, HeatCapture: 0.9, HeatDemand: 1, Displaced: gas}
		s, _ := newDetService(t, ServiceConfig{
			Site: "exmouth", Registerer: reg, Heat: heat,
			GridIntensity: func(time.Time) float64 { return 150 },
		}, DetConfig{Base: 100 * time.Millisecond, IdleW: 50, ActiveW: 250})
		s.SetApp("a", AppPolicy{Models: []string{"det-llm", "det-embed"}})
		s.SetApp("c", AppPolicy{Models: []string{"llama2-chat"}})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { s.Run(ctx) })
		defer wg.Wait()
		defer cancel()
		synctest.Wait()

		_, err := s.Infer(ctx, "b", "det-llm", "hi", InferParams{})
		isErr(t, "ungranted app", err, ErrModelNotAllowed)
		equal(t, "message", err.Error(), `infer det-llm for b: model not allowed: the component does not have access to use "det-llm"; add it to ai_models in the manifest`)
		_, err = s.Infer(ctx, "a", "llama2-chat", "hi", InferParams{})
		isErr(t, "ungranted model", err, ErrModelNotAllowed)
		_, err = s.Infer(ctx, "c", "llama2-chat", "hi", InferParams{})
		isErr(t, "granted, not served", err, ErrModelNotSupported)
		_, err = s.Infer(ctx, "a", "det-llm", "hi", InferParams{TopP: 2})
		isErr(t, "bad params", err, ErrInvalidInput)

		res, err := s.Infer(ctx, "a", "det-llm", "warm the pool", InferParams{MaxTokens: 8})
		must(t, err)
		instant, _ := NewDetBackend(DetConfig{}) // same output, no time spent
		want, _ := instant.Infer(context.Background(), DetDevice(), InferRequest{Model: "det-llm", Prompt: "warm the pool", Params: InferParams{MaxTokens: 8}})
		equal(t, "text", res.Text, want.Text)
		equal(t, "held", res.Usage.Held, 100*time.Millisecond)
		equal(t, "wait", res.Usage.Wait, time.Duration(0))
		equal(t, "device", res.Usage.Device, DetDevice().UUID)
		equal(t, "source", res.Usage.EnergySource, SourceCounter)

		emb, err := s.Embed(ctx, "a", "det-embed", []string{"x"})
		must(t, err)
		equal(t, "dim", len(emb.Embeddings[0]), DetEmbeddingDim)

		time.Sleep(300 * time.Millisecond) // samples settle both leases
		synctest.Wait()                    // and the sampler has taken the last one
		// Two 100 ms leases at 250 W, aligned with the 100 ms samples.
		near(t, "app energy", s.Ledger().App("a").GPUKWh*3.6e6, 50, 1e-6)
		near(t, "app gross", s.Ledger().App("a").GrossG, 50/3.6e6*1.05*150, 1e-9)
		near(t, "idle", s.Meter().Device(DetDevice().UUID).IdleJ, 50*0.3, 1e-6)

		o := s.Offer()
		equal(t, "site", o.Site, "exmouth")
		equal(t, "models", strings.Join(o.Models, ","), "det-embed,det-llm")
		equal(t, "slots", o.FreeSlots, 1)
		near(t, "energy per call", o.EnergyPerCallJ["det-llm"], 25, 1e-6)
		near(t, "erf", o.ERF, 0.9/1.05, 1e-9)
		near(t, "ere", o.ERE, 1.05-0.9, 1e-9)

		equal(t, "ok leases", testutil.ToFloat64(s.metrics.leases.WithLabelValues("a", "ok")), 2.0)
		equal(t, "not allowed", testutil.ToFloat64(s.metrics.leases.WithLabelValues("a", "not_allowed")), 1.0)
		equal(t, "generated tokens", testutil.ToFloat64(s.metrics.tokensVec.WithLabelValues("a", "det-llm", "generated")), 8.0)
		near(t, "app energy metric", testutil.ToFloat64(s.metrics.appEnergy.WithLabelValues("a")), 50, 1e-6)
		n, err := testutil.GatherAndCount(reg, "tern_gpu_power_watts", "tern_gpu_energy_joules_total", "tern_gpu_idle_energy_joules_total", "tern_gpu_devices")
		must(t, err)
		equal(t, "device series", n, 4)
	})
}

// Every backend call runs under MaxLeaseTime, and the slot comes back.
func TestServiceBackendDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := newDetService(t, ServiceConfig{MaxLeaseTime: 50 * time.Millisecond}, DetConfig{Base: time.Second})
		s.SetApp("a", AppPolicy{Models: []string{"det-llm"}})
		start := time.Now()
		_, err := s.Infer(context.Background(), "a", "det-llm", "x", InferParams{})
		isErr(t, "deadline", err, context.DeadlineExceeded)
		equal(t, "reason", Reason(err), "deadline")
		equal(t, "took", time.Since(start), 50*time.Millisecond)
		equal(t, "slot back", s.Scheduler().Stats().FreeSlots, 1)
	})
}

// Weights from the manifest reach the scheduler.
func TestServiceWeights(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := newDetService(t, ServiceConfig{Scheduler: SchedulerConfig{MaxQueueWait: time.Hour}}, DetConfig{Base: 10 * time.Millisecond})
		s.SetApp("heavy", AppPolicy{Models: []string{"det-llm"}, Weight: 3})
		s.SetApp("light", AppPolicy{Models: []string{"det-llm"}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var mu sync.Mutex
		held := map[string]time.Duration{}
		var wg sync.WaitGroup
		for _, app := range []string{"heavy", "light"} {
			for range 3 {
				wg.Go(func() {
					for {
						r, err := s.Infer(ctx, app, "det-llm", "x", InferParams{})
						if err != nil {
							return
						}
						mu.Lock()
						held[app] += r.Usage.Held
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		share := float64(held["heavy"]) / float64(held["heavy"]+held["light"])
		near(t, "heavy share", share, 0.75, 0.75*0.05)
	})
}

// Without NVML the host has no GPUs: one log line, no crash.
func TestOpenHostWithoutNVML(t *testing.T) {
	logger, logs := testLogger()
	inv, n := OpenHost(logger, "/nonexistent/libnvidia-ml.so.1")
	if n != nil {
		t.Fatal("got an NVML handle without a library")
	}
	if !strings.HasPrefix(inv.Source, "none: ") || len(inv.Devices) != 0 {
		t.Fatalf("inventory %+v", inv)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	equal(t, "log lines", len(lines), 1)
	if !strings.Contains(lines[0], "no GPUs") || !strings.Contains(lines[0], "no NVML") {
		t.Fatalf("log line %q", lines[0])
	}
}
