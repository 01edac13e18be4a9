package wasmhost

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tern-edge/tern/internal/reqid"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"
)

// Defaults for zero Limits fields.
const (
	DefaultMemoryBytes      = 64 << 20
	DefaultTimeout          = 10 * time.Second
	DefaultMaxResponseBytes = 8 << 20
	DefaultMaxRequestBytes  = 8 << 20
)

// pageSize is the wasm page size: memory limits are whole pages.
const pageSize = 64 << 10

// Limits bound one request's instance.
type Limits struct {
	MemoryBytes      uint64        // linear memory cap (rounded down to 64KiB pages); 0 = default 64 MiB
	Timeout          time.Duration // wall clock per request; 0 = default 10s
	MaxResponseBytes int64         // stdout cap; 0 = default 8 MiB
	MaxRequestBytes  int64         // request body cap (413 when exceeded); 0 = default 8 MiB
}

// resolve fills in defaults, checks the limits and returns the memory cap
// in pages.
func (l Limits) resolve(app string) (Limits, uint32, error) {
	if l.MemoryBytes == 0 {
		l.MemoryBytes = DefaultMemoryBytes
	}
	if l.Timeout == 0 {
		l.Timeout = DefaultTimeout
	}
	if l.MaxResponseBytes == 0 {
		l.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if l.MaxRequestBytes == 0 {
		l.MaxRequestBytes = DefaultMaxRequestBytes
	}
	pages := l.MemoryBytes / pageSize
	switch {
	case pages == 0:
		return l, 0, fmt.Errorf("app %s: memory limit %d bytes is less than one 64KiB page", app, l.MemoryBytes)
	case pages > 1<<16:
		return l, 0, fmt.Errorf("app %s: memory limit %d bytes is over the 4GiB wasm32 maximum", app, l.MemoryBytes)
	case l.Timeout < 0:
		return l, 0, fmt.Errorf("app %s: negative timeout %s", app, l.Timeout)
	case l.MaxResponseBytes < 0:
		return l, 0, fmt.Errorf("app %s: negative max_response %d", app, l.MaxResponseBytes)
	case l.MaxRequestBytes < 0:
		return l, 0, fmt.Errorf("app %s: negative max_request %d", app, l.MaxRequestBytes)
	}
	l.MemoryBytes = pages * pageSize
	return l, uint32(pages), nil
}

// AppConfig is what the runtime needs to serve one app version.
type AppConfig struct {
	Name   string // app name, for logs and metrics
	Digest string // "sha256:<hex>" of Wasm; the compile-cache key ("" = computed)
	// Verified says the caller has checked Digest against Wasm, so Load
	// need not hash a large module again. The compiled module is shared
	// by digest: a wrong Digest here would serve one app another's code.
	Verified bool
	Wasm     []byte
	Limits   Limits
	Env      map[string]string // extra environment variables granted by the manifest
	Dirs     map[string]string // guest path -> host directory, mounted READ-ONLY; none = no filesystem
	Clock    bool              // real wall/monotonic clock; false = wazero's fake clocks

	// AllowedHosts are the destinations the guest may reach with WAGI's
	// outbound HTTP (wasi_experimental_http): "https://api.example.com",
	// "http://10.0.0.2:8080", a bare "host[:port]" (http or https), or
	// "insecure:allow-all". None = every request is denied.
	AllowedHosts []string
	// KV is the key-value store the guest reaches through tern_kv, in a
	// namespace of its own (the app's Name). nil = every call is denied.
	KV KV
	// AI runs the guest's tern_ai calls, as the app Name; which models
	// it may use is the AI's decision. nil = every call is denied.
	AI AI
	// Cache is the app's own key space in the HTTP cache, which the guest
	// reaches through tern_cache. nil = every call is denied.
	Cache Cache
}

// manifestEnv checks the manifest's variables and returns them sorted.
// They may not shadow a CGI meta-variable or an HTTP_ header variable:
// WAGI lets the request win silently; Tern says so at load instead.
func manifestEnv(app string, env map[string]string) ([]envVar, error) {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	vars := make([]envVar, 0, len(keys))
	for _, k := range keys {
		v := env[k]
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			return nil, fmt.Errorf("app %s: invalid environment variable name %q", app, k)
		case cgiVars[k] || strings.HasPrefix(k, "HTTP_"):
			return nil, fmt.Errorf("app %s: environment variable %s would shadow a CGI variable", app, k)
		case strings.Contains(v, "\x00"):
			return nil, fmt.Errorf("app %s: environment variable %s contains NUL", app, k)
		}
		vars = append(vars, envVar{k, v})
	}
	return vars, nil
}

// baseModuleConfig is the part of an app's module configuration that is
// the same for every request, built once at Load. The environment is not
// in it: see instantiateWASI. It returns the roots of the app's mounts,
// open for as long as the app serves; on error none is left open.
func baseModuleConfig(cfg AppConfig) (wazero.ModuleConfig, []*os.Root, error) {
	// An empty name makes instances anonymous, so any number can run at
	// once; the default start function is _start.
	base := wazero.NewModuleConfig().WithName("").WithRandSource(rand.Reader)
	if cfg.Clock {
		base = base.WithSysWalltime().WithSysNanotime().WithSysNanosleep()
	}
	if len(cfg.Dirs) == 0 {
		return base, nil, nil
	}
	guests := make([]string, 0, len(cfg.Dirs))
	for g := range cfg.Dirs {
		guests = append(guests, g)
	}
	slices.Sort(guests)
	fsc := wazero.NewFSConfig()
	var roots []*os.Root
	for _, g := range guests {
		host := cfg.Dirs[g]
		if g == "" || strings.Contains(g, "\x00") {
			closeRoots(roots)
			return nil, nil, fmt.Errorf("app %s: invalid guest path %q for directory %s", cfg.Name, g, host)
		}
		fi, err := os.Stat(host)
		if err == nil && !fi.IsDir() {
			err = fmt.Errorf("%s is not a directory", host)
		}
		var mount experimentalsys.FS
		var root *os.Root
		if err == nil {
			mount, root, err = openMount(host)
		}
		if err != nil {
			closeRoots(roots)
			return nil, nil, fmt.Errorf("app %s: directory for %s: %w", cfg.Name, g, err)
		}
		roots = append(roots, root)
		fsc = fsc.(sysfs.FSConfig).WithSysFSMount(mount, g)
	}
	return base.WithFSConfig(fsc), roots, nil
}

// closeRoots closes the roots of an app's mounts.
func closeRoots(roots []*os.Root) {
	for _, r := range roots {
		_ = r.Close()
	}
}

// App serves requests for one loaded app version. It is safe for
// concurrent use.
type App struct {
	rt      *Runtime
	name    string
	mod     *module
	limits  Limits
	env     []envVar // the manifest's variables
	base    wazero.ModuleConfig
	roots   []*os.Root // the mounts in base, closed with the module
	allow   allowList
	client  *http.Client // outbound HTTP, following redirects only within allow
	kv      KV
	ai      AI
	cache   Cache
	logger  *slog.Logger
	metrics *appMetrics

	mu       sync.Mutex
	inflight int  // requests in Serve; guarded by mu
	closed   bool // guarded by mu
}

// errAppClosed is the cause logged for a request that arrived after Close.
var errAppClosed = errors.New("app closed")

// Close releases the app's compiled module once no request uses it. It
// does not wait: requests in flight finish normally, and the last one to
// finish releases the module. Requests that arrive later answer 503.
func (a *App) Close(ctx context.Context) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	idle := a.inflight == 0
	a.mu.Unlock()
	if idle {
		return a.releaseResources(ctx)
	}
	return nil
}

// releaseResources closes the app's mounts and releases its module, once
// no request can use them.
func (a *App) releaseResources(ctx context.Context) error {
	closeRoots(a.roots)
	return a.rt.releaseModule(ctx, a.mod)
}

func (a *App) acquire() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || a.rt.closed.Load() {
		return false
	}
	a.inflight++
	return true
}

func (a *App) release() {
	a.mu.Lock()
	a.inflight--
	last := a.closed && a.inflight == 0
	a.mu.Unlock()
	if last {
		if err := a.releaseResources(context.Background()); err != nil {
			a.logger.Warn("release module", "err", err)
		}
	}
}

// requestPool recycles per-request state, to keep allocation per request
// low.
var requestPool = sync.Pool{New: func() any { return new(request) }}

// statusClientClosed is logged and sent (to no one) when the client goes
// away before the guest finishes, as nginx does.
const statusClientClosed = 499

// Serve runs one request in a fresh instance. route is the matched route
// path prefix (for SCRIPT_NAME / X_MATCHED_ROUTE / PATH_INFO relative to
// it); WAGI's "/prefix/..." form is accepted too.
//
// The guest gets the WAGI environment and arguments, the request body on
// stdin and the app's stderr logger; its stdout, parsed as a CGI response,
// is the response. Failures answer: 413 for a body over max_request, 504
// when the timeout passes, 503 after Close, and 500 for a trap, a non-zero
// exit, memory exhausted, a response over max_response or invalid CGI
// output. Each failure is logged with the app and its cause.
func (a *App) Serve(w http.ResponseWriter, r *http.Request, route string) {
	if !a.acquire() {
		a.fail(w, r, http.StatusServiceUnavailable, reasonClosed,
			fmt.Errorf("app %s: %w", a.name, errAppClosed), 0)
		return
	}
	defer a.release()

	body := getBuf()
	defer putBuf(body)
	if status, reason, err := a.readBody(body, r); err != nil {
		a.fail(w, r, status, reason, err, 0)
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), a.limits.Timeout)
	defer cancel()
	stdout := &stdoutBuffer{buf: getBuf(), max: a.limits.MaxResponseBytes, cancel: cancel}
	defer putBuf(stdout.buf)
	stderr := &stderrLog{ctx: r.Context(), logger: a.logger}

	q := requestPool.Get().(*request)
	q.app = a
	defer func() {
		q.reset()
		requestPool.Put(q)
	}()
	q.vars = cgiEnv(q.vars, r, route, int64(body.Len()), a.env)
	q.setEnv(q.vars)
	q.args = cgiArgs(q.args, r)
	cfg := a.base.WithArgs(q.args...).
		WithStdin(bytes.NewReader(body.Bytes())).
		WithStdout(stdout).
		WithStderr(stderr)

	start := time.Now()
	q.mem.pool = &a.rt.mem
	ictx := experimental.WithMemoryAllocator(withRequest(ctx, q), &q.mem)
	mod, err := a.mod.eng.rt.InstantiateModule(ictx, a.mod.compiled, cfg)
	var memBytes uint32
	if mod != nil {
		if mem := mod.Memory(); mem != nil {
			memBytes = mem.Size()
		}
		_ = mod.Close(context.Background())
	}
	// The instance has ended, and nothing runs on its memory any more.
	q.mem.release()
	took := time.Since(start)
	a.metrics.observe(took)
	stderr.flush()

	if status, reason, err := a.classify(ctx, r.Context(), err, mod != nil, stdout.over, memBytes); err != nil {
		a.fail(w, r, status, reason, err, took)
		return
	}
	resp, err := parseCGI(stdout.buf.Bytes())
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, reasonInvalidOutput,
			fmt.Errorf("app %s: invalid CGI output: %w", a.name, err), took)
		return
	}
	if len(resp.dropped) > 0 {
		a.logger.LogAttrs(r.Context(), slog.LevelWarn, "dropped CGI header lines",
			slog.Any("lines", resp.dropped))
	}
	h := w.Header()
	for k, v := range resp.header {
		h[k] = v
	}
	q.aiRetryAfter(resp.status, h)
	if resp.status == http.StatusNoContent || resp.status == http.StatusNotModified {
		// These statuses have no body (RFC 9110 15.3.5, 15.4.5).
		w.WriteHeader(resp.status)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}

// readBody reads the request body into buf, up to max_request. It returns
// the status and failure reason to answer with when it fails.
func (a *App) readBody(buf *bytes.Buffer, r *http.Request) (int, string, error) {
	limit := a.limits.MaxRequestBytes
	if r.ContentLength > limit {
		return http.StatusRequestEntityTooLarge, reasonOversizeRequest,
			fmt.Errorf("app %s: request body of %d bytes exceeds max_request %d bytes", a.name, r.ContentLength, limit)
	}
	if r.Body == nil || r.Body == http.NoBody {
		return 0, "", nil
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	var tooBig *http.MaxBytesError
	// The front door's body errors say their status: 408 for a sender
	// under the minimum rate.
	var se interface{ HTTPStatus() int }
	switch {
	case errors.As(err, &tooBig) || n > limit:
		return http.StatusRequestEntityTooLarge, reasonOversizeRequest,
			fmt.Errorf("app %s: request body exceeds max_request %d bytes", a.name, limit)
	case errors.As(err, &se) && se.HTTPStatus() == http.StatusRequestTimeout:
		return http.StatusRequestTimeout, reasonBadRequest, fmt.Errorf("app %s: read request body: %w", a.name, err)
	case err != nil:
		return http.StatusBadRequest, reasonBadRequest, fmt.Errorf("app %s: read request body: %w", a.name, err)
	}
	return 0, "", nil
}

// classify maps the outcome of an instance to a status, failure reason
// and error; a nil error means the guest succeeded.
func (a *App) classify(ctx, reqCtx context.Context, err error, ran, overflow bool, memBytes uint32) (int, string, error) {
	if overflow {
		return http.StatusInternalServerError, reasonOversizeResponse,
			fmt.Errorf("app %s: response exceeds max_response %d bytes", a.name, a.limits.MaxResponseBytes)
	}
	// Past its deadline a request answers 504 whatever the guest did: an
	// answer that races the deadline (say, a guest reporting that its
	// outbound call timed out) is still a timeout.
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && reqCtx.Err() == nil {
		return http.StatusGatewayTimeout, reasonDeadline,
			fmt.Errorf("app %s: exceeded timeout %s", a.name, a.limits.Timeout)
	}
	if err == nil {
		return 0, "", nil
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch code := exit.ExitCode(); {
		case code == sys.ExitCodeDeadlineExceeded,
			code == sys.ExitCodeContextCanceled && errors.Is(ctx.Err(), context.DeadlineExceeded):
			return http.StatusGatewayTimeout, reasonDeadline,
				fmt.Errorf("app %s: exceeded timeout %s", a.name, a.limits.Timeout)
		case code == exitCodeRuntimeClosed && a.rt.closed.Load():
			return http.StatusServiceUnavailable, reasonClosed,
				fmt.Errorf("app %s: stopped: %w", a.name, ErrClosed)
		case code == sys.ExitCodeContextCanceled && reqCtx.Err() != nil:
			return statusClientClosed, reasonCanceled,
				fmt.Errorf("app %s: client went away: %w", a.name, context.Cause(reqCtx))
		case a.memoryExhausted(memBytes):
			return http.StatusInternalServerError, reasonMemory,
				fmt.Errorf("app %s: exited with code %d with memory at its %d-byte cap", a.name, code, a.limits.MemoryBytes)
		default:
			return http.StatusInternalServerError, reasonExit,
				fmt.Errorf("app %s: exited with code %d", a.name, code)
		}
	}
	switch {
	case !ran:
		return http.StatusInternalServerError, reasonInstantiate, fmt.Errorf("app %s: instantiate: %w", a.name, err)
	case a.memoryExhausted(memBytes):
		return http.StatusInternalServerError, reasonMemory,
			fmt.Errorf("app %s: trapped with memory at its %d-byte cap: %w", a.name, a.limits.MemoryBytes, err)
	default:
		return http.StatusInternalServerError, reasonTrap, fmt.Errorf("app %s: %w", a.name, err)
	}
}

// memoryExhausted guesses whether a failed guest ran out of memory. wazero
// does not report a refused memory.grow, so this looks at what is left:
// allocators grow memory in chunks, and the last chunk that did not fit
// leaves the memory near, not at, its cap. Within a quarter of the cap is
// near; the guess only picks the metric's reason, never the status.
func (a *App) memoryExhausted(memBytes uint32) bool {
	return uint64(memBytes) >= a.limits.MemoryBytes-a.limits.MemoryBytes/4
}

// fail logs a failed request, counts it and answers with status.
// The client is told only the status and the request's id: the error,
// which may hold a guest's trap and stack, goes to the log line with it.
func (a *App) fail(w http.ResponseWriter, r *http.Request, status int, reason string, err error, took time.Duration) {
	a.metrics.fail(reason)
	level := slog.LevelWarn
	if reason == reasonCanceled {
		level = slog.LevelInfo
	}
	text := http.StatusText(status)
	if text == "" {
		text = "client closed request"
	}
	id := reqid.Error(w, r, status, text)
	a.logger.LogAttrs(r.Context(), level, "function failed",
		slog.String("reason", reason), slog.Int("status", status), slog.String("request_id", id),
		slog.Duration("took", took), slog.String("err", err.Error()))
}
