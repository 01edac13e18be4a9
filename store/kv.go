package store

import (
	"fmt"
	"strconv"

	"github.com/dgraph-io/badger/v4"
)

// kvPrefix holds apps' key-value data: kv/<len(namespace)>:<namespace><key>.
// The length prefix keeps namespaces disjoint whatever bytes they hold.
const kvPrefix = "kv/"

func kvKey(namespace, key string) []byte {
	return []byte(kvPrefix + strconv.Itoa(len(namespace)) + ":" + namespace + key)
}

// KVGet returns the value of key in namespace, or an error wrapping
// ErrNotFound.
func (s *Store) KVGet(namespace, key string) ([]byte, error) {
	v, err := s.get(kvKey(namespace, key))
	if err != nil {
		return nil, fmt.Errorf("kv get %s/%q: %w", namespace, key, err)
	}
	return v, nil
}

// KVSet stores value under key in namespace. A value larger than
// MaxValueBytes is refused.
func (s *Store) KVSet(namespace, key string, value []byte) error {
	if len(value) > MaxValueBytes {
		return fmt.Errorf("kv set %s/%q: value of %d bytes: at most %d", namespace, key, len(value), MaxValueBytes)
	}
	if err := s.update(func(txn *badger.Txn) error { return txn.Set(kvKey(namespace, key), value) }); err != nil {
		return fmt.Errorf("kv set %s/%q: %w", namespace, key, err)
	}
	return nil
}

// KVDelete removes key from namespace; removing an absent key is not an
// error.
func (s *Store) KVDelete(namespace, key string) error {
	if err := s.update(func(txn *badger.Txn) error { return txn.Delete(kvKey(namespace, key)) }); err != nil {
		return fmt.Errorf("kv delete %s/%q: %w", namespace, key, err)
	}
	return nil
}
