package gpu

import (
	"context"
	"fmt"
)

// InferenceBackend runs models on a device. Implementations are safe for
// concurrent use; the scheduler bounds how many calls run on a device at
// once. Infer and Embed honour ctx's deadline, which the [Service] always
// sets. A model the backend does not serve is [ErrModelNotSupported]; a
// bad request is [ErrInvalidInput]; anything else wraps [ErrBackend].
type InferenceBackend interface {
	// Name identifies the backend in logs and metrics, e.g. "det", "http".
	Name() string
	// Models lists the models the backend serves.
	Models() []string
	// Infer completes a prompt on dev.
	Infer(ctx context.Context, dev Device, req InferRequest) (InferResult, error)
	// Embed computes one embedding per text on dev.
	Embed(ctx context.Context, dev Device, req EmbedRequest) (EmbedResult, error)
}

// InferParams are the sampling parameters of an inference, in the order
// and meaning of Spin's llm interface (inferencing-params). A zero field
// takes the default of [DefaultInferParams].
type InferParams struct {
	MaxTokens                    uint32
	RepeatPenalty                float32
	RepeatPenaltyLastNTokenCount uint32
	Temperature                  float32
	TopK                         uint32
	TopP                         float32
}

// DefaultInferParams are Spin's defaults for absent parameters: 100
// tokens, repeat penalty 1.1 over the last 64 tokens, temperature 0.8,
// top-k 40, top-p 0.9.
var DefaultInferParams = InferParams{
	MaxTokens:                    100,
	RepeatPenalty:                1.1,
	RepeatPenaltyLastNTokenCount: 64,
	Temperature:                  0.8,
	TopK:                         40,
	TopP:                         0.9,
}

// WithDefaults returns p with every zero field set to its default.
func (p InferParams) WithDefaults() InferParams {
	d := DefaultInferParams
	if p.MaxTokens != 0 {
		d.MaxTokens = p.MaxTokens
	}
	if p.RepeatPenalty != 0 {
		d.RepeatPenalty = p.RepeatPenalty
	}
	if p.RepeatPenaltyLastNTokenCount != 0 {
		d.RepeatPenaltyLastNTokenCount = p.RepeatPenaltyLastNTokenCount
	}
	if p.Temperature != 0 {
		d.Temperature = p.Temperature
	}
	if p.TopK != 0 {
		d.TopK = p.TopK
	}
	if p.TopP != 0 {
		d.TopP = p.TopP
	}
	return d
}

// MaxTokensLimit is the most tokens one inference may ask for, as on
// Fermyon Cloud; it keeps one lease from holding a device for minutes.
const MaxTokensLimit = 1024

// validate reports parameters no backend should be asked to run.
func (p InferParams) validate() error {
	switch {
	case p.MaxTokens > MaxTokensLimit:
		return fmt.Errorf("%w: max_tokens %d over the limit %d", ErrInvalidInput, p.MaxTokens, MaxTokensLimit)
	case p.Temperature < 0 || p.Temperature > 2:
		return fmt.Errorf("%w: temperature %g outside [0, 2]", ErrInvalidInput, p.Temperature)
	case p.TopP < 0 || p.TopP > 1:
		return fmt.Errorf("%w: top_p %g outside [0, 1]", ErrInvalidInput, p.TopP)
	case p.RepeatPenalty < 0:
		return fmt.Errorf("%w: repeat_penalty %g is negative", ErrInvalidInput, p.RepeatPenalty)
	}
	return nil
}

// InferRequest is one inference: Spin's infer(model, prompt, params).
type InferRequest struct {
	Model  string
	Prompt string
	Params InferParams // defaults already applied by the Service
}

// InferResult is Spin's inferencing-result.
type InferResult struct {
	Text  string
	Usage InferUsage
}

// InferUsage counts tokens, as Spin's inferencing-usage.
type InferUsage struct {
	PromptTokenCount    uint32
	GeneratedTokenCount uint32
}

// EmbedRequest is Spin's generate-embeddings(model, text).
type EmbedRequest struct {
	Model string
	Texts []string
}

// EmbedResult is Spin's embeddings-result: one vector per text.
type EmbedResult struct {
	Embeddings [][]float32
	Usage      EmbedUsage
}

// EmbedUsage counts tokens, as Spin's embeddings-usage.
type EmbedUsage struct {
	PromptTokenCount uint32
}

// RemoteTransport carries an inference to another site's agent and back.
// The sync package implements it over NATS request-reply; this package
// only defines it, so that it never imports nats. Implementations are safe
// for concurrent use and honour ctx's deadline. The reply carries what the
// remote site measured, for the caller's accounting.
type RemoteTransport interface {
	// InferRemote runs req for app at site.
	InferRemote(ctx context.Context, site, app string, req InferRequest) (InferResult, RemoteUsage, error)
	// EmbedRemote runs req for app at site.
	EmbedRemote(ctx context.Context, site, app string, req EmbedRequest) (EmbedResult, RemoteUsage, error)
}

// RemoteUsage is what a remote site reports for one call it ran: the
// lease it took there and the emissions it accounted, gross and avoided
// kept apart.
type RemoteUsage struct {
	Site      string
	Usage     Usage
	Emissions Emissions
}
