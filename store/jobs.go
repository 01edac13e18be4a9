package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Deferred jobs are kept as a small record, rewritten on every change of
// state, beside named blobs (the stored request, the result) written once:
// a job with a large body is not copied again each time it moves from
// scheduled to started to done. A blob is stored in parts of at most
// blobPart bytes, so that no value outgrows a value-log file
// (MaxValueBytes) whatever an app's max_response allows.
//
//	job/<id>                   -> the record (opaque to the store)
//	jobblob/<id>/<name>/<part> -> part <part> (8 decimal digits) of a blob
//	jobblob/<id>/<name>        -> a whole blob, as earlier versions wrote it
const (
	jobPrefix     = "job/"
	jobBlobPrefix = "jobblob/"
	blobPart      = 1 << 20
)

func jobBlobKey(id, name string) []byte { return []byte(jobBlobPrefix + id + "/" + name) }

func checkBlobName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("job blob %q: must be non-empty without '/' or NUL", name)
	}
	return nil
}

// setBlobs writes blobs of job id in txn, replacing any earlier parts.
func setBlobs(txn *badger.Txn, id string, blobs map[string][]byte) error {
	for name, b := range blobs {
		if err := checkBlobName(name); err != nil {
			return err
		}
		key := jobBlobKey(id, name)
		if err := deletePrefix(txn, append(slices.Clip(key), '/')); err != nil {
			return err
		}
		if err := txn.Delete(key); err != nil {
			return err
		}
		for part := 0; part == 0 || part*blobPart < len(b); part++ {
			chunk := b[part*blobPart : min(len(b), (part+1)*blobPart)]
			if err := txn.Set(fmt.Appendf(slices.Clip(key), "/%08d", part), chunk); err != nil {
				return fmt.Errorf("blob %s part %d of %d bytes: %w", name, part, len(b), err)
			}
		}
	}
	return nil
}

// deletePrefix deletes every key with prefix in txn.
func deletePrefix(txn *badger.Txn, prefix []byte) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func checkJobID(id string) error {
	if id == "" || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("job id %q: must be non-empty without '/' or NUL", id)
	}
	return nil
}

// PutJob stores a job's record and the given blobs in one synced
// transaction, so that a crash leaves either the previous state or this
// one. Blobs not named are left as they are.
func (s *Store) PutJob(id string, rec []byte, blobs map[string][]byte) error {
	if err := checkJobID(id); err != nil {
		return fmt.Errorf("put job: %w", err)
	}
	err := s.update(func(txn *badger.Txn) error {
		if err := setBlobs(txn, id, blobs); err != nil {
			return err
		}
		return txn.Set([]byte(jobPrefix+id), rec)
	})
	if err != nil {
		return fmt.Errorf("put job %s: %w", id, err)
	}
	return nil
}

// JobBlob returns the blob name of job id, or an error wrapping
// ErrNotFound.
func (s *Store) JobBlob(id, name string) ([]byte, error) {
	if err := checkBlobName(name); err != nil {
		return nil, err
	}
	key := jobBlobKey(id, name)
	var blob []byte
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: append(slices.Clip(key), '/')})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			found = true
			if err := it.Item().Value(func(v []byte) error { blob = append(blob, v...); return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && !found {
		blob, err = s.get(key)
	}
	if err != nil {
		return nil, fmt.Errorf("job %s %s: %w", id, name, err)
	}
	return blob, nil
}

// Jobs calls fn with every job's id and record, ordered by id, until fn
// returns an error, which Jobs returns. rec is only valid during the call.
func (s *Store) Jobs(fn func(id string, rec []byte) error) error {
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(jobPrefix), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			id := strings.TrimPrefix(string(it.Item().Key()), jobPrefix)
			if err := it.Item().Value(func(v []byte) error { return fn(id, v) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list jobs: %w", err)
	}
	return nil
}

// DeleteJob removes a job's record and all its blobs. Deleting an absent
// job is not an error.
func (s *Store) DeleteJob(id string) error {
	if err := checkJobID(id); err != nil {
		return fmt.Errorf("delete job: %w", err)
	}
	err := s.update(func(txn *badger.Txn) error {
		if err := deletePrefix(txn, []byte(jobBlobPrefix+id+"/")); err != nil {
			return err
		}
		return txn.Delete([]byte(jobPrefix + id))
	})
	if err != nil {
		return fmt.Errorf("delete job %s: %w", id, err)
	}
	return nil
}

// jobMarkPrefix keys small named values the job scheduler keeps beside
// the jobs, such as the last occurrence created for each schedule:
//
//	jobmark/<name> -> value (opaque to the store)
const jobMarkPrefix = "jobmark/"

// PutJobMark stores mark's value and, when id is not empty, a job's
// record and blobs, in one synced transaction: a job created for a
// schedule's occurrence and the record that the occurrence was handled
// survive a crash together or not at all.
func (s *Store) PutJobMark(id string, rec []byte, blobs map[string][]byte, mark string, value []byte) error {
	if mark == "" {
		return errors.New("put job mark: empty name")
	}
	if id != "" {
		if err := checkJobID(id); err != nil {
			return fmt.Errorf("put job: %w", err)
		}
	}
	err := s.update(func(txn *badger.Txn) error {
		if id != "" {
			if err := setBlobs(txn, id, blobs); err != nil {
				return err
			}
			if err := txn.Set([]byte(jobPrefix+id), rec); err != nil {
				return err
			}
		}
		return txn.Set([]byte(jobMarkPrefix+mark), value)
	})
	if err != nil {
		return fmt.Errorf("put job mark %s: %w", mark, err)
	}
	return nil
}

// JobMark returns mark's value, or an error wrapping ErrNotFound.
func (s *Store) JobMark(mark string) ([]byte, error) {
	v, err := s.get([]byte(jobMarkPrefix + mark))
	if err != nil {
		return nil, fmt.Errorf("job mark %s: %w", mark, err)
	}
	return v, nil
}
