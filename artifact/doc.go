// Package artifact defines what publishers ship and agents install: the app
// manifest (tern.toml), the signed release that binds an app's sequence
// number to the exact bytes of its wasm module, and the publisher keys.
//
// The publisher side (deploy) builds a [Release] and seals it with [Sign].
// The agent side (sync) checks an envelope in this order before installing:
//
//	r, err := artifact.Open(envelope, trusted)    // signature by a trusted key
//	err = r.CheckFresh(now, installedSequence)    // not expired, not a downgrade
//	err = r.CheckBytes(wasm)                      // size, digest, wasm header
//
// Every failure wraps one of the sentinel errors, and [Reason] turns it into
// a metrics label. The package uses only the standard library's crypto.
package artifact
