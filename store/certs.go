package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	gosync "sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/dgraph-io/badger/v4"
)

// Key prefixes of certificate data.
const (
	certPrefix = "certs/"     // certs/<certmagic key> -> 8-byte modified unix nanos + value
	lockPrefix = "certlock/"  // certlock/<name> -> JSON certLock
	lockDir    = "certlocks/" // certmagic's own lock names are plain strings; keep them apart
)

// Defaults for CertStorageOptions.
const (
	DefaultLockLease = 2 * time.Minute
	DefaultLockPoll  = 250 * time.Millisecond
)

// incarnation identifies this process. Badger lets one process at a time
// open a database directory, so a lock written under another incarnation
// was left by a process that has exited, and nobody can still hold it.
var incarnation = randomToken()

func randomToken() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("store: random token: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// CertStorageOptions tune a CertStorage; zero values take the defaults.
type CertStorageOptions struct {
	// LockLease is how long a lock lives without being refreshed. A holder
	// refreshes its locks every LockLease/3 until it unlocks them, so the
	// lease only runs out for a holder that hangs or forgets to unlock.
	LockLease time.Duration
	// LockPoll is how often Lock checks whether a busy lock was released.
	LockPoll time.Duration
	// Now is the clock for lock expiry; nil means time.Now.
	Now func() time.Time
}

// CertStorage keeps certmagic's certificates, private keys, ACME accounts
// and locks in the store, so that a restarted agent serves the certificates
// it already has without asking the CA again. It implements
// certmagic.Storage, certmagic.TryLocker and certmagic.LockLeaseRenewer.
//
// Keys are certmagic's slash-separated paths; a key is a "file" when it has
// a value and a "directory" when it is only a prefix of other keys. Load,
// Stat and List report absent keys with an error wrapping fs.ErrNotExist;
// Delete of an absent key is not an error. All methods are safe for
// concurrent use and honour ctx where they may wait.
//
// # Locks
//
// A lock is a record in badger naming one acquisition and an expiry. Lock waits while another holder's unexpired lock exists; the
// take-over is one badger transaction, so two waiters never both win. What
// the locks coordinate is every certmagic user of this store in this
// process: on-demand handshakes for one name, the renewal loop and forced
// renewals, which then order a certificate once rather than once each.
//
// What they do not do is coordinate processes. Badger admits one process
// per database directory, so two agents never share this storage; each
// agent of a site has its own store and obtains its own certificates. A
// lock found from an earlier process (an agent that crashed while holding
// it) is therefore stale by construction and is taken over at once rather
// than after its lease. Sharing certificates between the agents of a site
// needs a storage they all reach, which this is not.
type CertStorage struct {
	s     *Store
	lease time.Duration
	poll  time.Duration
	now   func() time.Time

	// mu guards held: the locks taken through this CertStorage.
	mu   gosync.Mutex
	held map[string]heldLock
}

var (
	_ certmagic.Storage          = (*CertStorage)(nil)
	_ certmagic.TryLocker        = (*CertStorage)(nil)
	_ certmagic.LockLeaseRenewer = (*CertStorage)(nil)
)

// CertStorage returns a certmagic storage over s. Locks exclude every
// holder, whether it took them through this CertStorage or another over
// the same store.
func (s *Store) CertStorage(opts CertStorageOptions) *CertStorage {
	if opts.LockLease <= 0 {
		opts.LockLease = DefaultLockLease
	}
	if opts.LockPoll <= 0 {
		opts.LockPoll = DefaultLockPoll
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &CertStorage{
		s:     s,
		lease: opts.LockLease,
		poll:  opts.LockPoll,
		now:   opts.Now,
		held:  map[string]heldLock{},
	}
}

// cleanKey normalises a certmagic key: no leading or trailing slashes.
func cleanKey(key string) string { return strings.Trim(key, "/") }

// Store puts value at key, replacing any value there.
func (c *CertStorage) Store(ctx context.Context, key string, value []byte) error {
	key = cleanKey(key)
	if key == "" {
		return errors.New("cert store: empty key")
	}
	rec := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(rec, uint64(c.now().UnixNano()))
	copy(rec[8:], value)
	if err := c.s.update(func(txn *badger.Txn) error { return txn.Set([]byte(certPrefix+key), rec) }); err != nil {
		return fmt.Errorf("cert store %s: %w", key, err)
	}
	return nil
}

// Load returns the value at key, or an error wrapping fs.ErrNotExist.
func (c *CertStorage) Load(ctx context.Context, key string) ([]byte, error) {
	key = cleanKey(key)
	var v []byte
	err := c.s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(certPrefix + key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fs.ErrNotExist
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			if len(b) < 8 {
				return fmt.Errorf("record of %d bytes is shorter than its 8-byte header", len(b))
			}
			v = append([]byte(nil), b[8:]...)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("cert load %s: %w", key, err)
	}
	return v, nil
}

// Delete removes key and, if key is a directory, every key below it.
// Deleting an absent key is not an error.
func (c *CertStorage) Delete(ctx context.Context, key string) error {
	key = cleanKey(key)
	var keys [][]byte
	err := c.s.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(certPrefix + key)); err == nil {
			keys = append(keys, []byte(certPrefix+key))
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		dir := []byte(certPrefix + key + "/")
		if key == "" {
			dir = []byte(certPrefix)
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: dir})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err == nil && len(keys) > 0 {
		// A WriteBatch splits large deletions over transactions; a
		// directory of certificates can exceed one transaction's limit.
		if err = c.s.room(DeleteFloor); err != nil {
			return fmt.Errorf("delete %s: %w", key, err)
		}
		wb := c.s.db.NewWriteBatch()
		for _, k := range keys {
			if err = wb.Delete(k); err != nil {
				break
			}
		}
		if err == nil {
			if err = wb.Flush(); err == nil {
				err = c.s.db.Sync()
			}
		} else {
			wb.Cancel()
		}
	}
	if err != nil {
		return fmt.Errorf("cert delete %s: %w", key, err)
	}
	return nil
}

// Exists reports whether key is a file or a directory.
func (c *CertStorage) Exists(ctx context.Context, key string) bool {
	_, err := c.Stat(ctx, key)
	return err == nil
}

// Stat describes key, or returns an error wrapping fs.ErrNotExist.
func (c *CertStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	key = cleanKey(key)
	var info certmagic.KeyInfo
	err := c.s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(certPrefix + key))
		if err == nil {
			return item.Value(func(b []byte) error {
				if len(b) < 8 {
					return fmt.Errorf("record of %d bytes is shorter than its 8-byte header", len(b))
				}
				info = certmagic.KeyInfo{
					Key:        key,
					Modified:   time.Unix(0, int64(binary.BigEndian.Uint64(b))),
					Size:       int64(len(b) - 8),
					IsTerminal: true,
				}
				return nil
			})
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(certPrefix + key + "/")})
		defer it.Close()
		if it.Rewind(); it.Valid() {
			info = certmagic.KeyInfo{Key: key, IsTerminal: false}
			return nil
		}
		return fs.ErrNotExist
	})
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("cert stat %s: %w", key, err)
	}
	return info, nil
}

// List returns the keys below dir: its direct children (files and
// directories) or, when recursive, every file and directory beneath it. An
// absent dir is an error wrapping fs.ErrNotExist.
func (c *CertStorage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	dir = cleanKey(dir)
	prefix := certPrefix
	if dir != "" {
		prefix += dir + "/"
	}
	var out []string
	err := c.s.db.View(func(txn *badger.Txn) error {
		seen := map[string]bool{}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			rel := strings.TrimPrefix(string(it.Item().Key()), prefix)
			parts := strings.Split(rel, "/")
			n := 1
			if recursive {
				n = len(parts)
			}
			for i := 1; i <= n; i++ {
				k := strings.Join(parts[:i], "/")
				if dir != "" {
					k = dir + "/" + k
				}
				if !seen[k] {
					seen[k] = true
					out = append(out, k)
				}
			}
		}
		if len(out) == 0 {
			return fs.ErrNotExist
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cert list %s: %w", dir, err)
	}
	return out, nil
}

// certLock is a lock record.
type certLock struct {
	Owner       string    `json:"owner"`       // a token naming one acquisition
	Incarnation string    `json:"incarnation"` // the process that wrote it
	Expires     time.Time `json:"expires"`
}

// heldLock is a lock this storage holds.
type heldLock struct {
	token string
	stop  context.CancelFunc // stops the refresher
}

// ErrLockHeld reports that a lock is not held through this storage, for
// Unlock and RenewLockLease.
var ErrLockHeld = errors.New("lock not held by this storage")

// Lock takes the lock called name, waiting while it is held (through this
// storage or another) and until ctx is done. The lock lasts until Unlock;
// it is refreshed in the background so that only a holder that stops
// running loses it.
func (c *CertStorage) Lock(ctx context.Context, name string) error {
	for {
		ok, err := c.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cert lock %s: %w", name, context.Cause(ctx))
		case <-time.After(c.poll):
		}
	}
}

// TryLock takes the lock called name if it is free or stale, and reports
// whether it did; it never waits. Locks are not reentrant.
func (c *CertStorage) TryLock(ctx context.Context, name string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("cert lock %s: %w", name, err)
	}
	token := randomToken()
	took, err := c.put(name, token, c.lease, false)
	if err != nil {
		return false, fmt.Errorf("cert lock %s: %w", name, err)
	}
	if !took {
		return false, nil
	}
	rctx, stop := context.WithCancel(context.Background())
	c.mu.Lock()
	if old, ok := c.held[name]; ok {
		old.stop() // it went stale under us; its refresher has failed
	}
	c.held[name] = heldLock{token: token, stop: stop}
	c.mu.Unlock()
	go c.refresh(rctx, name, token)
	return true, nil
}

// put writes a lock record for name under token with the given lease, in
// one transaction. Unless mustHold, it takes a free or stale lock; with
// mustHold it only extends the unexpired lock token holds.
func (c *CertStorage) put(name, token string, lease time.Duration, mustHold bool) (bool, error) {
	key := []byte(lockPrefix + lockDir + name)
	took := false
	err := updateRetry(c.s, WriteFloor, func(txn *badger.Txn) error {
		took = false
		var cur certLock
		item, err := txn.Get(key)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			// An undecodable record holds nothing: it is taken over.
			_ = item.Value(func(b []byte) error { return json.Unmarshal(b, &cur) })
		}
		now := c.now()
		expired := now.After(cur.Expires)
		free := cur.Owner == "" || cur.Incarnation != incarnation || expired
		mine := cur.Owner == token && !expired
		if mustHold && !mine || !mustHold && !free {
			return nil
		}
		rec, err := json.Marshal(certLock{Owner: token, Incarnation: incarnation, Expires: now.Add(lease)})
		if err != nil {
			return err
		}
		took = true
		return txn.Set(key, rec)
	})
	return took, err
}

// updateRetry runs f in an update transaction, again while badger reports a
// conflict: another writer raced us, and the retry re-reads what it wrote.
// Below floor free space it refuses (Store.room).
func updateRetry(s *Store, floor int64, f func(*badger.Txn) error) error {
	if err := s.room(floor); err != nil {
		return err
	}
	db := s.db
	for {
		err := db.Update(f)
		if errors.Is(err, badger.ErrConflict) {
			continue
		}
		if err == nil {
			err = db.Sync()
		}
		return err
	}
}

// refresh keeps the lock name, taken under token, alive until ctx is done.
func (c *CertStorage) refresh(ctx context.Context, name, token string) {
	t := time.NewTicker(c.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ok, err := c.put(name, token, c.lease, true); err != nil || !ok {
				c.s.logger.Warn("cert lock lost", "lock", name, "error", err)
				return
			}
		}
	}
}

// Unlock releases the lock called name. Releasing a lock not held through
// this storage is an error wrapping ErrLockHeld.
func (c *CertStorage) Unlock(ctx context.Context, name string) error {
	c.mu.Lock()
	h, ok := c.held[name]
	if ok {
		h.stop()
		delete(c.held, name)
	}
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("cert unlock %s: %w", name, ErrLockHeld)
	}
	key := []byte(lockPrefix + lockDir + name)
	err := updateRetry(c.s, DeleteFloor, func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var cur certLock
		_ = item.Value(func(b []byte) error { return json.Unmarshal(b, &cur) })
		if cur.Owner != h.token {
			return nil // it expired and someone else took it: theirs now
		}
		return txn.Delete(key)
	})
	if err != nil {
		return fmt.Errorf("cert unlock %s: %w", name, err)
	}
	return nil
}

// RenewLockLease extends a lock held through this storage to last lease
// from now; certmagic calls it before long retries. A lock not held
// through this storage is an error wrapping ErrLockHeld.
func (c *CertStorage) RenewLockLease(ctx context.Context, name string, lease time.Duration) error {
	c.mu.Lock()
	h, ok := c.held[name]
	c.mu.Unlock()
	var err error
	if ok {
		ok, err = c.put(name, h.token, max(lease, c.lease), true)
	}
	if err == nil && !ok {
		err = ErrLockHeld
	}
	if err != nil {
		return fmt.Errorf("cert lock %s: renew lease %s: %w", name, lease, err)
	}
	return nil
}
