package store

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func moduleFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, modulesDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestOpenMovesModulesOutOfBadger opens a store whose module bytes are
// badger values, as earlier versions kept them: they become files, the
// values go, and the apps load as before.
func TestOpenMovesModulesOutOfBadger(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	err := s.update(func(txn *badger.Txn) error {
		if err := txn.Set([]byte(appPrefix+"a"), []byte(`{"name":"a","sequence":3,"digest":"sha256:aa","envelope":"ZQ=="}`)); err != nil {
			return err
		}
		return txn.Set([]byte(wasmPrefix+"sha256:aa"), []byte("module a"))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openTest(t, dir)
	defer s.Close()
	if got := moduleFiles(t, dir); !slices.Equal(got, []string{"sha256_aa"}) {
		t.Errorf("module files = %q, want [sha256_aa]", got)
	}
	if w, err := s.Wasm("sha256:aa"); err != nil || string(w) != "module a" {
		t.Errorf("Wasm = %q, %v", w, err)
	}
	if _, err := s.get([]byte(wasmPrefix + "sha256:aa")); !errors.Is(err, ErrNotFound) {
		t.Errorf("badger value after the move: %v, want ErrNotFound", err)
	}
}

// TestOpenRemovesUnusedModuleFiles leaves what a crash can leave in the
// module directory: a half-written temporary file and the old module of an
// app whose new record was committed before the old file was removed.
func TestOpenRemovesUnusedModuleFiles(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.PutApp(App{Name: "a", Sequence: 1, Digest: "sha256:01", Envelope: []byte("e")}, []byte("w1")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, name := range []string{tmpPrefix + "123", "sha256_00"} {
		if err := os.WriteFile(filepath.Join(dir, modulesDir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = openTest(t, dir)
	defer s.Close()
	if got := moduleFiles(t, dir); !slices.Equal(got, []string{"sha256_01"}) {
		t.Errorf("module files = %q, want only the installed one", got)
	}
}

func TestPutAppRefusesDigestThatIsNoFileName(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	for _, d := range []string{"../x", "a/b", ".hidden", "sha256:ü"} {
		err := s.PutApp(App{Name: "a", Sequence: 1, Digest: d, Envelope: []byte("e")}, []byte("w"))
		if err == nil {
			t.Errorf("PutApp with digest %q succeeded", d)
		}
		if _, err := s.App("a"); !errors.Is(err, ErrNotFound) {
			t.Errorf("digest %q: app recorded after a refused module: %v", d, err)
		}
	}
}

// TestPutAppRewritesTruncatedModule replaces a module file of the wrong
// size, as a disk error could leave it, when the same digest is put again.
func TestPutAppRewritesTruncatedModule(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	defer s.Close()
	app := App{Name: "a", Sequence: 1, Digest: "sha256:02", Envelope: []byte("e")}
	if err := s.PutApp(app, []byte("module")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, modulesDir, "sha256_02"), []byte("mod"), 0o600); err != nil {
		t.Fatal(err)
	}
	app.Sequence = 2
	if err := s.PutApp(app, []byte("module")); err != nil {
		t.Fatal(err)
	}
	if w, err := s.Wasm("sha256:02"); err != nil || string(w) != "module" {
		t.Errorf("Wasm = %q, %v", w, err)
	}
}
