package store

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/tern-edge/tern/internal/disk"
)

// ErrNoSpace reports that the store refused a write because its file
// system is nearly full.
var ErrNoSpace = errors.New("store: no space left")

// Bounds of free space under which the store refuses writes.
//
// Badger writes its write-ahead log through a memory map of a file it
// created sparse: on a full file system a write to a page not yet backed
// by a block does not fail, it kills the process with SIGBUS (seen
// filling a 48 MiB file system to its last byte). So the store refuses
// writes cleanly, with ErrNoSpace, while less than WriteFloor is free:
// what the disk still holds is far more than the writes in flight can
// touch. Deletes, which write only tombstones and are how space comes
// back, go on down to DeleteFloor.
const (
	WriteFloor  = 1 << 20
	DeleteFloor = 64 << 10
)

// room returns an ErrNoSpace error when less than floor is free on the
// store's file system, and nil otherwise, or when free space cannot be
// measured.
func (s *Store) room(floor int64) error {
	u, err := disk.Of(s.dir)
	if err != nil || u.Free >= floor {
		return nil
	}
	return fmt.Errorf("%w: %s has %s free, under the %s the store keeps to write safely",
		ErrNoSpace, s.dir, disk.Format(u.Free), disk.Format(floor))
}

// write runs fn in a read-write transaction, unless the disk is nearly
// full (room).
func (s *Store) write(fn func(txn *badger.Txn) error) error {
	if err := s.room(WriteFloor); err != nil {
		return err
	}
	return s.db.Update(fn)
}

// remove is write for transactions that only delete.
func (s *Store) remove(fn func(txn *badger.Txn) error) error {
	if err := s.room(DeleteFloor); err != nil {
		return err
	}
	return s.db.Update(fn)
}
