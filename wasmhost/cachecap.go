package wasmhost

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Cache is the HTTP cache that one app's guests reach through the
// tern_cache host module: responses stored under keys the guest chooses,
// with freshness from their own headers, so a function can act as a
// programmable edge in front of an origin. The agent gives every app its
// own Cache (a key space no other app and no URL can reach); the runtime
// adds no namespace of its own.
//
// Implementations must be safe for concurrent use. ctx carries the
// request's deadline.
type Cache interface {
	// Lookup returns the fresh response stored under key; the runtime
	// closes its body. An absent entry, or one no longer fresh, is an
	// error wrapping ErrCacheMiss.
	Lookup(ctx context.Context, key string) (*http.Response, error)
	// Store stores resp under key, reading and closing its body, with
	// freshness from resp's headers (Cache-Control, Expires, Date…). A
	// response whose headers forbid storing (no-store, private,
	// Set-Cookie, Vary: *, no freshness information) is an error wrapping
	// ErrNotStorable.
	Store(ctx context.Context, key string, resp *http.Response) error
	// Delete removes the entry under key. Deleting an absent key is not
	// an error.
	Delete(ctx context.Context, key string) error
}

// Errors a Cache wraps for the cases guests see as their own codes.
var (
	// ErrCacheMiss means no fresh response is stored under the key.
	ErrCacheMiss = errors.New("cache miss")
	// ErrNotStorable means a response's own headers forbid storing it.
	ErrNotStorable = errors.New("response not storable")
)

// cacheModule is the name of the cache host module.
const cacheModule = "tern_cache"

// Bounds on what a guest may store and read back: keys as tern_kv's, and
// bodies that one request's memory holds comfortably.
const (
	maxCacheKey     = 512
	maxCacheBody    = 8 << 20
	maxCacheHeaders = 64 << 10
)

// tern_cache error codes, as documented in docs/GUEST_ABI.md.
const (
	cacheOK             = 0
	cacheDenied         = 1 // the manifest does not grant the cache
	cacheNotFound       = 2 // absent, or no longer fresh
	cacheMemoryAccess   = 3 // a pointer and length outside the guest's memory
	cacheBufferTooSmall = 4 // res still holds the sizes
	cacheInvalidKey     = 5 // empty, over maxCacheKey bytes, or not UTF-8
	cacheTooLarge       = 6 // body over maxCacheBody or headers over maxCacheHeaders bytes
	cacheNotStorable    = 7 // the response's headers forbid storing it
	cacheInvalidInput   = 8 // a status outside 200..599 or malformed headers
	cacheStoreError     = 9 // the cache failed; the agent logs why
)

// instantiateCache instantiates the tern_cache host module on rt. Its
// functions act on the cache of the request's app in the call's context.
func instantiateCache(ctx context.Context, rt wazero.Runtime) error {
	return instantiateHost(ctx, rt, cacheModule,
		hostFunc{"get", cacheGet, []string{"key", "key_len", "headers", "headers_cap", "body", "body_cap", "res"}},
		hostFunc{"put", cachePut, []string{"key", "key_len", "status", "headers", "headers_len", "body", "body_len"}},
		hostFunc{"delete", cacheDelete, []string{"key", "key_len"}},
	)
}

// cacheKey returns the request's app and the key the guest named, or the
// error code to return. Stack values are raw: an i32 is their low 32 bits.
func cacheKey(ctx context.Context, mod api.Module, rawPtr, rawN uint64) (*App, string, uint32) {
	ptr, n := uint32(rawPtr), uint32(rawN)
	q := requestFrom(ctx)
	if q == nil || q.app == nil || q.app.cache == nil {
		return nil, "", cacheDenied
	}
	mem := mod.Memory()
	if mem == nil {
		return nil, "", cacheMemoryAccess
	}
	if n == 0 || n > maxCacheKey {
		return nil, "", cacheInvalidKey
	}
	b, ok := mem.Read(ptr, n)
	if !ok {
		return nil, "", cacheMemoryAccess
	}
	key := string(b)
	if !utf8.ValidString(key) {
		return nil, "", cacheInvalidKey
	}
	return q.app, key, cacheOK
}

// cacheGet implements get(key, key_len, headers, headers_cap, body,
// body_cap, res) -> error. res receives status, headers length and body
// length (u32 each) on success and when a buffer is too small, so a guest
// can retry with buffers that fit; nothing else is written then.
func cacheGet(ctx context.Context, mod api.Module, stack []uint64) {
	stack[0] = uint64(doCacheGet(ctx, mod, stack))
}

func doCacheGet(ctx context.Context, mod api.Module, p []uint64) uint32 {
	app, key, code := cacheKey(ctx, mod, p[0], p[1])
	if code != cacheOK {
		return code
	}
	hdrPtr, hdrCap := uint32(p[2]), uint32(p[3])
	bodyPtr, bodyCap := uint32(p[4]), uint32(p[5])
	resPtr := uint32(p[6])
	resp, err := app.cache.Lookup(ctx, key)
	switch {
	case errors.Is(err, ErrCacheMiss):
		return cacheNotFound
	case err != nil:
		return app.cacheFailed(ctx, "lookup", key, err)
	}
	defer resp.Body.Close()
	hdr := encodeHeaders(resp.Header)
	if len(hdr) > maxCacheHeaders || resp.ContentLength > maxCacheBody {
		return cacheTooLarge
	}
	// The stored length is known, so a guest whose buffer is too small
	// learns the size without the host reading the body.
	body := []byte(nil)
	bodyLen := resp.ContentLength
	if bodyLen < 0 || (uint64(bodyLen) <= uint64(bodyCap) && uint32(len(hdr)) <= hdrCap) {
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxCacheBody+1))
		if err != nil {
			return app.cacheFailed(ctx, "read", key, err)
		}
		if len(body) > maxCacheBody {
			return cacheTooLarge
		}
		bodyLen = int64(len(body))
	}
	mem := mod.Memory()
	var res [12]byte
	putU32(res[0:], uint32(resp.StatusCode))
	putU32(res[4:], uint32(len(hdr)))
	putU32(res[8:], uint32(bodyLen))
	if !mem.Write(resPtr, res[:]) {
		return cacheMemoryAccess
	}
	if uint32(len(hdr)) > hdrCap || uint64(bodyLen) > uint64(bodyCap) {
		return cacheBufferTooSmall
	}
	if !mem.Write(hdrPtr, hdr) || !mem.Write(bodyPtr, body) {
		return cacheMemoryAccess
	}
	return cacheOK
}

// cachePut implements put(key, key_len, status, headers, headers_len,
// body, body_len) -> error.
func cachePut(ctx context.Context, mod api.Module, stack []uint64) {
	stack[0] = uint64(doCachePut(ctx, mod, stack))
}

func doCachePut(ctx context.Context, mod api.Module, p []uint64) uint32 {
	app, key, code := cacheKey(ctx, mod, p[0], p[1])
	if code != cacheOK {
		return code
	}
	status := uint32(p[2])
	hdrPtr, hdrLen := uint32(p[3]), uint32(p[4])
	bodyPtr, bodyLen := uint32(p[5]), uint32(p[6])
	if hdrLen > maxCacheHeaders || bodyLen > maxCacheBody {
		return cacheTooLarge
	}
	if status < 200 || status > 599 {
		return cacheInvalidInput
	}
	mem := mod.Memory()
	hdrBytes, ok := mem.Read(hdrPtr, hdrLen)
	if !ok {
		return cacheMemoryAccess
	}
	body, ok := mem.Read(bodyPtr, bodyLen)
	if !ok {
		return cacheMemoryAccess
	}
	h, ok := parseHeaderString(string(hdrBytes))
	if !ok {
		return cacheInvalidInput
	}
	// body aliases guest memory, which a later instance reuses: the cache
	// reads a copy.
	body = bytes.Clone(body)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	resp := &http.Response{
		StatusCode:    int(status),
		Status:        strconv.Itoa(int(status)) + " " + http.StatusText(int(status)),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: int64(len(body)),
		Body:          io.NopCloser(bytes.NewReader(body)),
	}
	err := app.cache.Store(ctx, key, resp)
	switch {
	case errors.Is(err, ErrNotStorable):
		return cacheNotStorable
	case err != nil:
		return app.cacheFailed(ctx, "store", key, err)
	}
	return cacheOK
}

// cacheDelete implements delete(key, key_len) -> error.
func cacheDelete(ctx context.Context, mod api.Module, stack []uint64) {
	app, key, code := cacheKey(ctx, mod, stack[0], stack[1])
	if code != cacheOK {
		stack[0] = uint64(code)
		return
	}
	if err := app.cache.Delete(ctx, key); err != nil {
		stack[0] = uint64(app.cacheFailed(ctx, "delete", key, err))
		return
	}
	stack[0] = cacheOK
}

// cacheFailed logs a cache failure, which the guest sees only as a code.
func (a *App) cacheFailed(ctx context.Context, op, key string, err error) uint32 {
	a.logger.LogAttrs(ctx, slog.LevelWarn, "cache capability failed",
		slog.String("op", op), slog.String("key", truncateForLog(key)), slog.String("err", err.Error()))
	return cacheStoreError
}

// encodeHeaders encodes h as the guest ABI does everywhere: one
// "name:value\n" line per value, names lower-case and sorted.
func encodeHeaders(h http.Header) []byte {
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names)
	var b []byte
	for _, name := range names {
		for _, v := range h[name] {
			b = append(b, strings.ToLower(name)...)
			b = append(b, ':')
			b = append(b, v...)
			b = append(b, '\n')
		}
	}
	return b
}

// putU32 writes v little-endian at the start of b.
func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
