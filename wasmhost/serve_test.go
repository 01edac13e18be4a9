package wasmhost

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

func TestServeHello(t *testing.T) {
	h := newHost(t)
	app := h.load(t, "hello", "hello/hello.wasm", Limits{})
	w := serve(app, httptest.NewRequest("GET", "/hello", nil), "/hello")
	equal(t, "status", w.Code, 200)
	equal(t, "body", w.Body.String(), "Hello from Tern!\n")
	equal(t, "Content-Type", w.Header().Get("Content-Type"), "text/plain")
	equal(t, "Content-Length", w.Header().Get("Content-Length"), "17")
	equal(t, "tern_function_seconds count", metricValue(t, h.reg, "tern_function_seconds", map[string]string{"app": "hello"}), 1)
}

// echoed is the JSON document the echo guest answers with.
type echoed struct {
	Method     string            `json:"method"`
	ScriptName string            `json:"script_name"`
	PathInfo   string            `json:"path_info"`
	Query      string            `json:"query"`
	Args       []string          `json:"args"`
	Headers    map[string]string `json:"headers"`
	Env        map[string]string `json:"env"`
	Body       string            `json:"body"`
}

func TestServeEcho(t *testing.T) {
	h := newHost(t)
	app, err := h.Load(context.Background(), AppConfig{
		Name: "echo",
		Wasm: guest(t, "echo/echo.wasm"),
		Env:  map[string]string{"GREETING": "hello from the manifest"},
	})
	must(t, err)
	defer app.Close(context.Background())

	r := httptest.NewRequest("POST", "http://edge.example:8080/echo/sub/path?a=1&b=two", strings.NewReader(`{"x":1}`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Custom", "yes")
	r.Header.Set("Authorization", "Bearer secret")
	w := serve(app, r, "/echo")
	equal(t, "status", w.Code, 200)
	equal(t, "Content-Type", w.Header().Get("Content-Type"), "application/json")

	var got echoed
	must(t, json.Unmarshal(w.Body.Bytes(), &got))
	equal(t, "method", got.Method, "POST")
	equal(t, "script_name", got.ScriptName, "/echo")
	equal(t, "path_info", got.PathInfo, "/sub/path")
	equal(t, "query", got.Query, "a=1&b=two")
	equal(t, "body", got.Body, `{"x":1}`)
	if want := []string{"/echo/sub/path", "a=1", "b=two"}; !slices.Equal(got.Args, want) {
		t.Errorf("args = %q, want %q", got.Args, want)
	}
	equal(t, "x-custom header", got.Headers["x-custom"], "yes")
	equal(t, "host header", got.Headers["host"], "edge.example:8080")
	equal(t, "CONTENT_TYPE", got.Env["CONTENT_TYPE"], "application/json")
	equal(t, "CONTENT_LENGTH", got.Env["CONTENT_LENGTH"], "7")
	equal(t, "X_FULL_URL", got.Env["X_FULL_URL"], "http://edge.example:8080/echo/sub/path?a=1&b=two")
	equal(t, "GREETING", got.Env["GREETING"], "hello from the manifest")
	if _, ok := got.Env["HTTP_AUTHORIZATION"]; ok {
		t.Error("guest saw the Authorization header")
	}
	// The guest sees exactly what cgiEnv builds, plus the manifest's.
	want := envMap(t, cgiEnv(nil, r, "/echo", 7, []envVar{{"GREETING", "hello from the manifest"}}))
	if len(got.Env) != len(want) {
		t.Errorf("guest environment has %d variables, want %d", len(got.Env), len(want))
	}
	for k, v := range want {
		if got.Env[k] != v {
			t.Errorf("guest %s = %q, want %q", k, got.Env[k], v)
		}
	}
}

// fault is one fault guest and what serving it must produce.
type fault struct {
	name   string
	limits Limits
	status int
	reason string // "" = success
	check  func(t *testing.T, w *httptest.ResponseRecorder, log string)
}

var faults = []fault{
	{name: "trap", status: 500, reason: reasonTrap},
	{name: "loop", limits: Limits{Timeout: 200 * time.Millisecond}, status: 504, reason: reasonDeadline},
	{name: "grow", limits: Limits{MemoryBytes: 4 << 20}, status: 500, reason: reasonMemory},
	{
		name: "huge", limits: Limits{MaxResponseBytes: 1 << 20}, status: 500, reason: reasonOversizeResponse,
		check: func(t *testing.T, w *httptest.ResponseRecorder, log string) {
			if !logHas(log, `"app":"huge"`, "response exceeds max_response 1048576 bytes") {
				t.Errorf("no oversize log line naming the app and the limit in:\n%s", log)
			}
		},
	},
	{name: "exit", status: 500, reason: reasonExit},
	{name: "exit0", status: 200},
	{name: "noheaders", status: 500, reason: reasonInvalidOutput},
	{
		name: "status", status: 404,
		check: func(t *testing.T, w *httptest.ResponseRecorder, _ string) {
			equal(t, "body", w.Body.String(), "no such thing\n")
			if got := w.Header().Values("X-Tern-Test"); !slices.Equal(got, []string{"a", "b"}) {
				t.Errorf("X-Tern-Test = %q, want both values", got)
			}
		},
	},
	{
		name: "redirect", status: 302,
		check: func(t *testing.T, w *httptest.ResponseRecorder, _ string) {
			equal(t, "Location", w.Header().Get("Location"), "https://example.com/elsewhere")
		},
	},
	{
		name: "stderr", status: 200,
		check: func(t *testing.T, w *httptest.ResponseRecorder, log string) {
			for _, line := range []string{"first line", "second line", "no newline at end"} {
				if !logHas(log, `"app":"stderr"`, `"line":"`+line+`"`) {
					t.Errorf("stderr line %q not logged with the app name in:\n%s", line, log)
				}
			}
		},
	},
}

func TestServeFaults(t *testing.T) {
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			h := newHost(t)
			app := h.load(t, f.name, "faults/"+f.name+".wasm", f.limits)
			start := time.Now()
			w := serve(app, httptest.NewRequest("GET", "/"+f.name, nil), "/"+f.name)
			took := time.Since(start)
			equal(t, "status", w.Code, f.status)
			log := h.log.String()
			if f.reason != "" {
				equal(t, "failures{"+f.reason+"}", h.failures(t, f.name, f.reason), 1)
				if !logHas(log, `"msg":"function failed"`, `"app":"`+f.name+`"`, `"reason":"`+f.reason+`"`) {
					t.Errorf("failure not logged with app and reason in:\n%s", log)
				}
			}
			if f.check != nil {
				f.check(t, w, log)
			}
			// Only the loop guest may take its time; the others must not
			// wait for any deadline (huge is stopped at its cap).
			if f.name != "loop" && took > 5*time.Second {
				t.Errorf("took %s", took)
			}
		})
	}
}

// TestServeFaultsConcurrently runs every fault guest at once, beside a
// stream of good requests on one app: each fault must stay in its own
// instance, and every good request must succeed.
func TestServeFaultsConcurrently(t *testing.T) {
	h := newHost(t)
	hello := h.load(t, "hello", "hello/hello.wasm", Limits{})
	var wg sync.WaitGroup
	for _, f := range faults {
		app := h.load(t, f.name, "faults/"+f.name+".wasm", f.limits)
		for range 3 {
			wg.Go(func() {
				w := serve(app, httptest.NewRequest("GET", "/"+f.name, nil), "/"+f.name)
				if w.Code != f.status {
					t.Errorf("%s: status %d, want %d", f.name, w.Code, f.status)
				}
			})
		}
	}
	done := make(chan struct{})
	var good sync.WaitGroup
	for range 2 {
		good.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				w := serve(hello, httptest.NewRequest("GET", "/hello", nil), "/hello")
				if w.Code != 200 || w.Body.String() != "Hello from Tern!\n" {
					t.Errorf("good request: %d %q", w.Code, w.Body.String())
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	good.Wait()
	if n := metricValue(t, h.reg, "tern_function_seconds", map[string]string{"app": "hello"}); n == 0 {
		t.Error("no good request ran")
	}
}

func TestServeClientGone(t *testing.T) {
	h := newHost(t)
	app := h.load(t, "loop", "faults/loop.wasm", Limits{Timeout: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	r := httptest.NewRequest("GET", "/loop", nil).WithContext(ctx)
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- serve(app, r, "/loop") }()
	waitFor(t, "the request to start", 5*time.Second, func() bool { return inflight(app) == 1 })
	cancel()
	select {
	case w := <-done:
		equal(t, "status", w.Code, statusClientClosed)
		equal(t, "failures{canceled}", h.failures(t, "loop", reasonCanceled), 1)
	case <-time.After(5 * time.Second):
		t.Fatal("instance not stopped when the client went away")
	}
}

func inflight(a *App) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inflight
}

func TestServeFilesystem(t *testing.T) {
	h := newHost(t)
	t.Run("none by default", func(t *testing.T) {
		app := h.load(t, "fsprobe", "faults/fsprobe.wasm", Limits{})
		w := serve(app, httptest.NewRequest("GET", "/fs", nil), "/fs")
		equal(t, "status", w.Code, 200)
		equal(t, "body", w.Body.String(), "no preopens\n")
	})
	t.Run("read-only when granted", func(t *testing.T) {
		dir := t.TempDir()
		must(t, os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("from the host\n"), 0o644))
		app, err := h.Load(context.Background(), AppConfig{
			Name: "fsprobe",
			Wasm: guest(t, "faults/fsprobe.wasm"),
			Dirs: map[string]string{"/data": dir},
		})
		must(t, err)
		defer app.Close(context.Background())
		w := serve(app, httptest.NewRequest("GET", "/fs", nil), "/fs")
		equal(t, "status", w.Code, 200)
		equal(t, "body", w.Body.String(), "from the host\nwrite: denied\n")
		if _, err := os.Stat(filepath.Join(dir, "new.txt")); !os.IsNotExist(err) {
			t.Errorf("guest created a file in a read-only mount: %v", err)
		}
	})
	t.Run("missing host directory", func(t *testing.T) {
		_, err := h.Load(context.Background(), AppConfig{
			Name: "fsprobe",
			Wasm: guest(t, "faults/fsprobe.wasm"),
			Dirs: map[string]string{"/data": filepath.Join(t.TempDir(), "missing")},
		})
		if err == nil || !strings.HasPrefix(err.Error(), "app fsprobe: directory for /data: ") {
			t.Fatalf("error = %v, want one naming the app and the mount", err)
		}
	})
}

func TestServeRequestBodyCap(t *testing.T) {
	h := newHost(t)
	app := h.load(t, "hello", "hello/hello.wasm", Limits{MaxRequestBytes: 16})
	tests := []struct {
		name   string
		body   io.Reader
		length int64 // -1 = unknown (chunked)
		status int
	}{
		{"at the cap", strings.NewReader(strings.Repeat("x", 16)), 16, 200},
		{"declared over the cap", strings.NewReader(strings.Repeat("x", 17)), 17, 413},
		{"chunked over the cap", io.MultiReader(strings.NewReader(strings.Repeat("x", 17))), -1, 413},
		{"chunked at the cap", io.MultiReader(strings.NewReader(strings.Repeat("x", 16))), -1, 200},
		{"broken body", iotest.ErrReader(errors.New("connection reset")), -1, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/hello", tt.body)
			r.ContentLength = tt.length
			w := serve(app, r, "/hello")
			equal(t, "status", w.Code, tt.status)
		})
	}
	equal(t, "failures{oversize_request}", h.failures(t, "hello", reasonOversizeRequest), 2)
	equal(t, "failures{bad_request}", h.failures(t, "hello", reasonBadRequest), 1)
	if !logHas(h.log.String(), `"app":"hello"`, "exceeds max_request 16 bytes") {
		t.Errorf("no log naming the app and the limit in:\n%s", h.log.String())
	}
}

// TestAppCloseInFlight closes apps while requests run: requests in flight
// finish normally, later ones answer 503, and the compiled module is
// released only when the last request is done.
func TestAppCloseInFlight(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	app, err := h.Load(ctx, AppConfig{Name: "loop", Wasm: guest(t, "faults/loop.wasm"), Limits: Limits{Timeout: 300 * time.Millisecond}})
	must(t, err)
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- serve(app, httptest.NewRequest("GET", "/loop", nil), "/loop") }()
	waitFor(t, "the request to start", 5*time.Second, func() bool { return inflight(app) == 1 })

	must(t, app.Close(ctx))
	equal(t, "modules held while in flight", h.moduleCount(), 1)
	equal(t, "status after close", serve(app, httptest.NewRequest("GET", "/loop", nil), "/loop").Code, 503)
	equal(t, "in-flight status", (<-done).Code, 504)
	equal(t, "modules held after the last request", h.moduleCount(), 0)
	must(t, app.Close(ctx)) // idempotent

	// Many requests racing one Close: each one either runs or is refused.
	hello, err := h.Load(ctx, AppConfig{Name: "hello", Wasm: guest(t, "hello/hello.wasm")})
	must(t, err)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			w := serve(hello, httptest.NewRequest("GET", "/hello", nil), "/hello")
			if w.Code != 200 && w.Code != 503 {
				t.Errorf("request %d: status %d", i, w.Code)
			}
		})
		if i == 16 {
			must(t, hello.Close(ctx))
		}
	}
	wg.Wait()
	equal(t, "modules held after all closed", h.moduleCount(), 0)
}

func (h *testHost) moduleCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.modules)
}

// TestServeAfterRuntimeClose closes the runtime under a running guest.
// wazero then frees the memories of instances still running: the loop
// guest writes to its memory all the while, and a memory unmapped then
// would crash the process.
func TestServeAfterRuntimeClose(t *testing.T) {
	h := newHost(t)
	app := h.load(t, "hello", "hello/hello.wasm", Limits{})
	loop := h.load(t, "loop", "faults/loop.wasm", Limits{Timeout: time.Minute})
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- serve(loop, httptest.NewRequest("GET", "/loop", nil), "/loop") }()
	waitFor(t, "the request to start", 5*time.Second, func() bool { return inflight(loop) == 1 })
	must(t, h.Close(context.Background()))
	select {
	case w := <-done:
		equal(t, "in-flight status", w.Code, 503)
	case <-time.After(5 * time.Second):
		t.Fatal("running instance not stopped by Close")
	}
	equal(t, "status", serve(app, httptest.NewRequest("GET", "/hello", nil), "/hello").Code, 503)
	_, err := h.Load(context.Background(), AppConfig{Name: "hello", Wasm: guest(t, "hello/hello.wasm")})
	if err == nil || err.Error() != "app hello: wasm runtime closed" {
		t.Fatalf("Load after Close: %v", err)
	}
}
