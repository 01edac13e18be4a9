package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// KV is a key-value store that guests reach through the tern_kv host
// module. The runtime keeps apps apart by namespace: every call carries
// the app's name, and a guest can name keys only inside it.
//
// Implementations must be safe for concurrent use, and must keep
// namespaces disjoint whatever the key (for example by length-prefixing
// the namespace), since both come from outside. ctx carries the request's
// deadline.
type KV interface {
	// Get returns the value stored under key in namespace, or an error
	// wrapping ErrKeyNotFound if there is none. The runtime only reads
	// the returned slice.
	Get(ctx context.Context, namespace, key string) ([]byte, error)
	// Set stores value under key in namespace, replacing any value there.
	// value is the store's to keep.
	Set(ctx context.Context, namespace, key string, value []byte) error
	// Delete removes key from namespace. Deleting an absent key is not an
	// error.
	Delete(ctx context.Context, namespace, key string) error
}

// ErrKeyNotFound is what KV.Get wraps when the key has no value.
var ErrKeyNotFound = errors.New("key not found")

// kvModule is the name of the key-value host module.
const kvModule = "tern_kv"

// Bounds on what a guest may store: keys are short names, values fit in
// one request's memory comfortably.
const (
	maxKVKey   = 512
	maxKVValue = 1 << 20
)

// tern_kv error codes, as documented in docs/GUEST_ABI.md.
const (
	kvOK             = 0
	kvDenied         = 1 // the app was granted no store
	kvNotFound       = 2
	kvMemoryAccess   = 3 // a pointer and length outside the guest's memory
	kvBufferTooSmall = 4 // the value's length was still written
	kvInvalidKey     = 5 // empty, over maxKVKey bytes, or not UTF-8
	kvValueTooLarge  = 6 // over maxKVValue bytes
	kvStoreError     = 7 // the store failed; the agent logs why
)

// instantiateKV instantiates the tern_kv host module on rt. Its functions
// act on the store and namespace of the request in the call's context.
func instantiateKV(ctx context.Context, rt wazero.Runtime) error {
	return instantiateHost(ctx, rt, kvModule,
		hostFunc{"get", kvGet, []string{"key", "key_len", "buf", "buf_len", "result.value_len"}},
		hostFunc{"set", kvSet, []string{"key", "key_len", "value", "value_len"}},
		hostFunc{"delete", kvDelete, []string{"key", "key_len"}},
	)
}

// hostFunc is one function of a host module. Every parameter and the one
// result are i32, as in all of Tern's guest ABIs.
type hostFunc struct {
	name   string
	fn     api.GoModuleFunc
	params []string
}

// instantiateHost instantiates the host module named module on rt.
func instantiateHost(ctx context.Context, rt wazero.Runtime, module string, fns ...hostFunc) error {
	b := rt.NewHostModuleBuilder(module)
	for _, f := range fns {
		b.NewFunctionBuilder().
			WithGoModuleFunction(f.fn, i32s(len(f.params)), i32s(1)).
			WithParameterNames(f.params...).
			Export(f.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate %s: %w", module, err)
	}
	return nil
}

// i32s returns n i32 value types.
func i32s(n int) []api.ValueType {
	t := make([]api.ValueType, n)
	for i := range t {
		t[i] = api.ValueTypeI32
	}
	return t
}

// kvKey returns the request's app and the key the guest named, or the
// error code to return. ptr and n are raw stack values: an i32 is only
// their low 32 bits.
func kvKey(ctx context.Context, mod api.Module, rawPtr, rawN uint64) (*App, string, uint32) {
	ptr, n := uint32(rawPtr), uint32(rawN)
	q := requestFrom(ctx)
	if q == nil || q.app == nil || q.app.kv == nil {
		return nil, "", kvDenied
	}
	mem := mod.Memory()
	if mem == nil {
		return nil, "", kvMemoryAccess
	}
	if n == 0 || n > maxKVKey {
		return nil, "", kvInvalidKey
	}
	b, ok := mem.Read(ptr, n)
	if !ok {
		return nil, "", kvMemoryAccess
	}
	if !utf8.Valid(b) {
		return nil, "", kvInvalidKey
	}
	return q.app, string(b), kvOK
}

// kvGet implements get(key, key_len, buf, buf_len, result.value_len) ->
// error. The value's length is written even when buf is too small, so a
// guest can retry with a buffer that fits.
func kvGet(ctx context.Context, mod api.Module, stack []uint64) {
	app, key, code := kvKey(ctx, mod, stack[0], stack[1])
	if code != kvOK {
		stack[0] = uint64(code)
		return
	}
	buf, bufLen, lenPtr := uint32(stack[2]), uint32(stack[3]), uint32(stack[4])
	value, err := app.kv.Get(ctx, app.name, key)
	switch {
	case errors.Is(err, ErrKeyNotFound):
		stack[0] = kvNotFound
		return
	case err != nil:
		stack[0] = uint64(app.kvFailed(ctx, "get", key, err))
		return
	}
	mem := mod.Memory()
	if !mem.WriteUint32Le(lenPtr, uint32(len(value))) {
		stack[0] = kvMemoryAccess
		return
	}
	if uint32(len(value)) > bufLen {
		stack[0] = kvBufferTooSmall
		return
	}
	if !mem.Write(buf, value) {
		stack[0] = kvMemoryAccess
		return
	}
	stack[0] = kvOK
}

// kvSet implements set(key, key_len, value, value_len) -> error.
func kvSet(ctx context.Context, mod api.Module, stack []uint64) {
	app, key, code := kvKey(ctx, mod, stack[0], stack[1])
	if code != kvOK {
		stack[0] = uint64(code)
		return
	}
	ptr, n := uint32(stack[2]), uint32(stack[3])
	if n > maxKVValue {
		stack[0] = kvValueTooLarge
		return
	}
	value, ok := mod.Memory().Read(ptr, n)
	if !ok {
		stack[0] = kvMemoryAccess
		return
	}
	// value aliases guest memory, which a later instance reuses: the
	// store gets its own copy, which KV.Set may keep.
	if err := app.kv.Set(ctx, app.name, key, append([]byte(nil), value...)); err != nil {
		stack[0] = uint64(app.kvFailed(ctx, "set", key, err))
		return
	}
	stack[0] = kvOK
}

// kvDelete implements delete(key, key_len) -> error.
func kvDelete(ctx context.Context, mod api.Module, stack []uint64) {
	app, key, code := kvKey(ctx, mod, stack[0], stack[1])
	if code != kvOK {
		stack[0] = uint64(code)
		return
	}
	if err := app.kv.Delete(ctx, app.name, key); err != nil {
		stack[0] = uint64(app.kvFailed(ctx, "delete", key, err))
		return
	}
	stack[0] = kvOK
}

// kvFailed logs a store failure, which the guest sees only as a code.
func (a *App) kvFailed(ctx context.Context, op, key string, err error) uint32 {
	a.logger.LogAttrs(ctx, slog.LevelWarn, "key-value store failed",
		slog.String("op", op), slog.String("key", truncateForLog(key)), slog.String("err", err.Error()))
	return kvStoreError
}
