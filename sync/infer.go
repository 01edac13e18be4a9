package sync

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// AISubjectPrefix is where inference calls are sent to a site: the subject
// tern.ai.<site>, served by every agent of that site whose inference
// service runs (one of them takes each call).
const AISubjectPrefix = "tern.ai"

// AICall is one inference or embedding call for another site. The types
// mirror the gpu package's requests without importing it, so that this
// package stays free of NVML; the agent converts.
type AICall struct {
	// Kind is "infer" or "embed".
	Kind  string `json:"kind"`
	Site  string `json:"origin"` // the calling site
	App   string `json:"app"`
	Model string `json:"model"`
	// Prompt and Params are an inference's; Texts an embedding's.
	Prompt string   `json:"prompt,omitempty"`
	Params AIParams `json:"params"`
	Texts  []string `json:"texts,omitempty"`
}

// AIParams are an inference's sampling parameters, field for field the
// gpu package's InferParams (Spin's order and meaning), so that the agent
// converts one into the other directly.
type AIParams struct {
	MaxTokens                    uint32  `json:"max_tokens,omitempty"`
	RepeatPenalty                float32 `json:"repeat_penalty,omitempty"`
	RepeatPenaltyLastNTokenCount uint32  `json:"repeat_penalty_last_n,omitempty"`
	Temperature                  float32 `json:"temperature,omitempty"`
	TopK                         uint32  `json:"top_k,omitempty"`
	TopP                         float32 `json:"top_p,omitempty"`
}

// AI call kinds.
const (
	AIInfer = "infer"
	AIEmbed = "embed"
)

// AIAnswer is a site's answer to an AICall.
type AIAnswer struct {
	Site string `json:"site"`
	// Reason is the gpu package's reason for a failed call ("not_allowed",
	// "queue_full", …) and Error its message; both empty on success.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	// RetryAfter is a busy site's hint, as the gpu package computes it.
	RetryAfter time.Duration `json:"retry_after,omitempty"`

	Text                string      `json:"text,omitempty"`
	Embeddings          [][]float32 `json:"embeddings,omitempty"`
	PromptTokenCount    uint32      `json:"prompt_tokens,omitempty"`
	GeneratedTokenCount uint32      `json:"generated_tokens,omitempty"`
	// Usage and Emissions are the gpu package's Usage and Emissions as the
	// site measured them, raw so that this package need not know them.
	Usage     json.RawMessage `json:"usage,omitempty"`
	Emissions json.RawMessage `json:"emissions,omitempty"`
}

// AIServer runs inference calls from other sites. ServeAI is called
// concurrently and must return when ctx is done.
type AIServer interface {
	ServeAI(ctx context.Context, call AICall) AIAnswer
}

// CallAI sends call to site and waits for the answer until ctx is done.
// Transport failures are errors (wrapping ErrUnreachable when no agent of
// the site serves inference); a failure of the call itself is an answer
// with Reason set.
func (c *Client) CallAI(ctx context.Context, site string, call AICall) (AIAnswer, error) {
	subject, err := siteSubject(AISubjectPrefix, site)
	if err != nil {
		return AIAnswer{}, fmt.Errorf("%s %s for %s: %w", call.Kind, call.Model, call.App, err)
	}
	var ans AIAnswer
	if err := c.request(ctx, subject, call, &ans); err != nil {
		return AIAnswer{}, fmt.Errorf("%s %s for %s: %w", call.Kind, call.Model, call.App, err)
	}
	return ans, nil
}

// ServeAI answers the inference calls other sites send to site with srv,
// until ctx is done.
func (c *Client) ServeAI(ctx context.Context, site string, srv AIServer, logger *slog.Logger) error {
	subject, err := siteSubject(AISubjectPrefix, site)
	if err != nil {
		return fmt.Errorf("serve inference: %w", err)
	}
	return c.serve(ctx, subject, logger, func(ctx context.Context, data []byte) any {
		var call AICall
		if err := json.Unmarshal(data, &call); err != nil {
			return AIAnswer{Site: site, Reason: "invalid_input", Error: "malformed call: " + err.Error()}
		}
		ans := srv.ServeAI(ctx, call)
		ans.Site = site
		return ans
	}, func(n, limit int64) any {
		return AIAnswer{Site: site, Reason: "backend_error", Error: fmt.Sprintf("answer of %d bytes over the message limit %d", n, limit)}
	})
}
