package wasmhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// ErrInvalidModule reports a module the host cannot run: not valid wasm,
// failing to compile, not a WASI command, or importing what the host
// does not provide.
var ErrInvalidModule = errors.New("invalid wasm module")

// ErrDigestMismatch reports an AppConfig whose Digest is not the digest of
// its Wasm.
var ErrDigestMismatch = errors.New("wasm digest mismatch")

// ErrClosed reports a call on a closed Runtime.
var ErrClosed = errors.New("wasm runtime closed")

// Config configures a Runtime.
type Config struct {
	CacheDir   string                // wazero on-disk compilation cache dir; "" = none
	Logger     *slog.Logger          // nil = discard
	Registerer prometheus.Registerer // nil = don't register metrics
	// Compile bounds what compiling a module may cost: what it may
	// contain, how long and how much memory.
	Compile CompileConfig
}

// Runtime compiles guest modules and runs them. It is safe for concurrent
// use. Apps loaded from it stay usable until it is closed.
type Runtime struct {
	logger  *slog.Logger
	metrics *metrics
	cache   wazero.CompilationCache
	mem     memPool
	comp    *compiler
	closed  atomic.Bool
	// compiles counts module compilations, for tests of the module cache.
	compiles atomic.Int64

	// mu guards the maps below. It is never held while compiling.
	mu      sync.Mutex
	engines map[uint32]*engine    // by memory limit in pages
	modules map[moduleKey]*module // compiled modules in use by Apps
}

// engine is one wazero runtime. A memory limit is per wazero runtime, so
// there is one engine per distinct limit; all share the compilation cache,
// so a module compiles once however many limits it runs under.
type engine struct {
	pages uint32
	rt    wazero.Runtime
}

// moduleKey identifies a compiled module: the same wasm under another
// memory limit belongs to another engine.
type moduleKey struct {
	digest string
	pages  uint32
}

// module is a compiled module shared by every App with its key.
type module struct {
	key      moduleKey
	eng      *engine
	compiled wazero.CompiledModule
	err      error         // set if compiling or validating failed
	ready    chan struct{} // closed once compiled or err is set
	refs     int           // Apps holding it and Loads waiting on it; guarded by Runtime.mu
}

// New returns a Runtime. With cfg.CacheDir set, compiled code persists in
// that directory, so a restarted agent skips compiling what it ran before.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	var cache wazero.CompilationCache
	if cfg.CacheDir != "" {
		if cache, err = wazero.NewCompilationCacheWithDir(cfg.CacheDir); err != nil {
			return nil, fmt.Errorf("open compilation cache %s: %w", cfg.CacheDir, err)
		}
	} else {
		cache = wazero.NewCompilationCache()
	}
	r := &Runtime{
		logger:  logger,
		metrics: m,
		cache:   cache,
		comp:    newCompiler(cfg.Compile),
		engines: make(map[uint32]*engine),
		modules: make(map[moduleKey]*module),
	}
	r.mem.closed = &r.closed
	return r, nil
}

// exitCodeRuntimeClosed is the exit code instances still running see when
// the runtime closes: wazero would otherwise close them with 0, which
// reads as success and would send their partial output.
const exitCodeRuntimeClosed uint32 = 0xfffffffe

// Close closes every engine and the compilation cache. Instances still
// running are stopped and answer 503, so close the runtime after draining
// requests. Apps loaded from it answer 503 afterwards.
//
// Compiles still running, dropped at their deadline or not, cannot be
// stopped, and wazero must not close an engine under one: Close waits for
// them until ctx is done, and past that leaves the engines to the
// process's exit.
func (r *Runtime) Close(ctx context.Context) error {
	if r.closed.Swap(true) {
		return nil
	}
	r.mu.Lock()
	engines := r.engines
	r.engines = nil
	r.modules = nil
	r.mu.Unlock()
	if err := r.comp.wait(ctx); err != nil {
		r.logger.Warn("compiles still running; leaving the wasm engines open", "err", err)
		return fmt.Errorf("close wasm runtime: waiting for compiles: %w", err)
	}
	var errs []error
	for _, e := range engines {
		if err := e.rt.CloseWithExitCode(ctx, exitCodeRuntimeClosed); err != nil {
			errs = append(errs, fmt.Errorf("close wasm engine (%d pages): %w", e.pages, err))
		}
	}
	r.mem.close()
	if err := r.cache.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close compilation cache: %w", err))
	}
	return errors.Join(errs...)
}

// Load compiles (once per digest and memory limit; versions and apps with
// the same wasm and limit share one compiled module) and returns an App.
//
// # Errors
//
// A module that exceeds the Config's scan limits is a *LimitError (which
// matches ErrLimit and ErrInvalidModule); one whose compile outlasts the
// timeout, or finds no compile memory free before it, wraps
// ErrCompileBudget. A module that is not valid wasm, fails to compile, does not export
// `_start` (a WASI command) or imports what the host does not provide is
// an error wrapping ErrInvalidModule. A Digest that does not match Wasm
// wraps ErrDigestMismatch. Bad limits, environment or directories are
// plain errors naming the app and the field.
func (r *Runtime) Load(ctx context.Context, cfg AppConfig) (*App, error) {
	if cfg.Name == "" {
		return nil, errors.New("load app: empty name")
	}
	digest := cfg.Digest
	if !cfg.Verified || digest == "" {
		sum := sha256.Sum256(cfg.Wasm)
		digest = "sha256:" + hex.EncodeToString(sum[:])
		if cfg.Digest != "" && cfg.Digest != digest {
			return nil, fmt.Errorf("app %s: digest %s, wasm is %s: %w", cfg.Name, cfg.Digest, digest, ErrDigestMismatch)
		}
	}
	limits, pages, err := cfg.Limits.resolve(cfg.Name)
	if err != nil {
		return nil, err
	}
	extra, err := manifestEnv(cfg.Name, cfg.Env)
	if err != nil {
		return nil, err
	}
	allow, err := parseAllowedHosts(cfg.Name, cfg.AllowedHosts)
	if err != nil {
		return nil, err
	}
	base, roots, err := baseModuleConfig(cfg)
	if err != nil {
		return nil, err
	}
	m, err := r.acquireModule(ctx, cfg.Name, moduleKey{digest: digest, pages: pages}, cfg.Wasm)
	if err != nil {
		closeRoots(roots)
		return nil, err
	}
	logger := r.logger.With("app", cfg.Name, "digest", shortDigest(digest))
	return &App{
		rt:      r,
		name:    cfg.Name,
		mod:     m,
		limits:  limits,
		env:     extra,
		base:    base,
		roots:   roots,
		allow:   allow,
		client:  newOutboundClient(allow),
		kv:      cfg.KV,
		ai:      cfg.AI,
		cache:   cfg.Cache,
		logger:  logger,
		metrics: r.metrics.forApp(cfg.Name),
	}, nil
}

// acquireModule returns the compiled module for key, compiling it if no
// App holds it yet, and takes a reference to it. Concurrent Loads of one
// key compile once: the first compiles, the others wait for it.
func (r *Runtime) acquireModule(ctx context.Context, app string, key moduleKey, wasm []byte) (*module, error) {
	r.mu.Lock()
	if r.closed.Load() {
		r.mu.Unlock()
		return nil, fmt.Errorf("app %s: %w", app, ErrClosed)
	}
	if m, ok := r.modules[key]; ok {
		m.refs++
		r.mu.Unlock()
		select {
		case <-m.ready:
		case <-ctx.Done():
			r.releaseModule(context.WithoutCancel(ctx), m)
			return nil, fmt.Errorf("app %s: waiting for compilation: %w", app, ctx.Err())
		}
		if m.err != nil {
			r.releaseModule(ctx, m)
			return nil, fmt.Errorf("app %s: %w", app, m.err)
		}
		return m, nil
	}
	eng, err := r.engine(ctx, key.pages)
	if err != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("app %s: %w", app, err)
	}
	m := &module{key: key, eng: eng, ready: make(chan struct{}), refs: 1}
	r.modules[key] = m
	r.mu.Unlock()

	start := time.Now()
	m.compiled, m.err = r.compile(ctx, eng, wasm)
	r.compiles.Add(1)
	close(m.ready)
	if m.err != nil {
		// Forget the failure at once, so that a later Load compiles afresh
		// rather than inheriting it; waiters already hold m.
		r.mu.Lock()
		if r.modules != nil && r.modules[key] == m {
			delete(r.modules, key)
		}
		r.mu.Unlock()
		r.releaseModule(ctx, m)
		return nil, fmt.Errorf("app %s: %w", app, m.err)
	}
	r.logger.LogAttrs(ctx, slog.LevelInfo, "compiled module",
		slog.String("app", app), slog.String("digest", shortDigest(key.digest)),
		slog.Uint64("memory_pages", uint64(key.pages)), slog.Duration("took", time.Since(start)))
	return m, nil
}

// releaseModule drops a reference to m and closes it when none remain.
func (r *Runtime) releaseModule(ctx context.Context, m *module) error {
	r.mu.Lock()
	m.refs--
	last := m.refs == 0
	if last && r.modules != nil && r.modules[m.key] == m {
		delete(r.modules, m.key)
	}
	r.mu.Unlock()
	if !last || m.compiled == nil || r.closed.Load() {
		// A closed runtime has closed every compiled module already.
		return nil
	}
	if err := m.compiled.Close(ctx); err != nil {
		return fmt.Errorf("close compiled module %s: %w", shortDigest(m.key.digest), err)
	}
	return nil
}

// engine returns the engine for a memory limit, creating it on first use.
// r.mu must be held.
func (r *Runtime) engine(ctx context.Context, pages uint32) (*engine, error) {
	if e, ok := r.engines[pages]; ok {
		return e, nil
	}
	rc := wazero.NewRuntimeConfig().
		WithCompilationCache(r.cache).
		// DWARF would let a guest's trap name source lines, but wazero
		// keeps a copy of every custom section of every compiled module
		// for it: memory per app on a node of thousands, and a copy per
		// install. Traps still name functions (from the name section).
		WithDebugInfoEnabled(false).
		WithMemoryLimitPages(pages).
		WithCloseOnContextDone(true)
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if err := instantiateHostModules(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	e := &engine{pages: pages, rt: rt}
	r.engines[pages] = e
	return e, nil
}

// compile compiles wasm on eng and checks that the host can run it.
func (r *Runtime) compile(ctx context.Context, eng *engine, wasm []byte) (wazero.CompiledModule, error) {
	compiled, err := r.comp.compile(ctx, eng, wasm)
	if err != nil {
		return nil, err
	}
	if err := checkModule(eng, compiled); err != nil {
		_ = compiled.Close(ctx)
		return nil, fmt.Errorf("%w: %w", ErrInvalidModule, err)
	}
	return compiled, nil
}

// checkModule reports why the host cannot run a compiled module, if it
// cannot: catching it at Load names the cause once, instead of failing
// every request.
func checkModule(eng *engine, compiled wazero.CompiledModule) error {
	start, ok := compiled.ExportedFunctions()["_start"]
	if !ok {
		return errors.New("no _start export: not a WASI command module")
	}
	if len(start.ParamTypes()) != 0 || len(start.ResultTypes()) != 0 {
		return errors.New("_start must take no parameters and return nothing")
	}
	if mems := compiled.ImportedMemories(); len(mems) > 0 {
		modName, name, _ := mems[0].Import()
		return fmt.Errorf("imports memory %s.%s, which the host does not provide", modName, name)
	}
	for _, f := range compiled.ImportedFunctions() {
		modName, name, _ := f.Import()
		host := eng.rt.Module(modName)
		if host == nil {
			return fmt.Errorf("imports %s.%s: the host has no module %q", modName, name, modName)
		}
		def, ok := host.ExportedFunctionDefinitions()[name]
		if !ok {
			return fmt.Errorf("imports %s.%s, which the host does not provide", modName, name)
		}
		if !sameTypes(def.ParamTypes(), f.ParamTypes()) || !sameTypes(def.ResultTypes(), f.ResultTypes()) {
			return fmt.Errorf("imports %s.%s with the wrong signature", modName, name)
		}
	}
	return nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// shortDigest abbreviates a digest for logs.
func shortDigest(d string) string {
	const n = len("sha256:") + 12
	if len(d) > n {
		return d[:n]
	}
	return d
}
