package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/tern-edge/tern/cache"
	"github.com/tern-edge/tern/wasmhost"
)

// appCache serves a function's tern_cache calls from its app's namespace
// of the agent's cache: the same budget, eviction and tag purges as the
// origins' entries, under keys that no URL and no other app can reach.
// The namespace outlives versions and restarts, as the cache does.
type appCache struct{ ns *cache.Namespace }

var _ wasmhost.Cache = appCache{}

func (c appCache) Lookup(_ context.Context, key string) (*http.Response, error) {
	resp, err := c.ns.Lookup(key)
	if errors.Is(err, cache.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", wasmhost.ErrCacheMiss, err)
	}
	return resp, err
}

func (c appCache) Store(_ context.Context, key string, resp *http.Response) error {
	err := c.ns.Store(key, resp)
	if errors.Is(err, cache.ErrNotStorable) {
		return fmt.Errorf("%w: %w", wasmhost.ErrNotStorable, err)
	}
	return err
}

func (c appCache) Delete(_ context.Context, key string) error { return c.ns.Delete(key) }
