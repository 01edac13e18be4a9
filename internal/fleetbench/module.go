package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
)

// helloBody is the body guests/hello answers. The benchmark rewrites it in
// the module's data segment to a text of the same length, so that offsets
// and the iovec length in the code stay right.
const helloBody = "Hello from Tern!\n"

// sectionName names the custom section that pads a module to its size.
const sectionName = "tern-fleetbench"

// bodyFor is the body version v of the benchmark's module answers. It has
// helloBody's length for every v.
func bodyFor(v int) string { return fmt.Sprintf("Tern fleet #%04d\n", v%10000) }

// buildModule returns a copy of base (the hello guest) that answers
// bodyFor(v) and is padded to about size bytes with a custom section of
// pseudo-random bytes seeded by v, so that every version has its own
// digest and the padding does not compress.
//
// A custom section is valid anywhere in a module and runtimes skip it, so
// the padding costs transfer, hashing and storage but no compilation:
// that keeps the benchmark about distribution rather than about the
// compiler, and the program checks it by timing compiles (see compileCost).
func buildModule(base []byte, v, size int) ([]byte, error) {
	if n := bytes.Count(base, []byte(helloBody)); n != 1 {
		return nil, fmt.Errorf("base module: want the body %q once in its data, found it %d times", helloBody, n)
	}
	body := bodyFor(v)
	if len(body) != len(helloBody) {
		return nil, fmt.Errorf("body %q: must be %d bytes like the guest's", body, len(helloBody))
	}
	out := bytes.Replace(base, []byte(helloBody), []byte(body), 1)

	// Section: id 0, size, then the name (length-prefixed) and the payload.
	name := append(uleb128(nil, uint64(len(sectionName))), sectionName...)
	// Aim the payload so that the whole module is size bytes: the id
	// byte, the LEB128 size (whose length depends on the size), the name,
	// the payload. Keep at least the version in it.
	payload := 8
	for range 2 {
		content := len(name) + payload
		payload = max(size-len(out)-1-len(uleb128(nil, uint64(content)))-len(name), 8)
	}
	buf := make([]byte, payload)
	binary.LittleEndian.PutUint64(buf, uint64(v))
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(v))
	rand.NewChaCha8(seed).Read(buf[8:])

	out = append(out, 0)
	out = uleb128(out, uint64(len(name)+len(buf)))
	out = append(out, name...)
	return append(out, buf...), nil
}

// uleb128 appends x in unsigned LEB128, the wasm binary format's integer
// encoding.
func uleb128(b []byte, x uint64) []byte {
	for {
		c := byte(x & 0x7f)
		x >>= 7
		if x == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
