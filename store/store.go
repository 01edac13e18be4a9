// Package store is Tern's local state on disk: the one badger database of an
// agent, and beside it the files of the modules it runs. It holds the last
// known good release of every installed app (the signed envelope in badger,
// the wasm bytes in a file named by their digest), so a restarted agent
// serves what it served before without reaching the hub. It is the only
// package that imports badger.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// ErrNotFound reports that the store holds no value under the asked key.
var ErrNotFound = errors.New("not found")

// Key prefixes. Each kind of record has its own prefix so that a scan over
// one kind never reads another.
const (
	appPrefix = "app/" // app/<name> -> JSON App
	// wasmPrefix held module bytes before they moved to files; Open moves
	// any it finds.
	wasmPrefix = "wasm/" // wasm/<digest> -> module bytes
)

// App is the record of one installed app: its last known good release.
type App struct {
	Name     string `json:"name"`
	Sequence uint64 `json:"sequence"`
	// Digest names the module; it is empty for an app without one (an
	// origin app), which has no module record.
	Digest string `json:"digest"`
	// Envelope is the signed release exactly as the hub served it, kept so
	// that the agent re-verifies what it loads at start.
	Envelope []byte `json:"envelope"`
}

// MaxValueBytes is the largest single value the store holds, such as an
// app's KV value: the size of badger's value-log files, which must hold a
// value whole. Job blobs are stored in parts of 1 MiB, and modules and
// large cache chunks are files, so none of them is bound by it.
//
// Small files rather than badger's 1 GiB default, because badger closes a
// full value-log file (truncating and remapping it) when it rotates to the
// next, and that stalls the writes behind it in proportion to the file's
// size: a cache filling 100 KB misses, when its chunks were values, saw an
// 88 ms p99 with 256 MiB files, 53 ms with 64 MiB and 15–28 ms with 16 MiB
// (docs/CACHE.md).
const MaxValueBytes = 16 << 20

// Store is an open badger database. All methods are safe for concurrent use.
type Store struct {
	db     *badger.DB
	dir    string
	logger *slog.Logger
	// apps serializes PutApp and DeleteApp, which decide whether a
	// module file is still used in a transaction and remove it after the
	// commit: two at once could remove a file the other just referenced.
	apps sync.Mutex
}

// DefaultMemTableBytes is the size of badger's memtables when Options
// leave it zero. Every cache miss of a small object is written to the
// memtable, and each full one becomes a level-0 table that compactions
// merge down the tree on the same cores that serve requests. With 4 MiB
// tables, unique 1 KB misses reached a p99 of 25–38 ms in the fourth or
// fifth 5 s run (about 60 000 entries); with 16 MiB, 13–14 ms at most
// (scripts/bench-cache-memory.sh, docs/CACHE.md).
const DefaultMemTableBytes = 16 << 20

// Options tune a Store. The zero value is the default.
type Options struct {
	// Logger receives badger's messages; nil discards them.
	Logger *slog.Logger
	// MemTableBytes is the size of badger's memtables; 0 means
	// DefaultMemTableBytes. Badger allocates each whole on the Go heap,
	// one in use and up to one more being flushed.
	MemTableBytes int64
}

// Open opens (or creates) the store in dir with default options but the
// logger; a nil logger discards badger's messages.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	return OpenWith(dir, Options{Logger: logger})
}

// OpenWith opens (or creates) the store in dir.
func OpenWith(dir string, o Options) (*Store, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	memTable := o.MemTableBytes
	if memTable == 0 {
		memTable = DefaultMemTableBytes
	}
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{logger}).
		// Commits are not synced by default: the cache writes on every
		// miss and may lose its newest entries in a power cut. Records
		// that must survive one (releases, jobs, certificates, app KV)
		// are committed with update, which syncs. Unsynced or not, a
		// crash leaves badger consistent: it keeps a prefix of the writes.
		WithSyncWrites(false).
		// Edge nodes and gateways are small machines; badger's defaults
		// (64 MiB memtables, 1 GiB value logs) are sized for servers.
		// Memtables: see DefaultMemTableBytes. Badger allocates a
		// memtable's arena whole on the Go heap: with 16 MiB tables the
		// arenas were 21 of an idle agent's 35 MB of heap, and 100 agents
		// in one process spent 17 ms of CPU per 1 MiB deploy each,
		// against 12 ms with 4 MiB, which the fleet benchmark therefore
		// sets (docs/FLEET.md). Values of 64 KiB and more go to the value
		// log (and cache chunks that large are files), so a memtable holds
		// keys, metadata and small bodies.
		WithMemTableSize(memTable).
		WithValueLogFileSize(MaxValueBytes).
		// Two compactors (the fewest badger allows) instead of four: each
		// wakes up every 50 ms, which on an idle gateway is most of the
		// process's CPU.
		WithNumCompactors(2).
		// Values from 64 KiB up (job blob parts) go to the value log, not
		// the LSM tree, which would otherwise rewrite them in every
		// compaction: when cache chunks were values, a 100 KB miss added
		// 0.76 ms at p50 with badger's 1 MiB threshold, 0.33 ms with this.
		// Cache chunks below it stay values (fileChunkMin).
		WithValueThreshold(64 << 10).
		WithNumVersionsToKeep(1)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{db: db, dir: dir, logger: logger}
	if err := s.openModules(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return s, nil
}

// update runs fn in a read-write transaction and syncs the commit to
// disk before it returns: for records that must survive a power cut.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	if err := s.write(fn); err != nil {
		return err
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// ErrClosed reports that the store has been closed.
var ErrClosed = errors.New("store closed")

// Check returns nil when the store is open and answers reads, and
// otherwise why not (ErrClosed once Close has run), for readiness probes.
// It is cheap: an empty read transaction.
func (s *Store) Check() error {
	if s.db.IsClosed() {
		return ErrClosed
	}
	if err := s.db.View(func(*badger.Txn) error { return nil }); err != nil {
		if errors.Is(err, badger.ErrDBClosed) {
			return ErrClosed
		}
		return fmt.Errorf("store %s: %w", s.dir, err)
	}
	return nil
}

// Close flushes and closes the database. It must be the last thing an agent
// closes, after everything that writes to the store has stopped.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// PutApp records app as installed together with its module bytes: the
// module file is durable before the app record is committed, so after a
// crash the store holds either the previous release or this one, never a
// manifest without its module. Module bytes are shared by digest, and
// those no app refers to any more are deleted. An app without a module (an
// origin app) has an empty digest and no wasm bytes.
func (s *Store) PutApp(app App, wasm []byte) error {
	switch {
	case app.Name == "":
		return fmt.Errorf("put app %q: name is required", app.Name)
	case app.Digest == "" && len(wasm) > 0:
		return fmt.Errorf("put app %s: %d module bytes without a digest", app.Name, len(wasm))
	}
	rec, err := json.Marshal(app)
	if err != nil {
		return fmt.Errorf("put app %s: %w", app.Name, err)
	}
	s.apps.Lock()
	defer s.apps.Unlock()
	if app.Digest != "" {
		if err := s.writeModule(app.Digest, wasm); err != nil {
			return fmt.Errorf("put app %s@%d: %w", app.Name, app.Sequence, err)
		}
	}
	var unused string
	err = s.update(func(txn *badger.Txn) error {
		prev, err := getApp(txn, app.Name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := txn.Set([]byte(appPrefix+app.Name), rec); err != nil {
			return err
		}
		if prev.Digest == "" || prev.Digest == app.Digest {
			return nil
		}
		unused, err = unreferenced(txn, prev.Digest)
		return err
	})
	if err != nil {
		return fmt.Errorf("put app %s@%d: %w", app.Name, app.Sequence, err)
	}
	s.removeUnused(unused)
	return nil
}

// removeUnused removes the module file of digest after the commit that
// stopped using it; "" removes nothing. A failure only leaves a file that
// the next Open removes, so it is logged, not returned.
func (s *Store) removeUnused(digest string) {
	if digest == "" {
		return
	}
	if err := s.removeModule(digest); err != nil {
		s.logger.Warn("unused module stays until the next start", "digest", digest, "err", err)
	}
}

// DeleteApp removes app and, when no other app uses them, its module bytes.
// Deleting an absent app is not an error.
func (s *Store) DeleteApp(name string) error {
	s.apps.Lock()
	defer s.apps.Unlock()
	var unused string
	err := s.update(func(txn *badger.Txn) error {
		prev, err := getApp(txn, name)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := txn.Delete([]byte(appPrefix + name)); err != nil {
			return err
		}
		if prev.Digest == "" {
			return nil
		}
		unused, err = unreferenced(txn, prev.Digest)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete app %s: %w", name, err)
	}
	s.removeUnused(unused)
	return nil
}

// App returns the installed record of name, or an error wrapping ErrNotFound.
func (s *Store) App(name string) (App, error) {
	var app App
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		app, err = getApp(txn, name)
		return err
	})
	if err != nil {
		return App{}, fmt.Errorf("app %s: %w", name, err)
	}
	return app, nil
}

// Apps returns every installed app, ordered by name.
func (s *Store) Apps() ([]App, error) {
	var apps []App
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(appPrefix), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			name := string(it.Item().Key()[len(appPrefix):])
			var app App
			if err := it.Item().Value(func(v []byte) error {
				var err error
				app, err = decodeApp(name, v)
				return err
			}); err != nil {
				// One damaged record must not take every app down: the
				// others still load, and the hub sends this one again.
				s.logger.Warn("skipping unreadable app record", "app", name, "err", err)
				continue
			}
			apps = append(apps, app)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	return apps, nil
}

// Wasm returns the module bytes stored under digest, or an error wrapping
// ErrNotFound.
func (s *Store) Wasm(digest string) ([]byte, error) {
	v, err := s.readModule(digest)
	if err != nil {
		return nil, fmt.Errorf("wasm %s: %w", digest, err)
	}
	return v, nil
}

// get returns a copy of the value under key, or ErrNotFound.
func (s *Store) get(key []byte) ([]byte, error) {
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	return v, err
}

func getApp(txn *badger.Txn, name string) (App, error) {
	item, err := txn.Get([]byte(appPrefix + name))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return App{}, ErrNotFound
	}
	if err != nil {
		return App{}, err
	}
	var app App
	err = item.Value(func(v []byte) error {
		app, err = decodeApp(name, v)
		return err
	})
	return app, err
}

// decodeApp decodes the record stored under name, and checks what the
// store relies on: it names that app, and its digest (when it has one) can
// name a module file.
func decodeApp(name string, v []byte) (App, error) {
	var app App
	if err := json.Unmarshal(v, &app); err != nil {
		return App{}, fmt.Errorf("decode app %s: %w", name, err)
	}
	if app.Name != name {
		return App{}, fmt.Errorf("decode app %s: record names app %q", name, app.Name)
	}
	if app.Digest != "" && !validDigest(app.Digest) {
		return App{}, fmt.Errorf("decode app %s: module digest %q: want letters, digits and \":-_.\"", name, app.Digest)
	}
	return app, nil
}

// unreferenced returns digest if no app record in txn (which already holds
// this transaction's changes) refers to it any more, or "" if one does.
func unreferenced(txn *badger.Txn, digest string) (string, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(appPrefix), PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var app App
		if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &app) }); err != nil {
			continue // unreadable: Apps skips it too
		}
		if app.Digest == digest {
			return "", nil
		}
	}
	return digest, nil
}

// badgerLogger adapts badger's printf-style logger to slog. Badger logs
// routine compaction news at Info; those become Debug here.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(trim(f, a)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(trim(f, a)) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug(trim(f, a)) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Debug(trim(f, a)) }

func trim(f string, a []any) string { return strings.TrimSpace(fmt.Sprintf(f, a...)) }
