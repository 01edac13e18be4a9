package wasmhost

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// request is the per-request state that host functions reach through the
// context of the instance's call: wazero passes the context given to
// InstantiateModule to every host function the guest calls.
type request struct {
	app  *App
	vars []envVar // cgiEnv's result, before encoding
	args []string

	// responses are the outbound HTTP responses the guest holds handles
	// to; nextHandle is where the search for a free handle starts.
	responses  map[uint32]*outResponse
	nextHandle uint32

	// ai is the request's tern_ai state (last error, busy, kept result).
	ai aiState

	// mem is the allocator of the instance's linear memory.
	mem requestMemory

	// env is the environment as environ_get hands it to the guest: each
	// "KEY=VALUE" NUL-terminated, one after another; offsets are where
	// each starts.
	env     []byte
	offsets []uint32
}

type requestKey struct{}

func withRequest(ctx context.Context, q *request) context.Context {
	return context.WithValue(ctx, requestKey{}, q)
}

func requestFrom(ctx context.Context) *request {
	q, _ := ctx.Value(requestKey{}).(*request)
	return q
}

// setEnv encodes vars as the guest's environment.
func (q *request) setEnv(vars []envVar) {
	q.env = q.env[:0]
	q.offsets = q.offsets[:0]
	for _, v := range vars {
		q.offsets = append(q.offsets, uint32(len(q.env)))
		q.env = append(q.env, v.key...)
		q.env = append(q.env, '=')
		q.env = append(q.env, v.value...)
		q.env = append(q.env, 0)
	}
}

// reset drops references to request data before the request goes back to
// its pool.
func (q *request) reset() {
	q.app = nil
	clear(q.vars)
	clear(q.args)
	q.vars, q.args = q.vars[:0], q.args[:0]
	clear(q.responses)
	q.nextHandle = 0
	q.ai.reset()
}

// WASI errno values (wasi_snapshot_preview1 errno enum).
const (
	errnoSuccess = 0
	errnoFault   = 21
)

var i32 = api.ValueTypeI32

// instantiateHostModules instantiates on rt every host module a guest may
// import. The capability modules are always there, so that a module
// importing them loads anywhere; whether a call may act is decided per
// request, from the app's grants.
func instantiateHostModules(ctx context.Context, rt wazero.Runtime) error {
	if err := instantiateWASI(ctx, rt); err != nil {
		return err
	}
	if err := instantiateHTTP(ctx, rt); err != nil {
		return err
	}
	if err := instantiateKV(ctx, rt); err != nil {
		return err
	}
	if err := instantiateCache(ctx, rt); err != nil {
		return err
	}
	return instantiateAI(ctx, rt)
}

// instantiateWASI instantiates wasi_snapshot_preview1 on rt with wazero's
// implementation, except that environ_sizes_get and environ_get serve the
// environment of the request in the call's context.
//
// wazero's own versions read an environment fixed in the ModuleConfig,
// which can only be built one variable at a time, each WithEnv copying
// the config: for a CGI request's two dozen variables that was the largest
// cost of a cold start. Overriding these two functions is what wazero's
// FunctionExporter is for.
func instantiateWASI(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(environSizesGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("result.environc", "result.environv_len").
		Export("environ_sizes_get")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(environGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("environ", "environ_buf").
		Export("environ_get")
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate %s: %w", wasi_snapshot_preview1.ModuleName, err)
	}
	return nil
}

// environSizesGet implements environ_sizes_get(result.environc,
// result.environv_len) -> errno.
func environSizesGet(ctx context.Context, mod api.Module, stack []uint64) {
	var count, size uint32
	if q := requestFrom(ctx); q != nil {
		count, size = uint32(len(q.offsets)), uint32(len(q.env))
	}
	mem := mod.Memory()
	if mem == nil || !mem.WriteUint32Le(uint32(stack[0]), count) || !mem.WriteUint32Le(uint32(stack[1]), size) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// environGet implements environ_get(environ, environ_buf) -> errno: it
// writes the variables to environ_buf and a pointer to each to environ.
func environGet(ctx context.Context, mod api.Module, stack []uint64) {
	q := requestFrom(ctx)
	if q == nil || len(q.offsets) == 0 {
		stack[0] = errnoSuccess
		return
	}
	environ, buf := uint32(stack[0]), uint32(stack[1])
	mem := mod.Memory()
	if mem == nil {
		stack[0] = errnoFault
		return
	}
	ptrs, ok := mem.Read(environ, uint32(len(q.offsets))*4)
	if !ok || !mem.Write(buf, q.env) {
		stack[0] = errnoFault
		return
	}
	for i, off := range q.offsets {
		binary.LittleEndian.PutUint32(ptrs[i*4:], buf+off)
	}
	stack[0] = errnoSuccess
}
