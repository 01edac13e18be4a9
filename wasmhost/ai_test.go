package wasmhost

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var updateAI = flag.Bool("update-ai", false, "rewrite testdata/ai.golden")

// fakeAI answers like a model would, from its arguments alone, so that
// the golden output pins the ABI rather than a backend. Its models:
// "echo-llm" (text from the prompt and params), "echo-embed" (vectors
// from the texts), "busy", "slow" (waits for ctx), "broken" (a runtime
// error naming an internal address) and "gone" (not supported).
type fakeAI struct {
	allowed []string // models the app may call
	calls   atomic.Int64
}

var _ AI = (*fakeAI)(nil)

func (f *fakeAI) check(ctx context.Context, model string) error {
	f.calls.Add(1)
	if !slices.Contains(f.allowed, model) {
		return fmt.Errorf("%w: the component does not have access to use %q", ErrAIModelNotAllowed, model)
	}
	switch model {
	case "busy":
		return &AIBusyError{RetryAfter: 2500 * time.Millisecond, Err: fmt.Errorf("gpu lease for app (model busy): %w", ErrAIBusy)}
	case "slow":
		<-ctx.Done()
		return ctx.Err()
	case "broken":
		return fmt.Errorf("post http://10.0.0.9:8080/v1/completions: connection refused")
	case "gone":
		return fmt.Errorf("%w: no backend serves %q", ErrAIModelNotSupported, model)
	}
	return nil
}

func (f *fakeAI) Infer(ctx context.Context, app, model, prompt string, p InferParams) (InferResult, error) {
	if err := f.check(ctx, model); err != nil {
		return InferResult{}, err
	}
	if prompt == "" {
		return InferResult{}, fmt.Errorf("%w: empty prompt", ErrAIInvalidInput)
	}
	words := strings.Fields(prompt)
	slices.Reverse(words)
	text := fmt.Sprintf("%s for %s (max_tokens=%d temperature=%g): %s", model, app, p.MaxTokens, p.Temperature, strings.Join(words, " "))
	return InferResult{Text: text, PromptTokenCount: uint32(len(words)), GeneratedTokenCount: uint32(len(words) + 5)}, nil
}

func (f *fakeAI) Embed(ctx context.Context, app, model string, texts []string) (EmbedResult, error) {
	if err := f.check(ctx, model); err != nil {
		return EmbedResult{}, err
	}
	out := EmbedResult{}
	for _, t := range texts {
		v := make([]float32, 8)
		for i := range v {
			v[i] = float32(len(t)) + float32(i)/8
		}
		out.Embeddings = append(out.Embeddings, v)
		out.PromptTokenCount += uint32(len(strings.Fields(t)))
	}
	return out, nil
}

// TestAIHostABIGolden drives the committed ai guest through every tern_ai
// outcome and compares status, headers and body with testdata/ai.golden.
func TestAIHostABIGolden(t *testing.T) {
	h := newHost(t)
	wasm := guest(t, "ai/ai.wasm")
	ai := &fakeAI{allowed: []string{"echo-llm", "echo-embed", "busy", "slow", "broken", "gone"}}
	granted, err := h.Load(context.Background(), AppConfig{Name: "ai", Wasm: wasm, AI: ai})
	must(t, err)
	defer granted.Close(context.Background())
	denied, err := h.Load(context.Background(), AppConfig{Name: "plain", Wasm: wasm})
	must(t, err)
	defer denied.Close(context.Background())

	cases := []struct {
		name   string
		app    *App
		method string
		target string
		body   string
	}{
		{"infer from body, buffer retry", granted, "POST", "/ai?model=echo-llm", "the quick brown fox jumps over the lazy dog"},
		{"infer from query with params", granted, "GET", "/ai?model=echo-llm&max_tokens=7&prompt=hello%20edge", ""},
		{"short answer fits the first buffer", granted, "GET", "/ai?model=echo-llm&prompt=x", ""},
		{"embed", granted, "POST", "/ai/embed?model=echo-embed", "one\ntwo words\n"},
		{"security: model not granted", granted, "GET", "/ai?model=llama2-chat&prompt=hi", ""},
		{"security: app granted no AI", denied, "GET", "/ai?model=echo-llm&prompt=hi", ""},
		{"not supported", granted, "GET", "/ai?model=gone&prompt=hi", ""},
		{"invalid input", granted, "POST", "/ai?model=echo-llm", ""},
		{"busy gives 503 with Retry-After", granted, "GET", "/ai?model=busy&prompt=hi", ""},
		{"security: runtime error hides the backend", granted, "GET", "/ai?model=broken&prompt=hi", ""},
	}
	var got bytes.Buffer
	for _, c := range cases {
		var body *strings.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		r := httptest.NewRequest(c.method, c.target, nil)
		if body != nil {
			r = httptest.NewRequest(c.method, c.target, body)
		}
		w := serve(c.app, r, "/ai")
		fmt.Fprintf(&got, "### %s\n%s %s\n%d\n", c.name, c.method, c.target, w.Code)
		for _, k := range []string{"Content-Type", "Retry-After", "X-Generated-Tokens", "X-Prompt-Tokens"} {
			if v := w.Header().Get(k); v != "" {
				fmt.Fprintf(&got, "%s: %s\n", k, v)
			}
		}
		fmt.Fprintf(&got, "\n%s\n", w.Body.String())
	}
	golden := filepath.Join("testdata", "ai.golden")
	if *updateAI {
		must(t, os.MkdirAll("testdata", 0o755))
		must(t, os.WriteFile(golden, got.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	must(t, err)
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("output differs from %s (run with -update-ai and review the diff):\n%s", golden, got.String())
	}
	if !logHas(h.log.String(), "tern_ai call failed", "10.0.0.9:8080") {
		t.Errorf("the runtime error's cause was not logged:\n%s", h.log.String())
	}
	if !logHas(h.log.String(), "tern_ai call denied: no models granted", `"app":"plain"`) {
		t.Errorf("the denied call was not logged:\n%s", h.log.String())
	}
}

// TestAIDeadlineWhileWaiting checks that a call still waiting for a
// device when the request's timeout passes ends the request with 504.
// Which 504 is a race, so it is not in the golden file: the host's, when
// it stops the instance first, or the guest's own answer to code 7.
func TestAIDeadlineWhileWaiting(t *testing.T) {
	h := newHost(t)
	ai := &fakeAI{allowed: []string{"slow"}}
	app, err := h.Load(context.Background(), AppConfig{Name: "short", Wasm: guest(t, "ai/ai.wasm"), AI: ai,
		Limits: Limits{Timeout: 100 * time.Millisecond}})
	must(t, err)
	defer app.Close(context.Background())
	w := serve(app, httptest.NewRequest("GET", "/ai?model=slow&prompt=hi", nil), "/ai")
	equal(t, "status", w.Code, 504)
	if body := w.Body.String(); !strings.HasPrefix(body, "Gateway Timeout (request id ") && body != "error 7: infer slow: deadline passed before the model answered\n" {
		t.Fatalf("body = %q", body)
	}
}

// TestAIBufferRetryRunsOnce checks that retrying with a bigger buffer
// takes the kept result instead of running the model a second time.
func TestAIBufferRetryRunsOnce(t *testing.T) {
	h := newHost(t)
	ai := &fakeAI{allowed: []string{"echo-llm"}}
	app, err := h.Load(context.Background(), AppConfig{Name: "ai", Wasm: guest(t, "ai/ai.wasm"), AI: ai})
	must(t, err)
	defer app.Close(context.Background())
	w := serve(app, httptest.NewRequest("GET", "/ai?model=echo-llm&prompt="+strings.Repeat("word%20", 40), nil), "/ai")
	equal(t, "status", w.Code, 200)
	equal(t, "model calls", ai.calls.Load(), int64(1))
}

func TestDecodeTexts(t *testing.T) {
	enc := func(parts ...string) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, byte(len(p)), 0, 0, 0)
			b = append(b, p...)
		}
		return b
	}
	tests := []struct {
		name string
		raw  []byte
		want []string
		msg  string
	}{
		{"two", enc("a", "bc"), []string{"a", "bc"}, ""},
		{"empty text", enc(""), []string{""}, ""},
		{"empty list", nil, nil, "texts: empty list"},
		{"truncated length", []byte{1, 0}, nil, "texts: truncated length"},
		{"security: length past the end", []byte{9, 0, 0, 0, 'a'}, nil, "texts[0]: length 9 past the end of the list"},
		{"security: huge length", []byte{0xff, 0xff, 0xff, 0xff, 'a'}, nil, "texts[0]: length 4294967295 past the end of the list"},
		{"not utf-8", enc("ok", "\xff"), nil, "texts[1]: not UTF-8"},
		{"too many", bytes.Repeat(enc("a"), maxAITexts+1), nil, fmt.Sprintf("more than %d texts", maxAITexts)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, msg := decodeTexts(tt.raw)
			equal(t, "message", msg, tt.msg)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("texts = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestAIBadPointers checks that every pointer a guest passes to tern_ai
// is bounds-checked: the probe guest passes some outside its memory.
func TestAIBadPointers(t *testing.T) {
	h := newHost(t)
	ai := &fakeAI{allowed: []string{"echo-llm"}}
	app, err := h.Load(context.Background(), AppConfig{Name: "probe", Wasm: guest(t, "ai/probe.wasm"), AI: ai})
	must(t, err)
	defer app.Close(context.Background())
	w := serve(app, httptest.NewRequest("GET", "/probe", nil), "/probe")
	equal(t, "status", w.Code, 200)
	// 8: model, prompt, params, res, out outside memory; 3: a truncated
	// text list; 0: last_error into no memory; 23: the length of "texts:
	// truncated length"; 3: an empty model name.
	equal(t, "codes", w.Body.String(), "8 8 8 8 8 3 0 23 3 \n")
}
