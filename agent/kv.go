package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/tern-edge/tern/store"
	"github.com/tern-edge/tern/wasmhost"
)

// appKV serves the guests' key-value capability from the agent's store.
// The runtime passes each app's name as the namespace, so apps never see
// each other's data; the data outlives versions and restarts.
type appKV struct{ s *store.Store }

var _ wasmhost.KV = appKV{}

func (k appKV) Get(_ context.Context, namespace, key string) ([]byte, error) {
	v, err := k.s.KVGet(namespace, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", key, wasmhost.ErrKeyNotFound)
	}
	return v, err
}

func (k appKV) Set(_ context.Context, namespace, key string, value []byte) error {
	return k.s.KVSet(namespace, key, value)
}

func (k appKV) Delete(_ context.Context, namespace, key string) error {
	return k.s.KVDelete(namespace, key)
}
