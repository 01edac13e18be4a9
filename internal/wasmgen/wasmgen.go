// Package wasmgen builds wasm modules for tests: WASI-command-shaped
// modules whose one function has a chosen shape, among them the compile
// bombs the host refuses (a br_table of a million targets, a hundred
// thousand nested blocks) and milder ones that compile slowly.
package wasmgen

// Command returns a module that exports memory and a _start function
// with body (locals declaration included, final end excluded), plus
// extra empty functions and data segments.
func Command(body []byte, extraFuncs, dataSegments int) []byte {
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	m = append(m, section(1, []byte{1, 0x60, 0, 0})...) // type 0: () -> ()
	funcs := uleb(nil, uint64(1+extraFuncs))
	for i := 0; i <= extraFuncs; i++ {
		funcs = append(funcs, 0)
	}
	m = append(m, section(3, funcs)...)
	m = append(m, section(5, []byte{1, 0, 1})...) // one memory of 1 page
	exp := []byte{2}
	exp = append(exp, name("_start")...)
	exp = append(exp, 0x00, 0)
	exp = append(exp, name("memory")...)
	exp = append(exp, 0x02, 0)
	m = append(m, section(7, exp)...)
	if dataSegments > 0 {
		m = append(m, section(12, uleb(nil, uint64(dataSegments)))...)
	}
	code := uleb(nil, uint64(1+extraFuncs))
	main := append(append([]byte(nil), body...), 0x0b)
	code = uleb(code, uint64(len(main)))
	code = append(code, main...)
	for i := 0; i < extraFuncs; i++ {
		code = append(code, 2, 0, 0x0b)
	}
	m = append(m, section(10, code)...)
	if dataSegments > 0 {
		data := uleb(nil, uint64(dataSegments))
		for i := 0; i < dataSegments; i++ {
			data = append(data, 0x01, 0) // passive, empty
		}
		m = append(m, section(11, data)...)
	}
	return m
}

// Nested returns a command whose _start nests n empty blocks.
func Nested(n int) []byte {
	body := make([]byte, 0, 1+3*n)
	body = append(body, 0) // no locals
	for i := 0; i < n; i++ {
		body = append(body, 0x02, 0x40)
	}
	for i := 0; i < n; i++ {
		body = append(body, 0x0b)
	}
	return Command(body, 0, 0)
}

// BrTable returns a command whose _start holds one br_table of n
// targets, all to the same block.
func BrTable(n int) []byte {
	body := []byte{0, 0x02, 0x40, 0x41, 0x00, 0x0e}
	body = uleb(body, uint64(n))
	for i := 0; i <= n; i++ {
		body = append(body, 0)
	}
	body = append(body, 0x0b)
	return Command(body, 0, 0)
}

// Locals returns a command whose _start declares n i32 locals.
func Locals(n int) []byte {
	body := uleb([]byte{1}, uint64(n))
	return Command(append(body, 0x7f), 0, 0)
}

// LongBody returns a command whose _start is n nops long.
func LongBody(n int) []byte {
	body := make([]byte, 1+n)
	for i := 1; i <= n; i++ {
		body[i] = 0x01
	}
	return Command(body, 0, 0)
}

// Functions returns a command with n functions in all.
func Functions(n int) []byte { return Command([]byte{0}, n-1, 0) }

// DataSegments returns a command with n empty passive data segments.
func DataSegments(n int) []byte { return Command([]byte{0}, 0, n) }

func section(id byte, body []byte) []byte {
	return append(uleb([]byte{id}, uint64(len(body))), body...)
}

func name(s string) []byte { return append(uleb(nil, uint64(len(s))), s...) }

func uleb(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
