package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"

	"github.com/dgraph-io/badger/v4"

	"github.com/tern-edge/tern/cache"
)

// Cache key layout. Metadata and body chunks live under separate prefixes
// so that rebuilding the cache index on open reads only the small metadata
// records, never a body.
const (
	cacheMetaPrefix  = "cache/m/" // cache/m/<key> -> meta record
	cacheChunkPrefix = "cache/c/" // cache/c/<body>/<idx uint32 BE> -> chunk bytes
)

// CacheStore keeps HTTP cache entries in the store's badger database. It
// implements cache.Storage; get one with Store.Cache.
//
// Chunks of 64 KiB or more are files in the store's directory (see
// cacheFilesDir), so that a stream of misses never waits on badger's value
// log; smaller ones and all entries live in badger's LSM tree.
type CacheStore struct{ s *Store }

var _ cache.Storage = (*CacheStore)(nil)

// Cache returns the cache storage view of s. It shares s's database and
// lifetime: close s only after the cache has stopped.
func (s *Store) Cache() *CacheStore { return &CacheStore{s: s} }

// RunValueLogGC rewrites value log files in which at least discardRatio
// (0 < ratio < 1) of the data is deleted or overwritten, until none is
// left, and returns how many it rewrote. Cache churn is what makes this
// necessary: without it deleted bodies keep their disk space forever.
func (s *Store) RunValueLogGC(discardRatio float64) (int, error) {
	n := 0
	for {
		err := s.db.RunValueLogGC(discardRatio)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			// ErrRejected: another GC is running, which is as good.
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("value log gc (discard ratio %.2f): %w", discardRatio, err)
		}
		n++
	}
}

// GC runs value log garbage collection for the cache's churn; the cache
// calls it periodically.
func (c *CacheStore) GC() error {
	_, err := c.s.RunValueLogGC(0.5)
	return err
}

func chunkKey(body string, idx int) []byte {
	k := make([]byte, 0, len(cacheChunkPrefix)+len(body)+5)
	k = append(k, cacheChunkPrefix...)
	k = append(k, body...)
	k = append(k, '/')
	return binary.BigEndian.AppendUint32(k, uint32(idx))
}

// encodeEntry lays out a meta record: uvarint size, uvarint len(body), body,
// then the cache's opaque metadata.
func encodeEntry(e cache.Entry) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+len(e.Body)+len(e.Meta))
	b = binary.AppendUvarint(b, uint64(e.Size))
	b = binary.AppendUvarint(b, uint64(len(e.Body)))
	b = append(b, e.Body...)
	return append(b, e.Meta...)
}

// errDamaged marks a record that does not decode.
var errDamaged = errors.New("damaged record")

func decodeEntry(key string, v []byte) (cache.Entry, error) {
	size, n := binary.Uvarint(v)
	if n <= 0 || size > math.MaxInt64 {
		return cache.Entry{}, fmt.Errorf("decode cache entry %q: bad size: %w", key, errDamaged)
	}
	v = v[n:]
	bl, n := binary.Uvarint(v)
	if n <= 0 || uint64(len(v)-n) < bl {
		return cache.Entry{}, fmt.Errorf("decode cache entry %q: bad body id: %w", key, errDamaged)
	}
	v = v[n:]
	return cache.Entry{
		Key:  key,
		Body: string(v[:bl]),
		Size: int64(size),
		Meta: bytes.Clone(v[bl:]),
	}, nil
}

func getEntry(txn *badger.Txn, key string) (cache.Entry, error) {
	item, err := txn.Get([]byte(cacheMetaPrefix + key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return cache.Entry{}, cache.ErrNotFound
	}
	if err != nil {
		return cache.Entry{}, err
	}
	var e cache.Entry
	err = item.Value(func(v []byte) error {
		e, err = decodeEntry(key, v)
		return err
	})
	return e, err
}

// Walk calls fn for every committed entry, in key order, and stops at the
// first error fn returns. Records that do not decode (damaged on disk) are
// logged, skipped and then deleted: a cache entry is worth less than a
// start-up.
func (c *CacheStore) Walk(fn func(cache.Entry) error) error {
	var damaged [][]byte
	err := c.s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(cacheMetaPrefix), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := string(it.Item().Key()[len(cacheMetaPrefix):])
			var e cache.Entry
			err := it.Item().Value(func(v []byte) error {
				var err error
				e, err = decodeEntry(key, v)
				return err
			})
			if errors.Is(err, errDamaged) {
				c.s.logger.Warn("skipping unreadable cache record", "key", key, "err", err)
				damaged = append(damaged, it.Item().KeyCopy(nil))
				continue
			}
			if err != nil {
				return err
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk cache entries: %w", err)
	}
	if len(damaged) > 0 {
		if err := c.deleteKeys(damaged); err != nil {
			return fmt.Errorf("walk cache entries: delete unreadable: %w", err)
		}
	}
	return nil
}

// WriteChunk stores chunk idx of body: in a file from fileChunkMin bytes,
// in badger below.
func (c *CacheStore) WriteChunk(body string, idx int, p []byte) error {
	var err error
	if len(p) >= fileChunkMin {
		err = c.writeChunkFile(body, idx, p)
	} else {
		err = c.s.write(func(txn *badger.Txn) error {
			return txn.Set(chunkKey(body, idx), p)
		})
	}
	if err != nil {
		return fmt.Errorf("write cache chunk %s/%d (%d bytes): %w", body, idx, len(p), err)
	}
	return nil
}

// ReadChunk appends chunk idx of body to buf[:0]. It looks in badger
// first, where small bodies are and where earlier versions kept large
// ones, then for a file.
func (c *CacheStore) ReadChunk(body string, idx int, buf []byte) ([]byte, error) {
	found := false
	err := c.s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(chunkKey(body, idx))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		buf, err = item.ValueCopy(buf[:0])
		return err
	})
	if err == nil && !found {
		buf, err = c.readChunkFile(body, idx, buf)
		if errors.Is(err, fs.ErrNotExist) {
			err = cache.ErrNotFound
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read cache chunk %s/%d: %w", body, idx, err)
	}
	return buf, nil
}

// Commit makes e visible under e.Key. The body it replaces stays until
// deleted.
func (c *CacheStore) Commit(e cache.Entry) error {
	err := c.s.write(func(txn *badger.Txn) error {
		return txn.Set([]byte(cacheMetaPrefix+e.Key), encodeEntry(e))
	})
	if err != nil {
		return fmt.Errorf("commit cache entry %q: %w", e.Key, err)
	}
	return nil
}

// CommitSmall stores p as the single chunk of e.Body and commits e. Below
// fileChunkMin both are one transaction, so a small fill costs one write,
// not two; from there the chunk is a file written first.
func (c *CacheStore) CommitSmall(e cache.Entry, p []byte) error {
	if len(p) >= fileChunkMin {
		if err := c.writeChunkFile(e.Body, 0, p); err != nil {
			return fmt.Errorf("commit cache entry %q with its body (%d bytes): %w", e.Key, len(p), err)
		}
		return c.Commit(e)
	}
	err := c.s.write(func(txn *badger.Txn) error {
		if len(p) > 0 {
			if err := txn.Set(chunkKey(e.Body, 0), p); err != nil {
				return err
			}
		}
		return txn.Set([]byte(cacheMetaPrefix+e.Key), encodeEntry(e))
	})
	if err != nil {
		return fmt.Errorf("commit cache entry %q with its body (%d bytes): %w", e.Key, len(p), err)
	}
	return nil
}

// UpdateMeta replaces the metadata of the entry under key, provided it
// still holds body.
func (c *CacheStore) UpdateMeta(key, body string, meta []byte) error {
	err := c.s.write(func(txn *badger.Txn) error {
		e, err := getEntry(txn, key)
		if err != nil {
			return err
		}
		if e.Body != body {
			return cache.ErrNotFound
		}
		e.Meta = meta
		return txn.Set([]byte(cacheMetaPrefix+key), encodeEntry(e))
	})
	if err != nil {
		return fmt.Errorf("update cache entry %q: %w", key, err)
	}
	return nil
}

// Delete removes the entry under key if it still refers to body, then
// the chunks of body.
func (c *CacheStore) Delete(key, body string) error {
	err := c.s.remove(func(txn *badger.Txn) error {
		e, err := getEntry(txn, key)
		if errors.Is(err, cache.ErrNotFound) || err == nil && e.Body != body {
			return nil
		}
		if err != nil {
			return err
		}
		return txn.Delete([]byte(cacheMetaPrefix + key))
	})
	if err != nil {
		return fmt.Errorf("delete cache entry %q: %w", key, err)
	}
	return c.DeleteBody(body)
}

// DeleteBody removes every chunk of body. A write batch, unlike one
// transaction, has no size limit, which a large body's chunks may pass.
func (c *CacheStore) DeleteBody(body string) error {
	prefix := []byte(cacheChunkPrefix + body + "/")
	var keys [][]byte
	err := c.s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err == nil {
		err = c.deleteKeys(keys)
	}
	if err == nil {
		err = c.removeChunkFiles(body)
	}
	if err != nil {
		return fmt.Errorf("delete cache body %s: %w", body, err)
	}
	return nil
}

func (c *CacheStore) deleteKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	if err := c.s.room(DeleteFloor); err != nil {
		return err
	}
	wb := c.s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// Sweep deletes chunks, in badger and in files, that no committed entry
// refers to: what a crash in the middle of a fill leaves behind. It must
// run before the cache starts writing, since the chunks of a fill in
// progress look the same.
func (c *CacheStore) Sweep() error {
	live, liveFiles := map[string]bool{}, map[string]bool{}
	err := c.Walk(func(e cache.Entry) error {
		live[e.Body], liveFiles[encodeBodyName(e.Body)] = true, true
		return nil
	})
	if err == nil {
		err = c.sweepChunkFiles(liveFiles)
	}
	if err != nil {
		return fmt.Errorf("sweep cache: %w", err)
	}
	var keys [][]byte
	err = c.s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(cacheChunkPrefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			rest := k[len(cacheChunkPrefix):]
			// The index is binary and may itself hold a '/': cut by length.
			if len(rest) < 5 || !live[string(rest[:len(rest)-5])] {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	if err == nil {
		err = c.deleteKeys(keys)
	}
	if err != nil {
		return fmt.Errorf("sweep cache: %w", err)
	}
	return nil
}
