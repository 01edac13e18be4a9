package gpu

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// DetPrefix starts the name of every model the deterministic backend
// serves; it never answers for any other model.
const DetPrefix = "det-"

// DetEmbeddingDim is the length of the deterministic backend's embeddings,
// that of all-MiniLM-L6-v2.
const DetEmbeddingDim = 384

// DetConfig configures a [DetBackend]. The zero value answers instantly
// and draws no power.
type DetConfig struct {
	// Models served; each must start with "det-". Empty means
	// ["det-llm", "det-embed"].
	Models []string
	// Base and PerToken model how long a call takes: Base plus PerToken
	// for each prompt and generated token. The backend sleeps for it, so
	// tests under testing/synctest see leases of exact length.
	Base, PerToken time.Duration
	// IdleW and ActiveW are the virtual device's power draw when idle and
	// while at least one call runs; they drive its energy counter.
	IdleW, ActiveW float64
	// Now is the clock of the energy counter; nil means time.Now.
	Now func() time.Time
}

// DetBackend is a deterministic CPU backend for tests and for running
// Tern without a GPU: its output is a pure function of model, prompt and
// parameters. It is also a [Reader] for its virtual device, whose energy
// counter follows the configured power draw.
type DetBackend struct {
	cfg    DetConfig
	models []string

	mu       sync.Mutex
	start    time.Time // when the counter started
	inflight int
	busy     time.Duration // time with at least one call running, up to last
	last     time.Time     // when busy was last brought up to date
}

var (
	_ InferenceBackend = (*DetBackend)(nil)
	_ Reader           = (*DetBackend)(nil)
)

// NewDetBackend returns a deterministic backend, or an error naming a
// model that does not start with "det-".
func NewDetBackend(cfg DetConfig) (*DetBackend, error) {
	models := cfg.Models
	if len(models) == 0 {
		models = []string{"det-llm", "det-embed"}
	}
	for _, m := range models {
		if !strings.HasPrefix(m, DetPrefix) {
			return nil, fmt.Errorf("det backend model %q: name must start with %q", m, DetPrefix)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	now := cfg.Now()
	return &DetBackend{cfg: cfg, models: slices.Clone(models), start: now, last: now}, nil
}

// DetDevice is the virtual device the deterministic backend runs on.
func DetDevice() Device {
	return Device{
		UUID: "cpu-det-0",
		Name: "deterministic CPU backend",
		Caps: Caps{Energy: true, Power: true},
	}
}

// Name returns "det".
func (b *DetBackend) Name() string { return "det" }

// Models lists the det-* models served.
func (b *DetBackend) Models() []string { return slices.Clone(b.models) }

func (b *DetBackend) serves(model string) bool {
	return strings.HasPrefix(model, DetPrefix) && slices.Contains(b.models, model)
}

// detWords are what the deterministic backend writes with.
var detWords = strings.Fields(`the a of to and in is it that for on with as was at by
an be this from or are which have not but had has were they their one all would
there we what so up out if about who get can more when will no time very sun heat
river stone light cloud field energy water wind garden`)

// Infer returns min(max_tokens, 16) words drawn from a PCG seeded with
// SHA-256 of the model, prompt and parameters.
func (b *DetBackend) Infer(ctx context.Context, dev Device, req InferRequest) (InferResult, error) {
	if !b.serves(req.Model) {
		return InferResult{}, fmt.Errorf("det infer %q: %w", req.Model, ErrModelNotSupported)
	}
	p := req.Params.WithDefaults()
	n := min(int(p.MaxTokens), 16)
	h := sha256.New()
	h.Write([]byte(req.Model))
	h.Write([]byte{0})
	h.Write([]byte(req.Prompt))
	var pb [24]byte
	binary.LittleEndian.PutUint32(pb[0:], p.MaxTokens)
	binary.LittleEndian.PutUint32(pb[4:], math.Float32bits(p.RepeatPenalty))
	binary.LittleEndian.PutUint32(pb[8:], p.RepeatPenaltyLastNTokenCount)
	binary.LittleEndian.PutUint32(pb[12:], math.Float32bits(p.Temperature))
	binary.LittleEndian.PutUint32(pb[16:], p.TopK)
	binary.LittleEndian.PutUint32(pb[20:], math.Float32bits(p.TopP))
	h.Write(pb[:])
	rng := detRand(h.Sum(nil))
	words := make([]string, n)
	for i := range words {
		words[i] = detWords[rng.IntN(len(detWords))]
	}
	prompt := uint32(len(strings.Fields(req.Prompt)))
	if err := b.work(ctx, int(prompt)+n); err != nil {
		return InferResult{}, fmt.Errorf("det infer %q: %w", req.Model, err)
	}
	return InferResult{
		Text:  strings.Join(words, " "),
		Usage: InferUsage{PromptTokenCount: prompt, GeneratedTokenCount: uint32(n)},
	}, nil
}

// Embed returns, for each text, a unit vector of [DetEmbeddingDim]
// values drawn from a PCG seeded with SHA-256 of the model and the text.
func (b *DetBackend) Embed(ctx context.Context, dev Device, req EmbedRequest) (EmbedResult, error) {
	if !b.serves(req.Model) {
		return EmbedResult{}, fmt.Errorf("det embed %q: %w", req.Model, ErrModelNotSupported)
	}
	res := EmbedResult{Embeddings: make([][]float32, len(req.Texts))}
	for i, text := range req.Texts {
		sum := sha256.Sum256([]byte(req.Model + "\x00" + text))
		rng := detRand(sum[:])
		v := make([]float32, DetEmbeddingDim)
		var norm float64
		for j := range v {
			x := rng.NormFloat64()
			v[j] = float32(x)
			norm += x * x
		}
		norm = math.Sqrt(norm)
		for j := range v {
			v[j] = float32(float64(v[j]) / norm)
		}
		res.Embeddings[i] = v
		res.Usage.PromptTokenCount += uint32(len(strings.Fields(text)))
	}
	if err := b.work(ctx, int(res.Usage.PromptTokenCount)); err != nil {
		return EmbedResult{}, fmt.Errorf("det embed %q: %w", req.Model, err)
	}
	return res, nil
}

func detRand(seed []byte) *rand.Rand {
	return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[0:8]), binary.LittleEndian.Uint64(seed[8:16])))
}

// work spends the modelled duration of a call over tokens tokens, with
// the virtual device marked busy, or returns ctx's error if it ends first.
func (b *DetBackend) work(ctx context.Context, tokens int) error {
	d := b.cfg.Base + time.Duration(tokens)*b.cfg.PerToken
	if d <= 0 {
		return ctx.Err()
	}
	b.mu.Lock()
	b.advance(b.cfg.Now())
	b.inflight++
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.advance(b.cfg.Now())
		b.inflight--
		b.mu.Unlock()
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// advance brings busy up to now; b.mu is held.
func (b *DetBackend) advance(now time.Time) {
	if now.After(b.last) {
		if b.inflight > 0 {
			b.busy += now.Sub(b.last)
		}
		b.last = now
	}
}

// Read returns the virtual device's power and energy counter: IdleW all
// the time plus ActiveW−IdleW while a call runs.
func (b *DetBackend) Read(uuid string) (Sample, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	b.advance(now)
	total := now.Sub(b.start).Seconds()
	joules := b.cfg.IdleW*total + (b.cfg.ActiveW-b.cfg.IdleW)*b.busy.Seconds()
	power := b.cfg.IdleW
	if b.inflight > 0 {
		power = b.cfg.ActiveW
	}
	return Sample{Time: now, PowerW: power, EnergyMJ: uint64(math.Round(joules * 1000))}, nil
}
