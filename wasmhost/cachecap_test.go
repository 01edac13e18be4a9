package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	gosync "sync"
	"testing"

	"github.com/tetratelabs/wazero/api"
)

// memCache is a Cache in memory for one app. Like the agent's, it refuses
// responses marked no-store.
type memCache struct {
	mu   gosync.Mutex
	m    map[string]memEntry
	fail error
}

type memEntry struct {
	status int
	header http.Header
	body   []byte
}

func newMemCache() *memCache { return &memCache{m: map[string]memEntry{}} }

func (c *memCache) Lookup(_ context.Context, key string) (*http.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return nil, c.fail
	}
	e, ok := c.m[key]
	if !ok {
		return nil, fmt.Errorf("lookup %q: %w", key, ErrCacheMiss)
	}
	return &http.Response{StatusCode: e.status, Header: e.header.Clone(), ContentLength: int64(len(e.body)),
		Body: io.NopCloser(strings.NewReader(string(e.body)))}, nil
}

func (c *memCache) Store(_ context.Context, key string, resp *http.Response) error {
	defer resp.Body.Close()
	if strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
		return fmt.Errorf("store %q: %w", key, ErrNotStorable)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] = memEntry{resp.StatusCode, resp.Header.Clone(), body}
	return nil
}

func (c *memCache) Delete(_ context.Context, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
	return nil
}

var _ Cache = (*memCache)(nil)

// TestCacheCapability drives tern_cache through the caps/cache guest:
// denied without a grant, store and look up with headers, the size of an
// entry that does not fit, refusals, delete, and failures logged.
func TestCacheCapability(t *testing.T) {
	h := newHost(t)
	wasm := guest(t, "caps/cache.wasm")
	load := func(name string, c Cache) *App {
		t.Helper()
		app, err := h.Load(context.Background(), AppConfig{Name: name, Wasm: wasm, Cache: c})
		must(t, err)
		t.Cleanup(func() { app.Close(context.Background()) })
		return app
	}
	call := func(app *App, query string) string {
		t.Helper()
		w := serve(app, httptest.NewRequest("GET", "/c?"+query, nil), "/c")
		equal(t, "status", w.Code, 200)
		return w.Body.String()
	}

	denied := load("denied", nil)
	equal(t, "security: denied by default", call(denied, "get&page"), "error=1\n")
	equal(t, "put denied", call(denied, "put&page&hi"), "error=1\n")
	equal(t, "delete denied", call(denied, "delete&page"), "error=1\n")

	c := newMemCache()
	a := load("a", c)
	equal(t, "get absent", call(a, "get&page"), "error=2\n")
	equal(t, "put", call(a, "put&page&hello"), "ok\n")
	equal(t, "get", call(a, "get&page"), "value=hello\ncache-control:max-age=60\ncontent-length:5\ncontent-type:text/plain\n")
	equal(t, "a body that does not fit reports its length", call(a, "small&page"), "error=4 len=5\n")
	equal(t, "not storable", call(a, "putnostore&secret&x"), "error=7\n")
	equal(t, "nothing stored when refused", call(a, "get&secret"), "error=2\n")
	equal(t, "empty key", call(a, "get"), "error=5\n")
	equal(t, "delete", call(a, "delete&page"), "ok\n")
	equal(t, "get deleted", call(a, "get&page"), "error=2\n")
	equal(t, "delete absent", call(a, "delete&page"), "ok\n")

	c.mu.Lock()
	c.fail = errors.New("disk on fire")
	c.mu.Unlock()
	equal(t, "cache failure", call(a, "get&page"), "error=9\n")
	if !logHas(h.log.String(), `"app":"a"`, "cache capability failed", "disk on fire") {
		t.Errorf("cache failure not logged in:\n%s", h.log.String())
	}
}

// TestCachePutChecksInput calls put with bad arguments directly: a status
// outside 200..599, malformed headers, oversize bodies and pointers
// outside memory each get their own code, and nothing reaches the cache.
func TestCachePutChecksInput(t *testing.T) {
	c := newMemCache()
	app := &App{cache: c}
	ctx := withRequest(context.Background(), &request{app: app})
	mem := newFakeMemory(1 << 16)
	copy(mem.b[0:], "k")
	copy(mem.b[16:], "bad header\n")
	copy(mem.b[64:], "cache-control:max-age=5\n")
	for _, tc := range []struct {
		name  string
		stack []uint64
		want  uint32
	}{
		{"status below 200", []uint64{0, 1, 199, 64, 24, 128, 1}, cacheInvalidInput},
		{"status above 599", []uint64{0, 1, 600, 64, 24, 128, 1}, cacheInvalidInput},
		{"malformed headers", []uint64{0, 1, 200, 16, 11, 128, 1}, cacheInvalidInput},
		{"body over the limit", []uint64{0, 1, 200, 64, 24, 128, maxCacheBody + 1}, cacheTooLarge},
		{"headers over the limit", []uint64{0, 1, 200, 64, maxCacheHeaders + 1, 128, 1}, cacheTooLarge},
		{"body outside memory", []uint64{0, 1, 200, 64, 24, 1<<16 - 1, 2}, cacheMemoryAccess},
		{"key outside memory", []uint64{1 << 16, 1, 200, 64, 24, 128, 1}, cacheMemoryAccess},
		{"key over the limit", []uint64{0, maxCacheKey + 1, 200, 64, 24, 128, 1}, cacheInvalidKey},
		{"valid", []uint64{0, 1, 200, 64, 24, 128, 1}, cacheOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := doCachePut(ctx, fakeModule{mem: mem}, append([]uint64(nil), tc.stack...))
			equal(t, "code", got, tc.want)
		})
	}
	equal(t, "entries", len(c.m), 1)
}

// fakeMemory is a guest memory of fixed size for calling host functions
// directly; only Read and Write are implemented.
type fakeMemory struct {
	api.Memory
	b []byte
}

func newFakeMemory(n int) *fakeMemory { return &fakeMemory{b: make([]byte, n)} }

func (m *fakeMemory) Read(off, n uint32) ([]byte, bool) {
	if uint64(off)+uint64(n) > uint64(len(m.b)) {
		return nil, false
	}
	return m.b[off : off+n], true
}

func (m *fakeMemory) Write(off uint32, v []byte) bool {
	if uint64(off)+uint64(len(v)) > uint64(len(m.b)) {
		return false
	}
	copy(m.b[off:], v)
	return true
}

// fakeModule is a guest module that has only a memory.
type fakeModule struct {
	api.Module
	mem *fakeMemory
}

func (m fakeModule) Memory() api.Memory { return m.mem }
