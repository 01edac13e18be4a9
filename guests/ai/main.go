//go:build wasip1

// Command ai is a WAGI guest that runs inference through the tern_ai host
// module (docs/GUEST_ABI.md) and answers with the generated text.
//
//	POST /ai             the body is the prompt
//	GET  /ai?prompt=...  the query parameter is the prompt
//	POST /ai/embed       one embedding per line of the body
//
// Query parameters: model (default det-llm, or det-embed for /embed) and
// max_tokens. A tern_ai error becomes an HTTP status (busy is 503, which
// the host completes with Retry-After) and a body "error N: message".
//
// It starts with a small output buffer on purpose, so that every long
// answer goes through the buffer-too-small retry that real guests need.
//
// Build it from this directory with:
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -o ai.wasm .
package main

import (
	"encoding/binary"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unsafe"
)

// The guest avoids fmt and net/url: each adds hundreds of kilobytes to
// the module, and compile time grows with its size.

//go:wasmimport tern_ai infer
func aiInfer(model unsafe.Pointer, modelLen uint32, prompt unsafe.Pointer, promptLen uint32,
	params unsafe.Pointer, out unsafe.Pointer, outCap uint32, res unsafe.Pointer) uint32

//go:wasmimport tern_ai embed
func aiEmbed(model unsafe.Pointer, modelLen uint32, texts unsafe.Pointer, textsLen uint32,
	out unsafe.Pointer, outCap uint32, res unsafe.Pointer) uint32

//go:wasmimport tern_ai last_error
func aiLastError(buf unsafe.Pointer, bufLen uint32) uint32

// tern_ai error codes.
const (
	codeOK             = 0
	codeNotAllowed     = 1
	codeNotSupported   = 2
	codeInvalidInput   = 3
	codeBusy           = 4
	codeRuntime        = 5
	codeBufferTooSmall = 6
	codeDeadline       = 7
)

// params is Spin's inferencing-params, 24 bytes; zero fields take Spin's
// defaults.
type params struct {
	MaxTokens     uint32
	RepeatPenalty float32
	RepeatLastN   uint32
	Temperature   float32
	TopK          uint32
	TopP          float32
}

// ptr returns the address of b's first byte, or nil for an empty b.
func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func main() {
	q := parseQuery(os.Getenv("QUERY_STRING"))
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		reply("500 Internal Server Error", nil, "reading stdin: "+err.Error()+"\n")
		return
	}
	if os.Getenv("PATH_INFO") == "/embed" {
		embed(q, string(body))
		return
	}
	prompt := string(body)
	if p := q.Get("prompt"); p != "" {
		prompt = p
	}
	model := q.Get("model")
	if model == "" {
		model = "det-llm"
	}
	var p params
	if n, err := strconv.ParseUint(q.Get("max_tokens"), 10, 32); err == nil {
		p.MaxTokens = uint32(n)
	}
	text, res, code := infer(model, prompt, &p)
	if code != codeOK {
		fail(code)
		return
	}
	reply("200 OK", []string{
		"X-Prompt-Tokens: " + utoa(res[1]),
		"X-Generated-Tokens: " + utoa(res[2]),
	}, text+"\n")
}

// infer calls tern_ai infer, growing the output buffer once if the host
// says it is too small; res is {text_len, prompt_tokens, generated_tokens}.
func infer(model, prompt string, p *params) (string, [3]uint32, uint32) {
	m, pr := []byte(model), []byte(prompt)
	out := make([]byte, 32)
	var res [3]uint32
	for range 2 {
		code := aiInfer(ptr(m), uint32(len(m)), ptr(pr), uint32(len(pr)), unsafe.Pointer(p),
			ptr(out), uint32(len(out)), unsafe.Pointer(&res))
		if code != codeBufferTooSmall {
			if code != codeOK {
				return "", res, code
			}
			return string(out[:res[0]]), res, codeOK
		}
		out = make([]byte, res[0])
	}
	return "", res, codeBufferTooSmall
}

// embed answers the embedding of each line of body: count, dimension,
// prompt tokens and the first four components of each vector.
func embed(q query, body string) {
	model := q.Get("model")
	if model == "" {
		model = "det-embed"
	}
	var texts []byte
	for _, line := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		texts = binary.LittleEndian.AppendUint32(texts, uint32(len(line)))
		texts = append(texts, line...)
	}
	m := []byte(model)
	out := make([]byte, 64)
	var res [3]uint32 // count, dim, prompt_tokens
	code := uint32(codeBufferTooSmall)
	for i := 0; i < 2 && code == codeBufferTooSmall; i++ {
		code = aiEmbed(ptr(m), uint32(len(m)), ptr(texts), uint32(len(texts)), ptr(out), uint32(len(out)), unsafe.Pointer(&res))
		if code == codeBufferTooSmall {
			out = make([]byte, 4*res[0]*res[1])
		}
	}
	if code != codeOK {
		fail(code)
		return
	}
	var b strings.Builder
	b.WriteString("count=" + utoa(res[0]) + " dim=" + utoa(res[1]) + " prompt_tokens=" + utoa(res[2]) + "\n")
	for i := range res[0] {
		v := out[4*i*res[1]:]
		for j := range min(4, res[1]) {
			f := math.Float32frombits(binary.LittleEndian.Uint32(v[4*j:]))
			b.WriteString(" " + strconv.FormatFloat(float64(f), 'f', 6, 32))
		}
		b.WriteString("\n")
	}
	reply("200 OK", nil, b.String())
}

// fail answers a tern_ai error with the matching HTTP status and the
// host's message.
func fail(code uint32) {
	msg := make([]byte, 256)
	if n := aiLastError(ptr(msg), uint32(len(msg))); n > uint32(len(msg)) {
		msg = make([]byte, n)
		aiLastError(ptr(msg), n)
	} else {
		msg = msg[:n]
	}
	status := "500 Internal Server Error"
	switch code {
	case codeNotAllowed:
		status = "403 Forbidden"
	case codeNotSupported:
		status = "404 Not Found"
	case codeInvalidInput:
		status = "400 Bad Request"
	case codeBusy:
		status = "503 Service Unavailable"
	case codeRuntime:
		status = "502 Bad Gateway"
	case codeDeadline:
		status = "504 Gateway Timeout"
	}
	reply(status, nil, "error "+utoa(code)+": "+string(msg)+"\n")
}

// reply writes a CGI response.
func reply(status string, headers []string, body string) {
	var b strings.Builder
	b.WriteString("Status: " + status + "\nContent-Type: text/plain; charset=utf-8\n")
	for _, h := range headers {
		b.WriteString(h + "\n")
	}
	b.WriteString("\n" + body)
	os.Stdout.WriteString(b.String())
}

func utoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// query is a parsed query string: the first value of each name.
type query map[string]string

// Get returns the value of name, or "".
func (q query) Get(name string) string { return q[name] }

// parseQuery splits a query string as net/url does, keeping the first
// value of each name; items that do not decode are skipped.
func parseQuery(s string) query {
	q := query{}
	for item := range strings.SplitSeq(s, "&") {
		k, v, _ := strings.Cut(item, "=")
		k, ok1 := unescape(k)
		v, ok2 := unescape(v)
		if _, seen := q[k]; ok1 && ok2 && !seen {
			q[k] = v
		}
	}
	return q
}

// unescape decodes '+' and %XX escapes.
func unescape(s string) (string, bool) {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%':
			if i+2 >= len(s) {
				return "", false
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", false
			}
			b = append(b, byte(n))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b), true
}
