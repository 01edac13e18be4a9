package wasmhost

import (
	"errors"
	"fmt"
)

// ScanLimits bound what a module may contain before the host compiles it.
// wazero's compiler takes time and memory that grow faster than linearly
// with some shapes of code (a br_table of a million targets, a hundred
// thousand nested blocks): a module of a few hundred kilobytes can keep a
// core busy for minutes. No real program comes near these bounds; a
// module that does is refused in milliseconds, before compiling. A zero
// field takes its default (DefaultScanLimits); a negative one disables
// that check.
type ScanLimits struct {
	ModuleBytes    int64 // the whole module; default: DefaultMaxModuleBytes
	FunctionBytes  int64 // one function body
	Nesting        int64 // blocks, loops, ifs and trys open at once in a body
	BrTableTargets int64 // targets of one br_table
	Functions      int64 // functions defined and imported
	Locals         int64 // locals declared by one function
	DataSegments   int64 // data segments
}

// DefaultMaxModuleBytes is ScanLimits.ModuleBytes's default: the agent's
// default max_artifact.
const DefaultMaxModuleBytes = 64 << 20

// DefaultScanLimits returns the bounds a Runtime applies when its Config
// sets none. Functions, locals, data segments and br_table targets are
// V8's limits, under which the web's programs run; nesting and body size
// are well above what compilers emit (a switch of n cases nests n blocks)
// and well below what takes wazero seconds to compile.
func DefaultScanLimits() ScanLimits {
	return ScanLimits{
		ModuleBytes:    DefaultMaxModuleBytes,
		FunctionBytes:  2 << 20,
		Nesting:        10_000,
		BrTableTargets: 65_520,
		Functions:      1_000_000,
		Locals:         50_000,
		DataSegments:   100_000,
	}
}

// withDefaults fills zero fields from DefaultScanLimits.
func (l ScanLimits) withDefaults() ScanLimits {
	d := DefaultScanLimits()
	for _, f := range []struct{ v, d *int64 }{
		{&l.ModuleBytes, &d.ModuleBytes}, {&l.FunctionBytes, &d.FunctionBytes}, {&l.Nesting, &d.Nesting},
		{&l.BrTableTargets, &d.BrTableTargets}, {&l.Functions, &d.Functions}, {&l.Locals, &d.Locals},
		{&l.DataSegments, &d.DataSegments},
	} {
		if *f.v == 0 {
			*f.v = *f.d
		}
	}
	return l
}

// ErrLimit reports a module that exceeds one of the host's ScanLimits; it
// is always a *LimitError, and wraps ErrInvalidModule too.
var ErrLimit = errors.New("module exceeds a compile limit")

// LimitError is a module refused before compiling: which limit, where in
// the module, and by how much.
type LimitError struct {
	// Limit names the bound, as the agent's [compile] configuration keys
	// do: module_bytes, function_bytes, nesting, br_table_targets,
	// functions, locals or data_segments.
	Limit string
	Value int64  // what the module has
	Max   int64  // the bound it exceeds
	Where string // e.g. "function 3", empty for the whole module
}

func (e *LimitError) Error() string {
	where := ""
	if e.Where != "" {
		where = e.Where + ": "
	}
	return fmt.Sprintf("%s%s %d exceeds the limit of %d", where, e.Limit, e.Value, e.Max)
}

// Is makes a LimitError match ErrLimit and ErrInvalidModule.
func (e *LimitError) Is(target error) bool { return target == ErrLimit || target == ErrInvalidModule }

// scanStats is what prescan learned about a module that passed it.
type scanStats struct {
	codeBytes int64 // size of the code section
	blocks    int64 // blocks, loops, ifs and trys, in all bodies
	targets   int64 // br_table targets, in all bodies
}

// compileMemory estimates what compiling a module allocates, from its
// scan: wazero's compiler allocates about 16 bytes per byte of ordinary
// code, and about 3 KiB per block and per br_table target (measured with
// wazero 1.12 on the committed guests and on generated modules; see
// docs/ARCHITECTURE.md).
func (s scanStats) compileMemory() int64 {
	return 16*s.codeBytes + 3<<10*(s.blocks+s.targets)
}

// errTruncated is a module that ends inside a section or instruction.
var errTruncated = errors.New("unexpected end")

// prescan reads a module's section headers and every code body, checking
// lim (defaults filled in) as it goes. It is no validator: it reads only
// what it needs to follow the structure and leaves the rest to wazero,
// and it stops at the first limit exceeded, so the cost of refusing is
// one linear pass over at most the bytes before the offence. A module it
// cannot follow is an error wrapping ErrInvalidModule.
func prescan(wasm []byte, lim ScanLimits) (scanStats, error) {
	var st scanStats
	if lim.ModuleBytes > 0 && int64(len(wasm)) > lim.ModuleBytes {
		return st, &LimitError{Limit: "module_bytes", Value: int64(len(wasm)), Max: lim.ModuleBytes}
	}
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return st, fmt.Errorf("%w: not a wasm binary (bad magic)", ErrInvalidModule)
	}
	r := reader{b: wasm, off: 8}
	var imported int64
	for r.off < len(r.b) {
		id := r.b[r.off]
		r.off++
		size := r.u32()
		if r.err != nil || int(size) > len(r.b)-r.off {
			return st, malformed("section header", r.off, errTruncated)
		}
		sec := reader{b: r.b[:r.off+int(size)], off: r.off}
		r.off += int(size)
		switch id {
		case 2: // imports: only function imports count
			n := sec.u32()
			for i := uint32(0); i < n && sec.err == nil; i++ {
				sec.name()
				sec.name()
				switch kind := sec.byte(); kind {
				case 0x00: // func: type index
					sec.u32()
					imported++
				case 0x01: // table: reftype, limits
					sec.byte()
					sec.limits()
				case 0x02: // memory: limits
					sec.limits()
				case 0x03: // global: valtype, mutability
					sec.byte()
					sec.byte()
				case 0x04: // tag: attribute, type index
					sec.byte()
					sec.u32()
				default:
					return st, malformed("import section", sec.off, fmt.Errorf("import kind 0x%02x", kind))
				}
			}
			if sec.err != nil {
				return st, malformed("import section", sec.off, sec.err)
			}
		case 3: // functions: a type index each
			n := int64(sec.u32())
			if sec.err != nil {
				return st, malformed("function section", sec.off, sec.err)
			}
			if lim.Functions > 0 && n+imported > lim.Functions {
				return st, &LimitError{Limit: "functions", Value: n + imported, Max: lim.Functions}
			}
		case 11, 12: // data, data count
			n := int64(sec.u32())
			if sec.err != nil {
				return st, malformed("data section", sec.off, sec.err)
			}
			if lim.DataSegments > 0 && n > lim.DataSegments {
				return st, &LimitError{Limit: "data_segments", Value: n, Max: lim.DataSegments}
			}
		case 10:
			st.codeBytes = int64(size)
			if err := scanCode(&sec, imported, lim, &st); err != nil {
				return st, err
			}
		}
	}
	return st, nil
}

// scanCode checks every function body of a code section.
func scanCode(sec *reader, imported int64, lim ScanLimits, st *scanStats) error {
	n := sec.u32()
	if sec.err != nil {
		return malformed("code section", sec.off, sec.err)
	}
	if lim.Functions > 0 && int64(n)+imported > lim.Functions {
		return &LimitError{Limit: "functions", Value: int64(n) + imported, Max: lim.Functions}
	}
	for i := uint32(0); i < n; i++ {
		where := func() string { return fmt.Sprintf("function %d", int64(i)+imported) }
		size := sec.u32()
		if sec.err != nil || int(size) > len(sec.b)-sec.off {
			return malformed(where(), sec.off, errTruncated)
		}
		if lim.FunctionBytes > 0 && int64(size) > lim.FunctionBytes {
			return &LimitError{Limit: "function_bytes", Value: int64(size), Max: lim.FunctionBytes, Where: where()}
		}
		body := reader{b: sec.b[:sec.off+int(size)], off: sec.off}
		sec.off += int(size)
		if err := scanBody(&body, lim, st); err != nil {
			var le *LimitError
			if errors.As(err, &le) {
				le.Where = where()
				return le
			}
			return malformed(where(), body.off, err)
		}
	}
	return nil
}

// scanBody checks one function body: its locals, and the nesting and
// br_tables of its instructions. Instructions are decoded only far enough
// to step over their immediates.
func scanBody(r *reader, lim ScanLimits, st *scanStats) error {
	var locals uint64
	groups := r.u32()
	for g := uint32(0); g < groups && r.err == nil; g++ {
		locals += uint64(r.u32())
		r.byte()
		if lim.Locals > 0 && locals > uint64(lim.Locals) {
			return &LimitError{Limit: "locals", Value: int64(min(locals, 1<<62)), Max: lim.Locals}
		}
	}
	depth := int64(1) // the body is a block
	for r.err == nil && r.off < len(r.b) {
		op := r.byte()
		switch {
		case op == 0x02 || op == 0x03 || op == 0x04 || op == 0x06: // block, loop, if, try
			r.s33()
			depth++
			st.blocks++
			if lim.Nesting > 0 && depth-1 > lim.Nesting {
				return &LimitError{Limit: "nesting", Value: depth - 1, Max: lim.Nesting}
			}
		case op == 0x1f: // try_table: block type, catch clauses
			r.s33()
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				if k := r.byte(); k == 0x00 || k == 0x01 {
					r.u32()
				}
				r.u32()
			}
			depth++
			st.blocks++
			if lim.Nesting > 0 && depth-1 > lim.Nesting {
				return &LimitError{Limit: "nesting", Value: depth - 1, Max: lim.Nesting}
			}
		case op == 0x0b: // end
			depth--
			if depth == 0 {
				if r.off != len(r.b) {
					return errors.New("code after the body's end")
				}
				return nil
			}
		case op == 0x0e: // br_table: targets, default
			n := r.u32()
			if lim.BrTableTargets > 0 && int64(n) > lim.BrTableTargets {
				return &LimitError{Limit: "br_table_targets", Value: int64(n), Max: lim.BrTableTargets}
			}
			st.targets += int64(n)
			for i := uint32(0); i <= n && r.err == nil; i++ {
				r.u32()
			}
		default:
			if err := skipImmediates(r, op); err != nil {
				return err
			}
		}
	}
	if r.err != nil {
		return r.err
	}
	return errors.New("body has no end")
}

// skipImmediates steps over the immediates of an instruction that does
// not change nesting. An opcode the host's features do not include is an
// error: wazero would refuse the module anyway.
func skipImmediates(r *reader, op byte) error {
	switch {
	case op <= 0x01, op == 0x05, op == 0x0a, op == 0x0f, op == 0x19, op == 0x1a, op == 0x1b,
		op >= 0x45 && op <= 0xc4, op == 0xd1, op == 0xd3, op == 0xd4:
		// no immediates (unreachable, nop, else, throw_ref, return,
		// catch_all, drop, select, numeric, ref.is_null, ref.eq, ref.as_non_null)
	case op == 0x07, op == 0x08, op == 0x09, op == 0x0c, op == 0x0d, op == 0x10, op == 0x12,
		op == 0x14, op == 0x15, op == 0x18, op >= 0x20 && op <= 0x26, op == 0xd2, op == 0xd5, op == 0xd6:
		r.u32() // an index or label
	case op == 0x11, op == 0x13: // call_indirect: type, table
		r.u32()
		r.u32()
	case op == 0x1c: // select with types
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			r.byte()
		}
	case op >= 0x28 && op <= 0x3e: // loads and stores
		r.memarg()
	case op == 0x3f, op == 0x40: // memory.size, memory.grow
		r.u32()
	case op == 0x41:
		r.s33()
	case op == 0x42:
		r.s64()
	case op == 0x43:
		r.skip(4)
	case op == 0x44:
		r.skip(8)
	case op == 0xd0: // ref.null heap type
		r.s33()
	case op == 0xfc:
		return skipFC(r, r.u32())
	case op == 0xfd:
		return skipSIMD(r, r.u32())
	case op == 0xfe: // threads
		if sub := r.u32(); sub == 0x03 {
			r.byte()
		} else {
			r.memarg()
		}
	default:
		return fmt.Errorf("unknown opcode 0x%02x", op)
	}
	return nil
}

// skipFC steps over a 0xfc-prefixed instruction's immediates.
func skipFC(r *reader, sub uint32) error {
	switch {
	case sub <= 7: // saturating truncations
	case sub == 8, sub == 10, sub == 12, sub == 14: // memory.init, memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	case sub <= 17: // data.drop, memory.fill, elem.drop, table.grow/size/fill
		r.u32()
	default:
		return fmt.Errorf("unknown opcode 0xfc %d", sub)
	}
	return nil
}

// skipSIMD steps over a 0xfd-prefixed instruction's immediates.
func skipSIMD(r *reader, sub uint32) error {
	switch {
	case sub <= 0x0b, sub == 0x5c, sub == 0x5d: // loads, stores
		r.memarg()
	case sub == 0x0c, sub == 0x0d: // v128.const, i8x16.shuffle
		r.skip(16)
	case sub >= 0x15 && sub <= 0x22: // extract_lane, replace_lane
		r.byte()
	case sub >= 0x54 && sub <= 0x5b: // load_lane, store_lane
		r.memarg()
		r.byte()
	case sub <= 0x113:
	default:
		return fmt.Errorf("unknown opcode 0xfd %d", sub)
	}
	return nil
}

func malformed(where string, off int, err error) error {
	return fmt.Errorf("%w: %s at byte %d: %w", ErrInvalidModule, where, off, err)
}

// reader decodes wasm's LEB128 integers and bytes from b, recording the
// first error and returning zeros after it, so that callers check once.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.err = errTruncated
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) skip(n int) {
	if r.err == nil && n > len(r.b)-r.off {
		r.err = errTruncated
	}
	if r.err == nil {
		r.off += n
	}
}

// leb reads an unsigned or signed LEB128 of at most maxBytes bytes and
// returns its low 64 bits unsigned (the scan needs only sizes and counts).
func (r *reader) leb(maxBytes int) uint64 {
	var v uint64
	for i := 0; i < maxBytes; i++ {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = errors.New("integer too long")
	return 0
}

func (r *reader) u32() uint32 {
	v := r.leb(5)
	if v > 1<<32-1 && r.err == nil {
		r.err = errors.New("integer out of range")
	}
	return uint32(v)
}

func (r *reader) s33() { r.leb(5) }
func (r *reader) s64() { r.leb(10) }

func (r *reader) name() { r.skip(int(r.u32())) }

func (r *reader) limits() {
	flags := r.byte()
	r.leb(10) // u64 with memory64
	if flags&1 != 0 {
		r.leb(10)
	}
}

// memarg reads alignment (whose bit 6 announces a memory index, with
// multiple memories) and offset.
func (r *reader) memarg() {
	align := r.u32()
	if align&0x40 != 0 {
		r.u32()
	}
	r.leb(10)
}
