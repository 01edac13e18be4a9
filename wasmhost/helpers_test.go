package wasmhost

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

// testCacheDir is a compilation cache shared by every test runtime, so
// the Go-built echo guest compiles once per test binary, not per test.
var testCacheDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wasmhost-cache-")
	if err != nil {
		panic(err)
	}
	testCacheDir = dir
	// goleak waits for the goroutines the tests started (instance
	// watchers, servers, clients) to end and fails the run on those that
	// do not; its defaults skip the runtime's and the fuzz engine's own.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// equal fails the test if got != want.
func equal[T comparable](t testing.TB, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %#v, want %#v", what, got, want)
	}
}

// must fails the test on a non-nil error.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// guest reads a committed guest module, relative to guests/.
func guest(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "guests", name))
	must(t, err)
	return b
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testHost is a Runtime with its log and metrics exposed to the test.
type testHost struct {
	*Runtime
	log *syncBuffer
	reg *prometheus.Registry
}

func newHost(t testing.TB) *testHost {
	t.Helper()
	h := &testHost{log: &syncBuffer{}, reg: prometheus.NewRegistry()}
	rt, err := New(context.Background(), Config{
		CacheDir:   testCacheDir,
		Logger:     slog.New(slog.NewJSONHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: h.reg,
		// The race detector slows wazero's compiler twentyfold: the
		// Go-built echo guest took over a minute on a busy 2-core machine.
		Compile: CompileConfig{Timeout: 30 * time.Minute},
	})
	must(t, err)
	h.Runtime = rt
	t.Cleanup(func() { must(t, rt.Close(context.Background())) })
	return h
}

// load loads a committed guest as app name, closing it when the test ends.
func (h *testHost) load(t testing.TB, name, path string, limits Limits) *App {
	t.Helper()
	app, err := h.Load(context.Background(), AppConfig{Name: name, Wasm: guest(t, path), Limits: limits})
	must(t, err)
	t.Cleanup(func() { must(t, app.Close(context.Background())) })
	return app
}

// failures returns tern_function_failures_total for app and reason.
func (h *testHost) failures(t testing.TB, app, reason string) float64 {
	t.Helper()
	return metricValue(t, h.reg, "tern_function_failures_total", map[string]string{"app": app, "reason": reason})
}

// metricValue returns the value of a counter, or the sample count of a
// histogram, with exactly the given labels; 0 if there is none.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	must(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if hg := m.GetHistogram(); hg != nil {
				return float64(hg.GetSampleCount())
			}
		}
	}
	return 0
}

// serve runs one request through app on route and returns the recorder.
func serve(app *App, r *http.Request, route string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	app.Serve(w, r, route)
	return w
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// logHas reports whether some log line contains every one of parts.
func logHas(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}
