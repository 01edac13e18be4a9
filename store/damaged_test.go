package store

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/tern-edge/tern/cache"
)

// TestOpenSkipsDamagedRecords writes the records a damaged disk can leave
// (truncated JSON, a record naming another app, a digest that cannot
// name a file, a cache record cut short) beside good ones: the store opens,
// lists the good ones, logs each damaged one, and drops the damaged cache
// record.
func TestOpenSkipsDamagedRecords(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.PutApp(App{Name: "good", Sequence: 1, Digest: "sha256:aa", Envelope: []byte("e")}, []byte("module")); err != nil {
		t.Fatal(err)
	}
	cs := s.Cache()
	if err := cs.Commit(cache.Entry{Key: "example.com/good", Body: "b1", Size: 1, Meta: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	err := s.update(func(txn *badger.Txn) error {
		for k, v := range map[string]string{
			appPrefix + "cut":         `{"name":"cut","sequ`,
			appPrefix + "other":       `{"name":"good","sequence":9,"digest":"sha256:aa"}`,
			appPrefix + "traversal":   `{"name":"traversal","sequence":1,"digest":"../../etc/passwd"}`,
			cacheMetaPrefix + "cut":   "\xff\xff",
			cacheMetaPrefix + "short": "\x01\x09b1",
		} {
			if err := txn.Set([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	var logs bytes.Buffer
	s, err = Open(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("open over damaged records: %v", err)
	}
	defer s.Close()
	apps, err := s.Apps()
	if err != nil || len(apps) != 1 || apps[0].Name != "good" {
		t.Fatalf("Apps = %+v, %v; want only good", apps, err)
	}
	if w, err := s.Wasm("sha256:aa"); err != nil || string(w) != "module" {
		t.Fatalf("good app's module = %q, %v", w, err)
	}
	cs = s.Cache()
	var keys []string
	if err := cs.Walk(func(e cache.Entry) error { keys = append(keys, e.Key); return nil }); err != nil {
		t.Fatalf("walk over damaged records: %v", err)
	}
	if !slices.Equal(keys, []string{"example.com/good"}) {
		t.Fatalf("walked %q, want only the good entry", keys)
	}
	for _, want := range []string{"app=cut", "app=other", "app=traversal", "key=cut", "key=short"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no log line for damaged record %s:\n%s", want, &logs)
		}
	}
	// Damaged cache records are gone; the next walk logs nothing new.
	logs.Reset()
	if err := cs.Walk(func(cache.Entry) error { return nil }); err != nil || strings.Contains(logs.String(), "cache record") {
		t.Fatalf("second walk: %v\n%s", err, &logs)
	}
}

// FuzzDecodeEntry checks that any bytes decode to an entry or an error,
// never a panic, and that a decoded entry encodes back to itself.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(cache.Entry{Key: "k", Body: "body", Size: 12345, Meta: []byte(`{"s":200}`)}))
	f.Add([]byte("\x01\x09b1"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, v []byte) {
		e, err := decodeEntry("k", v)
		if err != nil {
			return
		}
		if e.Size < 0 {
			t.Fatalf("negative size %d from %q", e.Size, v)
		}
		// Varints may come overlong, so compare entries, not bytes.
		back, err := decodeEntry("k", encodeEntry(e))
		if err != nil || back.Size != e.Size || back.Body != e.Body || !bytes.Equal(back.Meta, e.Meta) {
			t.Fatalf("%q decodes to %+v, which re-encodes to %+v, %v", v, e, back, err)
		}
	})
}

// FuzzDecodeApp checks that any app record decodes to an app that names
// itself and whose module file lies in the module directory, or to an
// error.
func FuzzDecodeApp(f *testing.F) {
	f.Add("a", []byte(`{"name":"a","sequence":3,"digest":"sha256:aa","envelope":"ZQ=="}`))
	f.Add("a", []byte(`{"name":"a","digest":"../x"}`))
	f.Add("a", []byte(`{"name":"a","envelope":"!!"}`))
	s := &Store{dir: "/data"}
	f.Fuzz(func(t *testing.T, name string, v []byte) {
		app, err := decodeApp(name, v)
		if err != nil {
			return
		}
		if app.Name != name {
			t.Fatalf("record under %q names %q", name, app.Name)
		}
		if app.Digest != "" {
			p, err := s.modulePath(app.Digest)
			if err != nil || !strings.HasPrefix(p, "/data/modules/") || strings.Contains(p[len("/data/modules/"):], "/") {
				t.Fatalf("digest %q gives module path %q, %v", app.Digest, p, err)
			}
		}
	})
}
