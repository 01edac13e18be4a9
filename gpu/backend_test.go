package gpu

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestDetBackendIsDeterministic(t *testing.T) {
	b, err := NewDetBackend(DetConfig{})
	must(t, err)
	ctx := context.Background()
	req := InferRequest{Model: "det-llm", Prompt: "tell me about heat reuse"}
	r1, err := b.Infer(ctx, DetDevice(), req)
	must(t, err)
	r2, _ := b.Infer(ctx, DetDevice(), req)
	equal(t, "same input", r1.Text, r2.Text)
	equal(t, "generated", r1.Usage.GeneratedTokenCount, uint32(16))
	equal(t, "words", len(strings.Fields(r1.Text)), 16)
	equal(t, "prompt tokens", r1.Usage.PromptTokenCount, uint32(5))
	r3, _ := b.Infer(ctx, DetDevice(), InferRequest{Model: "det-llm", Prompt: "tell me about heat reuse", Params: InferParams{Temperature: 0.2}})
	if r3.Text == r1.Text {
		t.Fatal("different params gave the same text")
	}
	r4, _ := b.Infer(ctx, DetDevice(), InferRequest{Model: "det-llm", Prompt: "x", Params: InferParams{MaxTokens: 3}})
	equal(t, "max tokens", r4.Usage.GeneratedTokenCount, uint32(3))

	_, err = b.Infer(ctx, DetDevice(), InferRequest{Model: "llama2-chat", Prompt: "hi"})
	isErr(t, "llama2-chat", err, ErrModelNotSupported)
	_, err = NewDetBackend(DetConfig{Models: []string{"llama2-chat"}})
	equal(t, "non-det model", err.Error(), `det backend model "llama2-chat": name must start with "det-"`)

	e, err := b.Embed(ctx, DetDevice(), EmbedRequest{Model: "det-embed", Texts: []string{"a b", "c"}})
	must(t, err)
	equal(t, "count", len(e.Embeddings), 2)
	equal(t, "dim", len(e.Embeddings[0]), DetEmbeddingDim)
	equal(t, "prompt tokens", e.Usage.PromptTokenCount, uint32(3))
	var norm float64
	for _, x := range e.Embeddings[0] {
		norm += float64(x) * float64(x)
	}
	near(t, "norm", math.Sqrt(norm), 1, 1e-5)
	e2, _ := b.Embed(ctx, DetDevice(), EmbedRequest{Model: "det-embed", Texts: []string{"a b"}})
	equal(t, "same embedding", e2.Embeddings[0][7], e.Embeddings[0][7])
}

// oaiServer is a fake OpenAI-compatible model server that records the
// last request body.
func oaiServer(t *testing.T, last *map[string]any) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		*last = map[string]any{}
		json.Unmarshal(body, last)
		if r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, `{"error":{"message":"bad key"}}`, http.StatusUnauthorized)
			return
		}
		model, _ := (*last)["model"].(string)
		switch {
		case model == "slow":
			time.Sleep(200 * time.Millisecond)
		case model == "gone":
			http.Error(w, `{"error":{"message":"model gone not found"}}`, http.StatusNotFound)
			return
		case model == "boom":
			http.Error(w, "engine crashed", http.StatusInternalServerError)
			return
		}
		switch r.URL.Path {
		case "/v1/completions":
			io.WriteString(w, `{"choices":[{"text":"warm water"}],"usage":{"prompt_tokens":4,"completion_tokens":2}}`)
		case "/v1/chat/completions":
			io.WriteString(w, `{"choices":[{"message":{"role":"assistant","content":"warm pool"}}],"usage":{"prompt_tokens":9,"completion_tokens":2}}`)
		case "/v1/embeddings":
			io.WriteString(w, `{"data":[{"index":1,"embedding":[0,1]},{"index":0,"embedding":[1,0]}],"usage":{"prompt_tokens":3}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTPBackend(t *testing.T) {
	var last map[string]any
	srv := oaiServer(t, &last)
	models := []string{"llama", "slow", "gone", "boom"}
	b, err := NewHTTPBackend(HTTPConfig{BaseURL: srv.URL + "/", Models: models, APIKey: "k"})
	must(t, err)
	ctx := context.Background()
	dev := Device{UUID: "GPU-x"}

	r, err := b.Infer(ctx, dev, InferRequest{Model: "llama", Prompt: "heat?", Params: InferParams{MaxTokens: 7}.WithDefaults()})
	must(t, err)
	equal(t, "text", r.Text, "warm water")
	equal(t, "usage", r.Usage, InferUsage{PromptTokenCount: 4, GeneratedTokenCount: 2})
	equal(t, "sent prompt", last["prompt"], any("heat?"))
	equal(t, "sent max_tokens", last["max_tokens"], any(7.0))
	equal(t, "sent top_k", last["top_k"], any(40.0))
	equal(t, "sent stream", last["stream"], any(false))

	chat, err := NewHTTPBackend(HTTPConfig{BaseURL: srv.URL, Models: models, APIKey: "k", Chat: true})
	must(t, err)
	r, err = chat.Infer(ctx, dev, InferRequest{Model: "llama", Prompt: "heat?"})
	must(t, err)
	equal(t, "chat text", r.Text, "warm pool")
	msgs, _ := last["messages"].([]any)
	equal(t, "messages", len(msgs), 1)

	e, err := b.Embed(ctx, dev, EmbedRequest{Model: "llama", Texts: []string{"a", "b"}})
	must(t, err)
	equal(t, "reordered by index", e.Embeddings[0][0], float32(1))
	equal(t, "embed usage", e.Usage.PromptTokenCount, uint32(3))

	for _, tc := range []struct {
		model string
		want  error
		msg   string
	}{
		{"other", ErrModelNotSupported, `http infer "other": model not supported`},
		{"gone", ErrModelNotSupported, `http infer "gone" on GPU-x: model not supported: POST /v1/completions: status 404: model gone not found`},
		{"boom", ErrBackend, `http infer "boom" on GPU-x: backend error: POST /v1/completions: status 500: engine crashed`},
	} {
		_, err := b.Infer(ctx, dev, InferRequest{Model: tc.model, Prompt: "x"})
		isErr(t, tc.model, err, tc.want)
		equal(t, tc.model+" message", err.Error(), tc.msg)
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = b.Infer(dctx, dev, InferRequest{Model: "slow", Prompt: "x"})
	isErr(t, "deadline", err, context.DeadlineExceeded)

	_, err = NewHTTPBackend(HTTPConfig{BaseURL: "unix:///x", Models: models})
	equal(t, "bad url", err.Error(), `http backend base URL "unix:///x": want http(s)://host[:port]`)
}

func TestInferParamsDefaults(t *testing.T) {
	equal(t, "zero", InferParams{}.WithDefaults(), DefaultInferParams)
	p := InferParams{MaxTokens: 5, TopK: 3}.WithDefaults()
	equal(t, "max tokens", p.MaxTokens, uint32(5))
	equal(t, "top k", p.TopK, uint32(3))
	equal(t, "temperature", p.Temperature, float32(0.8))
	err := InferParams{MaxTokens: 5000}.WithDefaults().validate()
	equal(t, "too many", err.Error(), "invalid input: max_tokens 5000 over the limit 1024")
}
