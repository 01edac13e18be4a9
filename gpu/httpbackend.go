package gpu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// HTTPConfig configures an [HTTPBackend].
type HTTPConfig struct {
	// BaseURL of the model server, e.g. "http://127.0.0.1:8080" for a
	// llama.cpp server, vLLM or Ollama; "/v1/..." is appended.
	BaseURL string
	// Models served by the server; the scheduler routes only these here.
	Models []string
	// Chat selects /v1/chat/completions (the prompt becomes one user
	// message) instead of /v1/completions, for servers that apply the
	// model's chat template only there.
	Chat bool
	// APIKey, when set, is sent as a bearer token.
	APIKey string
	// Client defaults to a client with no timeout of its own: every call
	// carries the lease's deadline in its context.
	Client *http.Client
	// MaxResponse caps a response body; 0 means 16 MiB.
	MaxResponse int64
}

// HTTPBackend runs models on an OpenAI-compatible model server.
type HTTPBackend struct {
	cfg  HTTPConfig
	base *url.URL
}

var _ InferenceBackend = (*HTTPBackend)(nil)

// NewHTTPBackend returns a backend for the server at cfg.BaseURL.
func NewHTTPBackend(cfg HTTPConfig) (*HTTPBackend, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("http backend base URL %q: want http(s)://host[:port]", cfg.BaseURL)
	}
	if len(cfg.Models) == 0 {
		return nil, fmt.Errorf("http backend %s: no models configured", cfg.BaseURL)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.MaxResponse <= 0 {
		cfg.MaxResponse = 16 << 20
	}
	cfg.Models = slices.Clone(cfg.Models)
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &HTTPBackend{cfg: cfg, base: u}, nil
}

// Name returns "http".
func (b *HTTPBackend) Name() string { return "http" }

// Models lists the configured models.
func (b *HTTPBackend) Models() []string { return slices.Clone(b.cfg.Models) }

type oaiCompletionReq struct {
	Model             string       `json:"model"`
	Prompt            string       `json:"prompt,omitempty"`
	Messages          []oaiMessage `json:"messages,omitempty"`
	MaxTokens         uint32       `json:"max_tokens"`
	Temperature       float32      `json:"temperature"`
	TopP              float32      `json:"top_p"`
	TopK              uint32       `json:"top_k,omitempty"`              // llama.cpp, vLLM, Ollama extension
	RepeatPenalty     float32      `json:"repeat_penalty,omitempty"`     // llama.cpp, Ollama
	RepeatLastN       uint32       `json:"repeat_last_n,omitempty"`      // llama.cpp, Ollama
	RepetitionPenalty float32      `json:"repetition_penalty,omitempty"` // vLLM's name for RepeatPenalty
	Stream            bool         `json:"stream"`
}

type oaiMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type oaiUsage struct {
	PromptTokens     uint32 `json:"prompt_tokens"`
	CompletionTokens uint32 `json:"completion_tokens"`
}

type oaiCompletionResp struct {
	Choices []struct {
		Text    string     `json:"text"`
		Message oaiMessage `json:"message"`
	} `json:"choices"`
	Usage oaiUsage `json:"usage"`
}

type oaiEmbedReq struct {
	Model string   `json:"model"`
	Input []string `json:"input"`
}

type oaiEmbedResp struct {
	Data []struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
	Usage oaiUsage `json:"usage"`
}

type oaiError struct {
	Error struct {
		Message string `json:"message"`
	} `json:"error"`
}

// Infer calls /v1/completions, or /v1/chat/completions with Chat set.
func (b *HTTPBackend) Infer(ctx context.Context, dev Device, req InferRequest) (InferResult, error) {
	if !slices.Contains(b.cfg.Models, req.Model) {
		return InferResult{}, fmt.Errorf("http infer %q: %w", req.Model, ErrModelNotSupported)
	}
	p := req.Params.WithDefaults()
	body := oaiCompletionReq{
		Model:             req.Model,
		MaxTokens:         p.MaxTokens,
		Temperature:       p.Temperature,
		TopP:              p.TopP,
		TopK:              p.TopK,
		RepeatPenalty:     p.RepeatPenalty,
		RepeatLastN:       p.RepeatPenaltyLastNTokenCount,
		RepetitionPenalty: p.RepeatPenalty,
	}
	path := "/v1/completions"
	if b.cfg.Chat {
		path = "/v1/chat/completions"
		body.Messages = []oaiMessage{{Role: "user", Content: req.Prompt}}
	} else {
		body.Prompt = req.Prompt
	}
	var resp oaiCompletionResp
	if err := b.post(ctx, path, body, &resp); err != nil {
		return InferResult{}, fmt.Errorf("http infer %q on %s: %w", req.Model, dev.UUID, err)
	}
	if len(resp.Choices) == 0 {
		return InferResult{}, fmt.Errorf("http infer %q on %s: %w: response has no choices", req.Model, dev.UUID, ErrBackend)
	}
	text := resp.Choices[0].Text
	if b.cfg.Chat {
		text = resp.Choices[0].Message.Content
	}
	return InferResult{Text: text, Usage: InferUsage{
		PromptTokenCount:    resp.Usage.PromptTokens,
		GeneratedTokenCount: resp.Usage.CompletionTokens,
	}}, nil
}

// Embed calls /v1/embeddings with every text in one request.
func (b *HTTPBackend) Embed(ctx context.Context, dev Device, req EmbedRequest) (EmbedResult, error) {
	if !slices.Contains(b.cfg.Models, req.Model) {
		return EmbedResult{}, fmt.Errorf("http embed %q: %w", req.Model, ErrModelNotSupported)
	}
	var resp oaiEmbedResp
	if err := b.post(ctx, "/v1/embeddings", oaiEmbedReq{Model: req.Model, Input: req.Texts}, &resp); err != nil {
		return EmbedResult{}, fmt.Errorf("http embed %q on %s: %w", req.Model, dev.UUID, err)
	}
	if len(resp.Data) != len(req.Texts) {
		return EmbedResult{}, fmt.Errorf("http embed %q on %s: %w: %d embeddings for %d texts",
			req.Model, dev.UUID, ErrBackend, len(resp.Data), len(req.Texts))
	}
	out := EmbedResult{Embeddings: make([][]float32, len(req.Texts)), Usage: EmbedUsage{PromptTokenCount: resp.Usage.PromptTokens}}
	for _, d := range resp.Data {
		if d.Index < 0 || d.Index >= len(out.Embeddings) || out.Embeddings[d.Index] != nil {
			return EmbedResult{}, fmt.Errorf("http embed %q on %s: %w: bad or repeated index %d", req.Model, dev.UUID, ErrBackend, d.Index)
		}
		out.Embeddings[d.Index] = d.Embedding
	}
	return out, nil
}

// post sends body as JSON to path and decodes the reply into out.
func (b *HTTPBackend) post(ctx context.Context, path string, body, out any) error {
	buf, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("%w: encode request: %v", ErrBackend, err)
	}
	u := *b.base
	u.Path += path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(buf))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBackend, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if b.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+b.cfg.APIKey)
	}
	resp, err := b.cfg.Client.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("POST %s: %w", path, ctxErr)
		}
		return fmt.Errorf("%w: POST %s: %v", ErrBackend, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, b.cfg.MaxResponse+1))
	if err != nil {
		return fmt.Errorf("%w: POST %s: read response: %v", ErrBackend, path, err)
	}
	if int64(len(data)) > b.cfg.MaxResponse {
		return fmt.Errorf("%w: POST %s: response over %d bytes", ErrBackend, path, b.cfg.MaxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(data))
		var oe oaiError
		if json.Unmarshal(data, &oe) == nil && oe.Error.Message != "" {
			msg = oe.Error.Message
		}
		if len(msg) > 200 {
			msg = msg[:200]
		}
		kind := ErrBackend
		switch resp.StatusCode {
		case http.StatusNotFound:
			kind = ErrModelNotSupported
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			kind = ErrInvalidInput
		}
		return fmt.Errorf("%w: POST %s: status %d: %s", kind, path, resp.StatusCode, msg)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%w: POST %s: decode response: %v", ErrBackend, path, err)
	}
	return nil
}
