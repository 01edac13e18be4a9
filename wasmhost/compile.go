package wasmhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"golang.org/x/sync/semaphore"
)

// CompileConfig bounds what compiling one module may cost the host. Zero
// fields take the defaults below.
type CompileConfig struct {
	// Scan bounds what a module may contain; it is checked before
	// compiling (see ScanLimits).
	Scan ScanLimits
	// Timeout is how long a compile may take; default
	// DefaultCompileTimeout.
	Timeout time.Duration
	// Memory is the budget of compile memory: compiles run at once only
	// while their estimated allocations fit in it; default
	// DefaultCompileMemory.
	Memory int64
}

// Defaults of CompileConfig.
const (
	DefaultCompileTimeout = 2 * time.Minute
	DefaultCompileMemory  = 1 << 30
)

// ErrCompileBudget reports a compile that did not finish within its
// deadline, or could not start for lack of compile memory before it.
var ErrCompileBudget = errors.New("compile over budget")

// compiler runs compiles under a deadline and a memory budget.
//
// wazero 1.12 cannot interrupt a compile: CompileModule looks at its
// context only between functions, and only when compiling with several
// workers, and a bomb is one function. So each compile runs in its own
// goroutine, and the caller stops waiting at the deadline: the install
// fails at once, and the goroutine runs to its end, when its result is
// closed. What a dropped compile costs until then (a core, its memory)
// stays counted in the memory budget, so dropped compiles cannot pile up
// past it; the scan limits are what bound how long one can run.
type compiler struct {
	scan    ScanLimits
	timeout time.Duration
	memory  int64
	budget  *semaphore.Weighted

	mu      sync.Mutex
	closed  bool           // no compile starts once set; guarded by mu
	running sync.WaitGroup // compile goroutines, dropped ones included
}

func newCompiler(cfg CompileConfig) *compiler {
	c := &compiler{scan: cfg.Scan.withDefaults(), timeout: cfg.Timeout, memory: cfg.Memory}
	if c.timeout <= 0 {
		c.timeout = DefaultCompileTimeout
	}
	if c.memory <= 0 {
		c.memory = DefaultCompileMemory
	}
	c.budget = semaphore.NewWeighted(c.memory)
	return c
}

// compileResult is what a compile goroutine hands back.
type compileResult struct {
	compiled wazero.CompiledModule
	err      error
}

// compile scans wasm, then compiles it on eng under the deadline and the
// memory budget.
func (c *compiler) compile(ctx context.Context, eng *engine, wasm []byte) (wazero.CompiledModule, error) {
	st, err := prescan(wasm, c.scan)
	if errors.Is(err, ErrLimit) {
		return nil, fmt.Errorf("refused before compiling: %w", err)
	}
	// A module the scan cannot follow goes on to wazero, which validates
	// before compiling and names the fault more precisely; the scan is no
	// validator, and an instruction it does not know must not refuse a
	// module wazero runs.
	// An estimate above the whole budget is clamped to it: a large module
	// compiles alone rather than never.
	cost := min(st.compileMemory(), c.memory)
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.budget.Acquire(ctx, cost); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("no compile memory free within the timeout of %s (memory %d bytes, all held by other compiles): %w", c.timeout, c.memory, ErrCompileBudget)
		}
		return nil, fmt.Errorf("waiting for compile memory: %w", err)
	}
	var (
		mu      sync.Mutex
		dropped bool
	)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.budget.Release(cost)
		return nil, ErrClosed
	}
	c.running.Add(1)
	c.mu.Unlock()
	// The goroutine may outlive this call, and callers may reuse wasm's
	// buffer once Load returns (the watcher does).
	wasm = bytes.Clone(wasm)
	done := make(chan compileResult, 1)
	go func() {
		defer c.running.Done()
		defer c.budget.Release(cost)
		compiled, err := eng.rt.CompileModule(context.WithoutCancel(ctx), wasm)
		mu.Lock()
		defer mu.Unlock()
		if dropped {
			if compiled != nil {
				_ = compiled.Close(context.Background())
			}
			return
		}
		done <- compileResult{compiled, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			return nil, fmt.Errorf("compile: %w: %w", ErrInvalidModule, res.err)
		}
		return res.compiled, nil
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		select {
		case res := <-done: // finished just now: take it
			if res.err != nil {
				return nil, fmt.Errorf("compile: %w: %w", ErrInvalidModule, res.err)
			}
			return res.compiled, nil
		default:
		}
		dropped = true
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("compile did not finish within the timeout of %s; dropped: %w", c.timeout, ErrCompileBudget)
		}
		return nil, fmt.Errorf("compile: %w", ctx.Err())
	}
}

// wait stops new compiles from starting and returns once none is
// running, or with ctx's error when ctx is done first.
func (c *compiler) wait(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	done := make(chan struct{})
	go func() {
		c.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
