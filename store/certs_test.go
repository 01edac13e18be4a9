package store

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func TestCertStorageFiles(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := context.Background()
	cs := s.CertStorage(CertStorageOptions{})
	put := map[string]string{
		"certificates/acme/a.example/a.example.crt": "crt",
		"certificates/acme/a.example/a.example.key": "key",
		"certificates/acme/b.example/b.example.crt": "crt b",
		"acme/acct/users/x.json":                    "acct",
	}
	for k, v := range put {
		if err := cs.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := cs.Load(ctx, "certificates/acme/a.example/a.example.key"); err != nil || string(got) != "key" {
		t.Fatalf("Load = %q, %v", got, err)
	}
	if _, err := cs.Load(ctx, "certificates/acme"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a directory: %v, want fs.ErrNotExist", err)
	}
	if _, err := cs.Load(ctx, "nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of an absent key: %v, want fs.ErrNotExist", err)
	}

	info, err := cs.Stat(ctx, "certificates/acme/b.example/b.example.crt")
	if err != nil || !info.IsTerminal || info.Size != 5 || time.Since(info.Modified) > time.Minute {
		t.Errorf("Stat file = %+v, %v", info, err)
	}
	if info, err := cs.Stat(ctx, "certificates/acme"); err != nil || info.IsTerminal {
		t.Errorf("Stat dir = %+v, %v", info, err)
	}
	if _, err := cs.Stat(ctx, "certificates/acm"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a partial component: %v, want fs.ErrNotExist", err)
	}
	if !cs.Exists(ctx, "acme") || cs.Exists(ctx, "ac") || !cs.Exists(ctx, "acme/acct/users/x.json") {
		t.Error("Exists disagrees with what was stored")
	}

	list := func(dir string, rec bool) []string {
		t.Helper()
		got, err := cs.List(ctx, dir, rec)
		if err != nil {
			t.Fatalf("List(%q, %v): %v", dir, rec, err)
		}
		slices.Sort(got)
		return got
	}
	if got, want := list("certificates/acme", false), []string{"certificates/acme/a.example", "certificates/acme/b.example"}; !slices.Equal(got, want) {
		t.Errorf("List = %q, want %q", got, want)
	}
	if got, want := list("certificates", true), []string{
		"certificates/acme", "certificates/acme/a.example", "certificates/acme/a.example/a.example.crt",
		"certificates/acme/a.example/a.example.key", "certificates/acme/b.example", "certificates/acme/b.example/b.example.crt",
	}; !slices.Equal(got, want) {
		t.Errorf("List recursive = %q, want %q", got, want)
	}
	if _, err := cs.List(ctx, "missing", false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("List of an absent dir: %v, want fs.ErrNotExist", err)
	}

	// Deleting a directory deletes below it and nothing beside it.
	if err := cs.Delete(ctx, "certificates/acme/a.example"); err != nil {
		t.Fatal(err)
	}
	if cs.Exists(ctx, "certificates/acme/a.example") || !cs.Exists(ctx, "certificates/acme/b.example/b.example.crt") {
		t.Error("Delete of a directory removed the wrong keys")
	}
	if err := cs.Delete(ctx, "certificates/acme/a.example"); err != nil {
		t.Errorf("Delete of an absent key: %v", err)
	}

	// Certificates survive a restart: that is the point.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	if got, err := s.CertStorage(CertStorageOptions{}).Load(ctx, "acme/acct/users/x.json"); err != nil || string(got) != "acct" {
		t.Fatalf("after reopen: Load = %q, %v", got, err)
	}
	// Certificate keys live apart from apps and kv data.
	if apps, err := s.Apps(); err != nil || len(apps) != 0 {
		t.Errorf("Apps = %v, %v", apps, err)
	}
}

func TestCertLockExcludes(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	// Several holders, as several certmagic configs in one agent are.
	holders := []*CertStorage{
		s.CertStorage(CertStorageOptions{LockPoll: time.Millisecond}),
		s.CertStorage(CertStorageOptions{LockPoll: time.Millisecond}),
		s.CertStorage(CertStorageOptions{LockPoll: time.Millisecond}),
	}
	var inside, total atomic.Int32
	done := make(chan error)
	for i := range 12 {
		go func() {
			cs := holders[i%len(holders)]
			for range 5 {
				if err := cs.Lock(ctx, "issue_cert_a.example"); err != nil {
					done <- err
					return
				}
				if n := inside.Add(1); n != 1 {
					done <- errors.New("two holders inside the lock")
					return
				}
				total.Add(1)
				inside.Add(-1)
				if err := cs.Unlock(ctx, "issue_cert_a.example"); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 12 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if total.Load() != 60 {
		t.Errorf("critical sections = %d, want 60", total.Load())
	}
}

func TestCertLockWaitsAndHonoursContext(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	a := s.CertStorage(CertStorageOptions{LockPoll: time.Millisecond})
	b := s.CertStorage(CertStorageOptions{LockPoll: time.Millisecond})
	ctx := context.Background()
	if err := a.Lock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "n"); ok || err != nil {
		t.Fatalf("TryLock of a held lock = %v, %v", ok, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.Lock(cctx, "n"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a held lock with a deadline: %v", err)
	}
	if err := b.Unlock(ctx, "n"); !errors.Is(err, ErrLockHeld) {
		t.Errorf("Unlock by a non-holder: %v, want ErrLockHeld", err)
	}
	if err := b.RenewLockLease(ctx, "n", time.Hour); !errors.Is(err, ErrLockHeld) {
		t.Errorf("RenewLockLease by a non-holder: %v, want ErrLockHeld", err)
	}
	if err := a.RenewLockLease(ctx, "n", time.Hour); err != nil {
		t.Errorf("RenewLockLease by the holder: %v", err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "n") }()
	if err := a.Unlock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lock did not return after Unlock")
	}
	if err := b.Unlock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
}

// writeLock plants a lock record as another holder would have left it.
func writeLock(t *testing.T, s *Store, name string, l certLock) {
	t.Helper()
	b, _ := json.Marshal(l)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(lockPrefix+lockDir+name), b) }); err != nil {
		t.Fatal(err)
	}
}

func TestCertLockStale(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	clock := func() time.Time { return now }
	cs := s.CertStorage(CertStorageOptions{Now: clock, LockLease: time.Minute})
	tests := []struct {
		name string
		lock certLock
		want bool
	}{
		{"held by a live holder of this process", certLock{Owner: "other", Incarnation: incarnation, Expires: now.Add(time.Minute)}, false},
		{"expired: its holder stopped refreshing", certLock{Owner: "other", Incarnation: incarnation, Expires: now.Add(-time.Second)}, true},
		{"left by a process that exited", certLock{Owner: "other", Incarnation: "dead", Expires: now.Add(time.Hour)}, true},
		{"corrupt record", certLock{}, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "lock" + string(rune('a'+i))
			writeLock(t, s, name, tt.lock)
			got, err := cs.TryLock(ctx, name)
			if err != nil || got != tt.want {
				t.Fatalf("TryLock = %v, %v; want %v", got, err, tt.want)
			}
			if got {
				if err := cs.Unlock(ctx, name); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func readLock(t *testing.T, s *Store, name string) (certLock, bool) {
	t.Helper()
	var l certLock
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(lockPrefix + lockDir + name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return item.Value(func(b []byte) error { return json.Unmarshal(b, &l) })
	})
	if err != nil {
		t.Fatal(err)
	}
	return l, found
}

func TestCertLockRefreshedWhileHeld(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	a := s.CertStorage(CertStorageOptions{LockLease: 300 * time.Millisecond})
	if err := a.Lock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	first, ok := readLock(t, s, "n")
	if !ok {
		t.Fatal("no lock record after Lock")
	}
	// The holder pushes the expiry forward while it holds the lock.
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, _ := readLock(t, s, "n")
		if l.Expires.After(first.Expires) && l.Owner == first.Owner {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease not refreshed: still %v", l.Expires)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.Unlock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if _, ok := readLock(t, s, "n"); ok {
		t.Fatal("lock record left after Unlock")
	}
	b := s.CertStorage(CertStorageOptions{})
	if ok, err := b.TryLock(ctx, "n"); !ok || err != nil {
		t.Fatalf("TryLock after Unlock = %v, %v", ok, err)
	}
	b.Unlock(ctx, "n")
}
