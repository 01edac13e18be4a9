package wasmhost

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tern-edge/tern/internal/wasmgen"
)

// newCompileHost returns a Runtime with cfg and no disk cache, so that
// every test compiles afresh; it waits at cleanup for dropped compiles.
func newCompileHost(t *testing.T, cfg CompileConfig) *Runtime {
	t.Helper()
	rt, err := New(context.Background(), Config{Compile: cfg})
	must(t, err)
	t.Cleanup(func() {
		must(t, rt.Close(context.Background()))
		rt.comp.running.Wait()
	})
	return rt
}

// TestLoadRefusesBombs loads each compile bomb through the Runtime: each
// is refused before compiling, naming its limit, and nothing compiles.
func TestLoadRefusesBombs(t *testing.T) {
	rt := newCompileHost(t, CompileConfig{})
	for _, tc := range []struct {
		name, limit string
		wasm        []byte
	}{
		{"1M-target br_table", "br_table_targets", wasmgen.BrTable(1_000_000)},
		{"100,000 nested blocks", "nesting", wasmgen.Nested(100_000)},
		{"1M locals", "locals", wasmgen.Locals(1_000_000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rt.Load(context.Background(), AppConfig{Name: "bomb", Wasm: tc.wasm})
			var le *LimitError
			if !errors.As(err, &le) || le.Limit != tc.limit {
				t.Fatalf("Load = %v, want the %s limit", err, tc.limit)
			}
			if !errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), "app bomb: refused before compiling: function 0: "+tc.limit) {
				t.Fatalf("error %q does not name app, stage and limit", err)
			}
		})
	}
	// Only the mild module below compiles; the bombs never reached wazero.
	_, err := rt.Load(context.Background(), AppConfig{Name: "ok", Wasm: wasmgen.Nested(10)})
	must(t, err)
}

// TestCompileTimeoutDropsResult compiles a module that takes longer than
// the timeout: Load fails at the deadline naming it, and the dropped
// compile ends and gives back its memory.
func TestCompileTimeoutDropsResult(t *testing.T) {
	rt := newCompileHost(t, CompileConfig{Timeout: time.Millisecond})
	_, err := rt.Load(context.Background(), AppConfig{Name: "slow", Wasm: wasmgen.Nested(2000)})
	if !errors.Is(err, ErrCompileBudget) || !strings.Contains(err.Error(), "within the timeout of 1ms") {
		t.Fatalf("Load = %v, want the timeout named", err)
	}
	rt.comp.running.Wait()
	if !rt.comp.budget.TryAcquire(rt.comp.memory) {
		t.Fatal("the dropped compile did not give back its compile memory")
	}
	rt.comp.budget.Release(rt.comp.memory)
}

// TestCompileMemoryBudget fills the compile memory with one compile that
// outlasts its timeout: while it runs on, dropped, another Load waits for
// memory and fails at its deadline naming the budget, and once it ends
// compiles go on.
func TestCompileMemoryBudget(t *testing.T) {
	// The slow module's estimate exceeds the budget, so it holds all of it.
	rt := newCompileHost(t, CompileConfig{Timeout: 20 * time.Millisecond, Memory: 1 << 20, Scan: ScanLimits{Nesting: -1}})
	_, err := rt.Load(context.Background(), AppConfig{Name: "slow", Wasm: wasmgen.Nested(4000)})
	if !errors.Is(err, ErrCompileBudget) {
		t.Fatalf("slow Load = %v, want a timeout", err)
	}
	_, err = rt.Load(context.Background(), AppConfig{Name: "next", Wasm: wasmgen.Nested(10)})
	if !errors.Is(err, ErrCompileBudget) || !strings.Contains(err.Error(), "no compile memory free within the timeout of 20ms (memory 1048576 bytes") {
		t.Fatalf("next Load = %v, want the memory budget named", err)
	}
	rt.comp.running.Wait()
	_, err = rt.Load(context.Background(), AppConfig{Name: "next", Wasm: wasmgen.Nested(10)})
	must(t, err)
}

// TestCloseWithDroppedCompile closes the runtime while a dropped compile
// still runs, after the caller reused the module's buffer: the compile
// neither sees the new bytes nor finds its engine closed under it.
func TestCloseWithDroppedCompile(t *testing.T) {
	rt, err := New(context.Background(), Config{Compile: CompileConfig{Timeout: time.Millisecond}})
	must(t, err)
	wasm := wasmgen.Nested(2000)
	_, err = rt.Load(context.Background(), AppConfig{Name: "slow", Wasm: wasm})
	if !errors.Is(err, ErrCompileBudget) {
		t.Fatalf("Load = %v, want a timeout", err)
	}
	for i := range wasm {
		wasm[i] = 0xff // as the watcher reuses a download buffer
	}
	must(t, rt.Close(context.Background()))
	rt.comp.running.Wait() // Close has waited already: returns at once
	if _, err := rt.Load(context.Background(), AppConfig{Name: "late", Wasm: wasmgen.Nested(1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Load after Close = %v, want ErrClosed", err)
	}
}
