package store

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// metaPrefix holds small records of the agent's own state, such as the
// accepted publisher list.
const metaPrefix = "meta/"

// PutMeta stores value under name.
func (s *Store) PutMeta(name string, value []byte) error {
	if err := s.update(func(txn *badger.Txn) error { return txn.Set([]byte(metaPrefix+name), value) }); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	return nil
}

// Meta returns the value stored under name, or an error wrapping
// ErrNotFound.
func (s *Store) Meta(name string) ([]byte, error) {
	v, err := s.get([]byte(metaPrefix + name))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}
