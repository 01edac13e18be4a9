// Package guests ships sample guest modules with the binary, so a fresh
// agent has something to serve and tests have a known-good app.
//
// Sources and their built .wasm files live side by side in this directory;
// `make -C guests` rebuilds them (see README.md).
package guests

import _ "embed"

// HelloWasm is the hello sample app: a WAGI module that answers
// "Hello from Tern!" as text/plain.
//
//go:embed hello/hello.wasm
var HelloWasm []byte

// HelloManifest is the tern.toml manifest of the hello sample app.
//
//go:embed hello/tern.toml
var HelloManifest []byte
