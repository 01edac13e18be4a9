package wasmhost

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tern-edge/tern/internal/wasmgen"
)

// TestPrescanRefusesBombs checks that each shape no real program needs is
// refused with the limit it exceeds named, and that the same shape just
// under the limit passes.
func TestPrescanRefusesBombs(t *testing.T) {
	lim := DefaultScanLimits()
	for _, tc := range []struct {
		name  string
		wasm  []byte
		limit string
		value int64
	}{
		{"br_table of 1M targets", wasmgen.BrTable(1_000_000), "br_table_targets", 1_000_000},
		{"100,000 nested blocks", wasmgen.Nested(100_000), "nesting", lim.Nesting + 1},
		{"3 MiB body", wasmgen.LongBody(3 << 20), "function_bytes", 3<<20 + 2},
		{"1M locals", wasmgen.Locals(1_000_000), "locals", 1_000_000},
		{"2M functions", wasmgen.Functions(2_000_000), "functions", 2_000_000},
		{"200,000 data segments", wasmgen.DataSegments(200_000), "data_segments", 200_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := prescan(tc.wasm, lim)
			var le *LimitError
			if !errors.As(err, &le) {
				t.Fatalf("prescan = %v, want a *LimitError", err)
			}
			equal(t, "limit", le.Limit, tc.limit)
			equal(t, "value", le.Value, tc.value)
			if !errors.Is(err, ErrInvalidModule) || !errors.Is(err, ErrLimit) {
				t.Fatalf("%v does not match ErrInvalidModule and ErrLimit", err)
			}
		})
	}
	for name, wasm := range map[string][]byte{
		"br_table at the limit":  wasmgen.BrTable(int(lim.BrTableTargets)),
		"nesting at the limit":   wasmgen.Nested(int(lim.Nesting)),
		"locals at the limit":    wasmgen.Locals(int(lim.Locals)),
		"data segments at limit": wasmgen.DataSegments(int(lim.DataSegments)),
	} {
		if _, err := prescan(wasm, lim); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestPrescanModuleBytes(t *testing.T) {
	lim := DefaultScanLimits()
	lim.ModuleBytes = 1000
	wasm := wasmgen.LongBody(2000)
	_, err := prescan(wasm, lim)
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != "module_bytes" {
		t.Fatalf("prescan = %v, want module_bytes refused", err)
	}
	equal(t, "message", err.Error(), fmt.Sprintf("module_bytes %d exceeds the limit of 1000", len(wasm)))
}

func TestPrescanMessageNamesFunction(t *testing.T) {
	_, err := prescan(wasmgen.BrTable(1_000_000), DefaultScanLimits())
	equal(t, "message", err.Error(), "function 0: br_table_targets 1000000 exceeds the limit of 65520")
}

// TestPrescanAcceptsGuests runs the scan over every committed guest
// (TinyGo, Go and hand-written modules): none may be refused or
// misread.
func TestPrescanAcceptsGuests(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "guests", "*", "*.wasm"))
	must(t, err)
	if len(files) == 0 {
		t.Fatal("no guests found")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		must(t, err)
		if _, err := prescan(b, DefaultScanLimits()); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestPrescanMalformed(t *testing.T) {
	for name, wasm := range map[string][]byte{
		"empty":              nil,
		"bad magic":          []byte("\x00asx\x01\x00\x00\x00"),
		"section too long":   []byte("\x00asm\x01\x00\x00\x00\x0a\x7f\x01"),
		"body without end":   []byte("\x00asm\x01\x00\x00\x00\x0a\x04\x01\x02\x00\x01"),
		"unknown opcode":     []byte("\x00asm\x01\x00\x00\x00\x0a\x05\x01\x03\x00\xff\x0b"),
		"code after end":     []byte("\x00asm\x01\x00\x00\x00\x0a\x05\x01\x03\x00\x0b\x01"),
		"leb too long":       []byte("\x00asm\x01\x00\x00\x00\x0a\xff\xff\xff\xff\xff\x01"),
		"truncated br_table": []byte("\x00asm\x01\x00\x00\x00\x0a\x06\x01\x04\x00\x0e\x05\x00"),
	} {
		_, err := prescan(wasm, DefaultScanLimits())
		if !errors.Is(err, ErrInvalidModule) || errors.Is(err, ErrLimit) {
			t.Errorf("%s: prescan = %v, want a malformed module error", name, err)
		}
	}
}

// FuzzPrescan checks that the scan never panics or hangs on any input,
// and that a module it accepts under tight limits it also accepts under
// looser ones.
func FuzzPrescan(f *testing.F) {
	f.Add(wasmgen.BrTable(10))
	f.Add(wasmgen.Nested(10))
	f.Add(wasmgen.Locals(10))
	f.Add(wasmgen.DataSegments(3))
	f.Add(wasmgen.Functions(3))
	if b, err := os.ReadFile(filepath.Join("..", "guests", "faults", "trap.wasm")); err == nil {
		f.Add(b)
	}
	tight := ScanLimits{ModuleBytes: 1 << 16, FunctionBytes: 256, Nesting: 8, BrTableTargets: 8, Functions: 8, Locals: 8, DataSegments: 8}
	f.Fuzz(func(t *testing.T, wasm []byte) {
		_, err := prescan(wasm, tight)
		if err != nil && !errors.Is(err, ErrInvalidModule) {
			t.Fatalf("error %v does not wrap ErrInvalidModule", err)
		}
		if err == nil {
			if _, err := prescan(wasm, DefaultScanLimits()); err != nil {
				t.Fatalf("accepted under tight limits, refused under defaults: %v", err)
			}
		}
	})
}

// BenchmarkPrescan scans the Go-built echo guest (3 MB, 1.9 MB of code):
// the cost the scan adds to every install.
func BenchmarkPrescan(b *testing.B) {
	wasm := guest(b, "echo/echo.wasm")
	b.SetBytes(int64(len(wasm)))
	for b.Loop() {
		if _, err := prescan(wasm, DefaultScanLimits()); err != nil {
			b.Fatal(err)
		}
	}
}
