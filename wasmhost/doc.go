// Package wasmhost runs WebAssembly functions: it compiles guest modules
// once, into a compilation cache shared by every app with the same wasm,
// and serves each HTTP request in a fresh, anonymous instance under the
// app's limits (memory, time, request and response size).
//
// Guests follow the WAGI convention, CGI over WASI preview 1: the request
// is in environment variables and arguments, its body on stdin; the
// response is a CGI header block and body on stdout; stderr goes to the
// agent log. Modules written for WAGI run unchanged. docs/GUEST_ABI.md
// describes the ABI for guest authors, and RATIONALE.md here the choices
// behind it.
//
// It is the only package that imports wazero.
package wasmhost
