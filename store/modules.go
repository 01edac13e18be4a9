package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// modulesDir is the directory, inside the store's, that holds module bytes
// as files named after their digests.
//
// Modules are files rather than badger values because a deploy writes one
// to every agent of the fleet at once: a badger value of 1 MiB is encoded
// into a growing buffer, copied into a memory-mapped value-log file and
// kept there until value-log GC, which cost an agent more CPU per install
// than receiving the module did (docs/FLEET.md). A file is one write.
const modulesDir = "modules"

// tmpPrefix starts the names of module files being written; Open removes
// those a crash left behind.
const tmpPrefix = ".tmp-"

// modulePath returns the file that holds the module with digest. Digests
// name files, so they may hold only letters, digits and ":-_." and may not
// start with a dot (artifact digests are "sha256:<hex>").
func (s *Store) modulePath(digest string) (string, error) {
	if !validDigest(digest) {
		return "", fmt.Errorf("module digest %q: want letters, digits and \":-_.\"", digest)
	}
	// ':' is not allowed in file names everywhere.
	return filepath.Join(s.dir, modulesDir, strings.ReplaceAll(digest, ":", "_")), nil
}

// validDigest reports whether digest can name a module file.
func validDigest(digest string) bool {
	return digest != "" && digest[0] != '.' && strings.IndexFunc(digest, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(":-_.", r))
	}) < 0
}

// writeModule stores wasm under digest unless a file of that size is
// already there, and makes it durable before it returns, so that a synced
// app record never refers to a module a power cut could lose. The bytes
// are written to a temporary file and renamed into place, so a reader
// never sees part of a module.
func (s *Store) writeModule(digest string, wasm []byte) error {
	path, err := s.modulePath(digest)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() == int64(len(wasm)) {
		// Content-addressed: the same digest is the same bytes, and
		// loading checks them against the digest anyway.
		return nil
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return fmt.Errorf("write module %s: %w", digest, err)
	}
	_, err = f.Write(wasm)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write module %s: %w", digest, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write module %s: %w", digest, err)
	}
	return nil
}

// readModule returns the module bytes stored under digest, or ErrNotFound.
func (s *Store) readModule(digest string) ([]byte, error) {
	path, err := s.modulePath(digest)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	return b, err
}

// removeModule deletes the module file of digest; an absent one is fine.
func (s *Store) removeModule(digest string) error {
	path, err := s.modulePath(digest)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove module %s: %w", digest, err)
	}
	return nil
}

// openModules prepares the module directory when the store opens: it
// moves modules that earlier versions kept in badger (under wasmPrefix)
// into files, and removes files no app record refers to, which a crash
// between an app's commit and the removal of its old module leaves, as
// well as half-written temporary files.
func (s *Store) openModules() error {
	dir := filepath.Join(s.dir, modulesDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("open modules: %w", err)
	}
	if err := s.migrateModules(); err != nil {
		return fmt.Errorf("open modules: %w", err)
	}
	apps, err := s.Apps()
	if err != nil {
		return fmt.Errorf("open modules: %w", err)
	}
	keep := map[string]bool{}
	for _, app := range apps {
		if app.Digest != "" {
			path, err := s.modulePath(app.Digest)
			if err != nil {
				return fmt.Errorf("open modules: app %s: %w", app.Name, err)
			}
			keep[filepath.Base(path)] = true
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("open modules: %w", err)
	}
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("open modules: remove unused %s: %w", e.Name(), err)
		}
		s.logger.Debug("removed unused module file", "file", e.Name())
	}
	return nil
}

// migrateModules moves module values out of badger into files. Each file
// is durable before its key is deleted, so a crash midway leaves every
// module in one place or both.
func (s *Store) migrateModules() error {
	var digests []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(wasmPrefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			digests = append(digests, strings.TrimPrefix(string(it.Item().Key()), wasmPrefix))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range digests {
		key := []byte(wasmPrefix + d)
		wasm, err := s.get(key)
		if err != nil {
			return fmt.Errorf("migrate module %s: %w", d, err)
		}
		if err := s.writeModule(d, wasm); err != nil {
			return err
		}
		if err := s.update(func(txn *badger.Txn) error { return txn.Delete(key) }); err != nil {
			return fmt.Errorf("migrate module %s: %w", d, err)
		}
		s.logger.Info("moved module out of the database into a file", "digest", d)
	}
	return nil
}

// syncDir makes the latest renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
