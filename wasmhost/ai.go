package wasmhost

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// AI runs inference for guests through the tern_ai host module. The agent
// adapts its GPU service to it, so that this package needs no GPU code.
//
// Implementations must be safe for concurrent use, decide per app which
// models it may call (app is the AppConfig's Name), and honour ctx, which
// carries the request's deadline: a call may block while it waits for a
// device, and must return when ctx ends.
//
// # Errors
//
// Errors wrap one of ErrAIModelNotAllowed, ErrAIModelNotSupported,
// ErrAIInvalidInput or ErrAIBusy (an *AIBusyError says when to retry), or
// ctx's error; anything else is a runtime error. The guest sees each as an
// error code, and the message of the first four through last_error.
type AI interface {
	// Infer completes prompt with model, as Spin's llm.infer; zero params
	// take Spin's defaults.
	Infer(ctx context.Context, app, model, prompt string, params InferParams) (InferResult, error)
	// Embed returns one embedding per text, as Spin's
	// llm.generate-embeddings.
	Embed(ctx context.Context, app, model string, texts []string) (EmbedResult, error)
}

// InferParams are Spin's inferencing-params, in Spin's order; a zero field
// takes Spin's default (100 tokens, repeat penalty 1.1 over the last 64
// tokens, temperature 0.8, top-k 40, top-p 0.9).
type InferParams struct {
	MaxTokens                    uint32
	RepeatPenalty                float32
	RepeatPenaltyLastNTokenCount uint32
	Temperature                  float32
	TopK                         uint32
	TopP                         float32
}

// InferResult is Spin's inferencing-result.
type InferResult struct {
	Text                string
	PromptTokenCount    uint32
	GeneratedTokenCount uint32
}

// EmbedResult is Spin's embeddings-result: one vector per text, all of
// the same length.
type EmbedResult struct {
	Embeddings       [][]float32
	PromptTokenCount uint32
}

// Errors an AI wraps, so that the host can give the guest a code.
var (
	// ErrAIModelNotAllowed means the app's manifest does not grant the model.
	ErrAIModelNotAllowed = errors.New("model not allowed")
	// ErrAIModelNotSupported means nothing on this agent serves the model.
	ErrAIModelNotSupported = errors.New("model not supported")
	// ErrAIInvalidInput means the request itself is unacceptable.
	ErrAIInvalidInput = errors.New("invalid input")
	// ErrAIBusy means no device was free in time; see AIBusyError.
	ErrAIBusy = errors.New("busy")
)

// AIBusyError is an ErrAIBusy that says when a retry is worth trying.
type AIBusyError struct {
	RetryAfter time.Duration // rounded up to whole seconds for Retry-After
	Err        error         // the cause, for the message
}

// Error returns the cause's message.
func (e *AIBusyError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("busy (retry after %s)", e.RetryAfter)
	}
	return e.Err.Error()
}

// Unwrap returns the cause.
func (e *AIBusyError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrAIBusy) hold.
func (e *AIBusyError) Is(target error) bool { return target == ErrAIBusy }

// aiModule is the name of the inference host module.
const aiModule = "tern_ai"

// Bounds on what one call may carry: inputs stay well inside one
// request's memory, and a model name fits a log line.
const (
	maxAIModel = 128
	maxAIInput = 1 << 20 // prompt bytes, or the encoded text list of embed
	maxAITexts = 1024
	maxAIError = 1024 // bytes of a message kept for last_error
)

// tern_ai error codes, as documented in docs/GUEST_ABI.md. 1 to 3 are
// Spin's llm error cases (Spin folds "not allowed" into
// model-not-supported; Tern tells them apart).
const (
	aiOK             = 0
	aiNotAllowed     = 1 // not in the manifest's ai_models, or no AI here
	aiNotSupported   = 2
	aiInvalidInput   = 3
	aiBusy           = 4 // queue full or queue wait over; retry later
	aiRuntime        = 5
	aiBufferTooSmall = 6 // res holds the size needed; the result is kept
	aiDeadline       = 7
	aiMemoryAccess   = 8 // a pointer and length outside the guest's memory
)

// aiState is one request's tern_ai state.
type aiState struct {
	lastErr    string        // message of the latest failed call
	retryAfter time.Duration // longest retry delay any busy answer gave
	// kept is a result the guest's buffer was too small for. A call with
	// the same arguments takes it instead of running the model again, so
	// that the retry costs no device time and sees the same answer.
	kept *aiKept
}

// aiKept is a result waiting for a bigger buffer.
type aiKept struct {
	call string // the call's function and arguments, as read
	out  []byte // what goes to out
	res  [3]uint32
}

func (s *aiState) reset() { *s = aiState{} }

// instantiateAI instantiates the tern_ai host module on rt.
func instantiateAI(ctx context.Context, rt wazero.Runtime) error {
	return instantiateHost(ctx, rt, aiModule,
		hostFunc{"infer", aiInfer, []string{"model", "model_len", "prompt", "prompt_len", "params", "out", "out_cap", "res"}},
		hostFunc{"embed", aiEmbed, []string{"model", "model_len", "texts", "texts_len", "out", "out_cap", "res"}},
		hostFunc{"last_error", aiLastError, []string{"buf", "buf_len"}},
	)
}

// aiCall is what every tern_ai call starts with: the request, the guest's
// memory and the model name. code is not aiOK when the call must stop.
func aiCall(ctx context.Context, mod api.Module, rawModel, rawModelLen uint64) (q *request, mem api.Memory, model string, code uint32) {
	q = requestFrom(ctx)
	if q == nil || q.app == nil {
		return nil, nil, "", aiNotAllowed
	}
	q.ai.lastErr = ""
	if mem = mod.Memory(); mem == nil {
		return q, nil, "", q.aiFail(aiMemoryAccess, "the module exports no memory")
	}
	ptr, n := uint32(rawModel), uint32(rawModelLen)
	if n == 0 || n > maxAIModel {
		return q, mem, "", q.aiFail(aiInvalidInput, fmt.Sprintf("model name of %d bytes: want 1 to %d", n, maxAIModel))
	}
	b, ok := mem.Read(ptr, n)
	if !ok {
		return q, mem, "", q.aiFail(aiMemoryAccess, "model name outside memory")
	}
	if !utf8.Valid(b) {
		return q, mem, "", q.aiFail(aiInvalidInput, "model name is not UTF-8")
	}
	model = string(b)
	if q.app.ai == nil {
		q.app.logger.LogAttrs(ctx, slog.LevelInfo, "tern_ai call denied: no models granted", slog.String("model", truncateForLog(model)))
		return q, mem, model, q.aiFail(aiNotAllowed, fmt.Sprintf("the component does not have access to use %q; add it to ai_models in the manifest", model))
	}
	return q, mem, model, aiOK
}

// aiFail records msg for last_error and returns code.
func (q *request) aiFail(code uint32, msg string) uint32 {
	if len(msg) > maxAIError {
		msg = msg[:maxAIError]
	}
	q.ai.lastErr = msg
	return code
}

// aiError maps an AI error to a code and records its message. Runtime
// errors are logged in full and reach the guest only as a summary: they
// may name the site's model servers.
func (q *request) aiError(ctx context.Context, op, model string, err error) uint32 {
	var busy *AIBusyError
	switch {
	case errors.As(err, &busy):
		q.ai.retryAfter = max(q.ai.retryAfter, busy.RetryAfter)
		return q.aiFail(aiBusy, err.Error())
	case errors.Is(err, ErrAIBusy):
		return q.aiFail(aiBusy, err.Error())
	case errors.Is(err, ErrAIModelNotAllowed):
		q.app.logger.LogAttrs(ctx, slog.LevelInfo, "tern_ai call denied", slog.String("op", op),
			slog.String("model", truncateForLog(model)))
		return q.aiFail(aiNotAllowed, err.Error())
	case errors.Is(err, ErrAIModelNotSupported):
		return q.aiFail(aiNotSupported, err.Error())
	case errors.Is(err, ErrAIInvalidInput):
		return q.aiFail(aiInvalidInput, err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return q.aiFail(aiDeadline, fmt.Sprintf("%s %s: deadline passed before the model answered", op, model))
	default:
		q.app.logger.LogAttrs(ctx, slog.LevelWarn, "tern_ai call failed", slog.String("op", op),
			slog.String("model", truncateForLog(model)), slog.String("err", err.Error()))
		return q.aiFail(aiRuntime, fmt.Sprintf("%s %s: runtime error (the agent logged why)", op, model))
	}
}

// aiDeliver writes out and res for a result, or keeps the result and
// answers aiBufferTooSmall when out does not fit outCap. res is written
// in both cases, so the guest learns the size it needs.
func (q *request) aiDeliver(mem api.Memory, call string, out []byte, res [3]uint32, outPtr, outCap, resPtr uint32) uint32 {
	var rb [12]byte
	for i, v := range res {
		binary.LittleEndian.PutUint32(rb[4*i:], v)
	}
	if !mem.Write(resPtr, rb[:]) {
		return q.aiFail(aiMemoryAccess, "res outside memory")
	}
	if uint64(len(out)) > uint64(outCap) {
		q.ai.kept = &aiKept{call: call, out: out, res: res}
		return q.aiFail(aiBufferTooSmall, fmt.Sprintf("result of %d bytes does not fit out_cap %d", len(out), outCap))
	}
	if !mem.Write(outPtr, out) {
		return q.aiFail(aiMemoryAccess, "out outside memory")
	}
	return aiOK
}

// takeKept returns the kept result of an identical earlier call, if any.
// Any other call drops it: only an immediate retry needs it.
func (q *request) takeKept(call string) *aiKept {
	k := q.ai.kept
	q.ai.kept = nil
	if k != nil && k.call == call {
		return k
	}
	return nil
}

// aiInfer implements infer(model, model_len, prompt, prompt_len, params,
// out, out_cap, res) -> error. params is 0 or the address of 24 bytes:
// Spin's inferencing-params in order (u32, f32, u32, f32, u32, f32). res
// receives {text_len, prompt_tokens, generated_tokens}.
func aiInfer(ctx context.Context, mod api.Module, stack []uint64) {
	q, mem, model, code := aiCall(ctx, mod, stack[0], stack[1])
	if code != aiOK {
		stack[0] = uint64(code)
		return
	}
	promptPtr, promptLen, paramsPtr := uint32(stack[2]), uint32(stack[3]), uint32(stack[4])
	outPtr, outCap, resPtr := uint32(stack[5]), uint32(stack[6]), uint32(stack[7])
	if promptLen > maxAIInput {
		stack[0] = uint64(q.aiFail(aiInvalidInput, fmt.Sprintf("prompt of %d bytes over the limit %d", promptLen, maxAIInput)))
		return
	}
	prompt, ok := mem.Read(promptPtr, promptLen)
	if !ok {
		stack[0] = uint64(q.aiFail(aiMemoryAccess, "prompt outside memory"))
		return
	}
	if !utf8.Valid(prompt) {
		stack[0] = uint64(q.aiFail(aiInvalidInput, "prompt is not UTF-8"))
		return
	}
	var pb [24]byte
	if paramsPtr != 0 {
		b, ok := mem.Read(paramsPtr, 24)
		if !ok {
			stack[0] = uint64(q.aiFail(aiMemoryAccess, "params outside memory"))
			return
		}
		copy(pb[:], b)
	}
	call := "infer\x00" + model + "\x00" + string(pb[:]) + string(prompt)
	if k := q.takeKept(call); k != nil {
		stack[0] = uint64(q.aiDeliver(mem, call, k.out, k.res, outPtr, outCap, resPtr))
		return
	}
	le := binary.LittleEndian
	p := InferParams{
		MaxTokens:                    le.Uint32(pb[0:]),
		RepeatPenalty:                math.Float32frombits(le.Uint32(pb[4:])),
		RepeatPenaltyLastNTokenCount: le.Uint32(pb[8:]),
		Temperature:                  math.Float32frombits(le.Uint32(pb[12:])),
		TopK:                         le.Uint32(pb[16:]),
		TopP:                         math.Float32frombits(le.Uint32(pb[20:])),
	}
	res, err := q.app.ai.Infer(ctx, q.app.name, model, string(prompt), p)
	if err != nil {
		stack[0] = uint64(q.aiError(ctx, "infer", model, err))
		return
	}
	out := []byte(res.Text)
	stack[0] = uint64(q.aiDeliver(mem, call, out,
		[3]uint32{uint32(len(out)), res.PromptTokenCount, res.GeneratedTokenCount}, outPtr, outCap, resPtr))
}

// aiEmbed implements embed(model, model_len, texts, texts_len, out,
// out_cap, res) -> error. texts is a list of texts, each a u32 length and
// its bytes; out receives count×dim f32 values, vector after vector; res
// receives {count, dim, prompt_tokens}.
func aiEmbed(ctx context.Context, mod api.Module, stack []uint64) {
	q, mem, model, code := aiCall(ctx, mod, stack[0], stack[1])
	if code != aiOK {
		stack[0] = uint64(code)
		return
	}
	textsPtr, textsLen := uint32(stack[2]), uint32(stack[3])
	outPtr, outCap, resPtr := uint32(stack[4]), uint32(stack[5]), uint32(stack[6])
	if textsLen > maxAIInput {
		stack[0] = uint64(q.aiFail(aiInvalidInput, fmt.Sprintf("texts of %d bytes over the limit %d", textsLen, maxAIInput)))
		return
	}
	raw, ok := mem.Read(textsPtr, textsLen)
	if !ok {
		stack[0] = uint64(q.aiFail(aiMemoryAccess, "texts outside memory"))
		return
	}
	texts, msg := decodeTexts(raw)
	if msg != "" {
		stack[0] = uint64(q.aiFail(aiInvalidInput, msg))
		return
	}
	call := "embed\x00" + model + "\x00" + string(raw)
	if k := q.takeKept(call); k != nil {
		stack[0] = uint64(q.aiDeliver(mem, call, k.out, k.res, outPtr, outCap, resPtr))
		return
	}
	res, err := q.app.ai.Embed(ctx, q.app.name, model, texts)
	if err != nil {
		stack[0] = uint64(q.aiError(ctx, "embed", model, err))
		return
	}
	if len(res.Embeddings) != len(texts) {
		err := fmt.Errorf("%d embeddings for %d texts", len(res.Embeddings), len(texts))
		stack[0] = uint64(q.aiError(ctx, "embed", model, err))
		return
	}
	dim := len(res.Embeddings[0])
	out := make([]byte, 0, 4*dim*len(res.Embeddings))
	for _, v := range res.Embeddings {
		if len(v) != dim {
			err := fmt.Errorf("embeddings of unequal lengths %d and %d", dim, len(v))
			stack[0] = uint64(q.aiError(ctx, "embed", model, err))
			return
		}
		for _, f := range v {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(f))
		}
	}
	stack[0] = uint64(q.aiDeliver(mem, call, out,
		[3]uint32{uint32(len(res.Embeddings)), uint32(dim), res.PromptTokenCount}, outPtr, outCap, resPtr))
}

// decodeTexts splits embed's text list, or says why it cannot.
func decodeTexts(raw []byte) ([]string, string) {
	var texts []string
	for len(raw) > 0 {
		if len(raw) < 4 {
			return nil, "texts: truncated length"
		}
		n := binary.LittleEndian.Uint32(raw)
		raw = raw[4:]
		if uint64(n) > uint64(len(raw)) {
			return nil, fmt.Sprintf("texts[%d]: length %d past the end of the list", len(texts), n)
		}
		if !utf8.Valid(raw[:n]) {
			return nil, fmt.Sprintf("texts[%d]: not UTF-8", len(texts))
		}
		texts = append(texts, string(raw[:n]))
		raw = raw[n:]
		if len(texts) > maxAITexts {
			return nil, fmt.Sprintf("more than %d texts", maxAITexts)
		}
	}
	if len(texts) == 0 {
		return nil, "texts: empty list"
	}
	return texts, ""
}

// aiLastError implements last_error(buf, buf_len) -> len: it copies as
// much of the latest failed call's message as fits and returns the
// message's whole length, so a guest can retry with a buffer that fits.
// The message is empty after a call that succeeded.
func aiLastError(ctx context.Context, mod api.Module, stack []uint64) {
	q := requestFrom(ctx)
	mem := mod.Memory()
	if q == nil || mem == nil {
		stack[0] = 0
		return
	}
	msg := q.ai.lastErr
	buf, n := uint32(stack[0]), uint32(stack[1])
	if !mem.WriteString(buf, msg[:min(len(msg), int(n))]) {
		stack[0] = 0
		return
	}
	stack[0] = uint64(len(msg))
}

// aiRetryAfter adds Retry-After to a 503 response that does not carry
// one, when a tern_ai call in the request answered busy: a guest passes
// busy on by answering 503, and the host knows when to come back.
func (q *request) aiRetryAfter(status int, h http.Header) {
	if status != http.StatusServiceUnavailable || q.ai.retryAfter <= 0 || h.Get("Retry-After") != "" {
		return
	}
	secs := int64((q.ai.retryAfter + time.Second - 1) / time.Second)
	h.Set("Retry-After", strconv.FormatInt(secs, 10))
}
