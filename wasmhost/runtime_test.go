package wasmhost

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
)

// TestLoadCompilesOnce hammers Load: apps with the same wasm and memory
// limit share one compiled module, compiled once; another limit compiles
// again (on another engine); a module no App holds is released.
func TestLoadCompilesOnce(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	wasm := guest(t, "hello/hello.wasm")
	apps := make([]*App, 16)
	var wg sync.WaitGroup
	for i := range apps {
		wg.Go(func() {
			app, err := h.Load(ctx, AppConfig{Name: "hello", Wasm: wasm})
			if err != nil {
				t.Error(err)
				return
			}
			apps[i] = app
		})
	}
	wg.Wait()
	equal(t, "compiles", h.compiles.Load(), 1)
	equal(t, "modules", h.moduleCount(), 1)

	other, err := h.Load(ctx, AppConfig{Name: "hello-small", Wasm: wasm, Limits: Limits{MemoryBytes: 1 << 20}})
	must(t, err)
	equal(t, "compiles with another limit", h.compiles.Load(), 2)
	equal(t, "engines", len(h.engines), 2)

	for _, app := range apps {
		must(t, app.Close(ctx))
	}
	equal(t, "modules after closing one limit's apps", h.moduleCount(), 1)
	must(t, other.Close(ctx))
	equal(t, "modules after closing all", h.moduleCount(), 0)

	again, err := h.Load(ctx, AppConfig{Name: "hello", Wasm: wasm})
	must(t, err)
	defer again.Close(ctx)
	equal(t, "compiles after release", h.compiles.Load(), 3)
}

func TestLoadErrors(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	hello := guest(t, "hello/hello.wasm")
	tests := []struct {
		name    string
		cfg     AppConfig
		is      error  // the sentinel the error must wrap, if any
		prefix  string // the error message's start
		contain string // and a part of the rest
	}{
		{
			name:   "not wasm",
			cfg:    AppConfig{Name: "junk", Wasm: []byte("#!/bin/sh\necho hi\n")},
			is:     ErrInvalidModule,
			prefix: "app junk: compile: invalid wasm module: ",
		},
		{
			name:    "no _start",
			cfg:     AppConfig{Name: "reactor", Wasm: guest(t, "faults/nostart.wasm")},
			is:      ErrInvalidModule,
			prefix:  "app reactor: invalid wasm module: no _start export",
			contain: "WASI command",
		},
		{
			name:    "unknown import",
			cfg:     AppConfig{Name: "needy", Wasm: guest(t, "faults/badimport.wasm")},
			is:      ErrInvalidModule,
			prefix:  "app needy: invalid wasm module: imports env.tern_missing",
			contain: `no module "env"`,
		},
		{
			name:    "memory minimum over the cap",
			cfg:     AppConfig{Name: "big", Wasm: guest(t, "faults/bigmem.wasm")},
			is:      ErrInvalidModule,
			prefix:  "app big: compile: invalid wasm module: ",
			contain: "1024",
		},
		{
			name:   "digest mismatch",
			cfg:    AppConfig{Name: "hello", Wasm: hello, Digest: "sha256:00"},
			is:     ErrDigestMismatch,
			prefix: "app hello: digest sha256:00, wasm is sha256:",
		},
		{
			name:   "memory under a page",
			cfg:    AppConfig{Name: "hello", Wasm: hello, Limits: Limits{MemoryBytes: 1000}},
			prefix: "app hello: memory limit 1000 bytes is less than one 64KiB page",
		},
		{
			name:   "memory over 4GiB",
			cfg:    AppConfig{Name: "hello", Wasm: hello, Limits: Limits{MemoryBytes: 5 << 30}},
			prefix: "app hello: memory limit 5368709120 bytes is over the 4GiB wasm32 maximum",
		},
		{
			name:   "negative timeout",
			cfg:    AppConfig{Name: "hello", Wasm: hello, Limits: Limits{Timeout: -1}},
			prefix: "app hello: negative timeout -1ns",
		},
		{
			name:   "env shadowing CGI",
			cfg:    AppConfig{Name: "hello", Wasm: hello, Env: map[string]string{"SCRIPT_NAME": "x"}},
			prefix: "app hello: environment variable SCRIPT_NAME would shadow a CGI variable",
		},
		{
			name:   "no name",
			cfg:    AppConfig{Wasm: hello},
			prefix: "load app: empty name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app, err := h.Load(ctx, tt.cfg)
			if err == nil {
				app.Close(ctx)
				t.Fatal("Load succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q does not wrap %v", err, tt.is)
			}
			if !strings.HasPrefix(err.Error(), tt.prefix) || !strings.Contains(err.Error(), tt.contain) {
				t.Errorf("error = %q, want prefix %q containing %q", err, tt.prefix, tt.contain)
			}
		})
	}
	equal(t, "modules held after failed loads", h.moduleCount(), 0)
}

func TestLoadMatchingDigest(t *testing.T) {
	h := newHost(t)
	app, err := h.Load(context.Background(), AppConfig{
		Name:   "hello",
		Wasm:   guest(t, "hello/hello.wasm"),
		Digest: "sha256:" + helloDigest(t),
	})
	must(t, err)
	must(t, app.Close(context.Background()))
}

// TestLoadVerifiedDigestSharesModule loads the same bytes with a digest
// the caller verified and without one: both must find one compiled module
// under the same key, so trusting the caller's digest changes nothing but
// the hashing.
func TestLoadVerifiedDigestSharesModule(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	wasm := guest(t, "hello/hello.wasm")
	verified, err := h.Load(ctx, AppConfig{Name: "a", Wasm: wasm, Digest: "sha256:" + helloDigest(t), Verified: true})
	must(t, err)
	defer verified.Close(ctx)
	computed, err := h.Load(ctx, AppConfig{Name: "b", Wasm: wasm})
	must(t, err)
	defer computed.Close(ctx)
	equal(t, "compiled modules", h.moduleCount(), 1)
	equal(t, "module key", verified.mod.key, computed.mod.key)
}

func helloDigest(t *testing.T) string {
	t.Helper()
	h := newHost(t)
	app := h.load(t, "hello", "hello/hello.wasm", Limits{})
	return strings.TrimPrefix(app.mod.key.digest, "sha256:")
}

func TestCacheDir(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	rt, err := New(ctx, Config{CacheDir: dir})
	must(t, err)
	app, err := rt.Load(ctx, AppConfig{Name: "hello", Wasm: guest(t, "hello/hello.wasm")})
	must(t, err)
	must(t, app.Close(ctx))
	must(t, rt.Close(ctx))
	entries, err := os.ReadDir(dir)
	must(t, err)
	if len(entries) == 0 {
		t.Fatal("compilation cache directory is empty after a compile")
	}
}
