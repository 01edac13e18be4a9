package store

import (
	"errors"
	"testing"
)

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPutAppReplacesAndCollectsModules(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.PutApp(App{Name: "a", Sequence: 1, Digest: "d1", Envelope: []byte("e1")}, []byte("w1")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutApp(App{Name: "b", Sequence: 1, Digest: "d1", Envelope: []byte("eb")}, []byte("w1")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutApp(App{Name: "a", Sequence: 2, Digest: "d2", Envelope: []byte("e2")}, []byte("w2")); err != nil {
		t.Fatal(err)
	}
	// d1 is still used by b.
	if _, err := s.Wasm("d1"); err != nil {
		t.Fatalf("d1 collected while b uses it: %v", err)
	}
	if err := s.DeleteApp("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Wasm("d1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("d1 after last user deleted: got %v, want ErrNotFound", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Everything survives a reopen.
	s = openTest(t, dir)
	defer s.Close()
	apps, err := s.Apps()
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 1 || apps[0].Name != "a" || apps[0].Sequence != 2 || string(apps[0].Envelope) != "e2" {
		t.Fatalf("apps after reopen = %+v", apps)
	}
	w, err := s.Wasm("d2")
	if err != nil || string(w) != "w2" {
		t.Fatalf("wasm d2 = %q, %v", w, err)
	}
	if _, err := s.App("missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing app: got %v, want ErrNotFound", err)
	}
	if err := s.DeleteApp("missing"); err != nil {
		t.Fatalf("delete absent app: %v", err)
	}
}

func TestPutAppRejectsIncompleteRecord(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	if err := s.PutApp(App{Name: "a"}, []byte("w")); err == nil {
		t.Fatal("PutApp without digest succeeded")
	}
}

// TestPutAppWithoutModule stores an origin app, which has no module, and
// then a wasm release of the same app and back: the module record comes
// and goes with the release that refers to it.
func TestPutAppWithoutModule(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	if err := s.PutApp(App{Name: "a", Sequence: 1, Envelope: []byte("e1")}, nil); err != nil {
		t.Fatalf("PutApp without a module: %v", err)
	}
	if got, err := s.App("a"); err != nil || got.Digest != "" || got.Sequence != 1 {
		t.Fatalf("App = %+v, %v", got, err)
	}
	if err := s.PutApp(App{Name: "a", Sequence: 2, Digest: "d2", Envelope: []byte("e2")}, []byte("w2")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutApp(App{Name: "a", Sequence: 3, Envelope: []byte("e3")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Wasm("d2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("module of the replaced release: %v, want ErrNotFound", err)
	}
	if err := s.DeleteApp("a"); err != nil {
		t.Fatalf("DeleteApp of an app without a module: %v", err)
	}
	if err := s.PutApp(App{Name: ""}, nil); err == nil || err.Error() != `put app "": name is required` {
		t.Errorf("PutApp without a name = %v", err)
	}
}
