package store

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestJobsSurviveReopen writes a job in two steps (accepted with its
// request, then done with its result), reopens the store, and finds both
// blobs and the latest record; deleting removes every part.
func TestJobsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	body := bytes.Repeat([]byte("x"), 3<<20) // above badger's value threshold
	if err := s.PutJob("j1", []byte(`{"state":"scheduled"}`), map[string][]byte{"request": body}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutJob("j1", []byte(`{"state":"done"}`), map[string][]byte{"result": []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutJob("j2", []byte(`{"state":"scheduled"}`), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	got := map[string]string{}
	if err := s.Jobs(func(id string, rec []byte) error { got[id] = string(rec); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["j1"] != `{"state":"done"}` || got["j2"] != `{"state":"scheduled"}` {
		t.Fatalf("jobs after reopen = %v", got)
	}
	if b, err := s.JobBlob("j1", "request"); err != nil || !bytes.Equal(b, body) {
		t.Fatalf("request blob: %d bytes, %v", len(b), err)
	}
	if b, err := s.JobBlob("j1", "result"); err != nil || string(b) != "ok" {
		t.Fatalf("result blob = %q, %v", b, err)
	}
	if err := s.DeleteJob("j1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.JobBlob("j1", "request"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("blob after delete: %v", err)
	}
	n := 0
	_ = s.Jobs(func(string, []byte) error { n++; return nil })
	if n != 1 {
		t.Fatalf("%d jobs after delete, want 1", n)
	}
	if err := s.DeleteJob("never"); err != nil {
		t.Fatalf("delete absent job: %v", err)
	}
	if err := s.PutJob("a/b", nil, nil); err == nil {
		t.Fatal("id with a slash accepted")
	}
}

// TestJobMarks: a mark is written with its job in one transaction, or
// alone, survives a reopen, and is not listed as a job.
func TestJobMarks(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if _, err := s.JobMark("sched"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent mark: %v", err)
	}
	if err := s.PutJobMark("j1", []byte(`{}`), map[string][]byte{"request": []byte("r")}, "sched", []byte("t1")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutJobMark("", nil, nil, "sched", []byte("t2")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutJobMark("", nil, nil, "", []byte("x")); err == nil {
		t.Fatal("empty mark name accepted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	if b, err := s.JobMark("sched"); err != nil || string(b) != "t2" {
		t.Fatalf("mark after reopen: %q, %v", b, err)
	}
	var ids []string
	_ = s.Jobs(func(id string, _ []byte) error { ids = append(ids, id); return nil })
	if len(ids) != 1 || ids[0] != "j1" {
		t.Fatalf("jobs: %v", ids)
	}
	if b, err := s.JobBlob("j1", "request"); err != nil || string(b) != "r" {
		t.Fatalf("blob: %q, %v", b, err)
	}
}

// TestJobBlobsInParts stores a blob larger than a value-log file, which
// badger refuses as one value, replaces it with a shorter one (no part of
// the longer may remain), and reads a blob as earlier versions wrote it:
// one value under the blob's own key.
func TestJobBlobsInParts(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	big := make([]byte, MaxValueBytes+blobPart/2)
	for i := range big {
		big[i] = byte(i / blobPart)
	}
	if err := s.PutJob("j", []byte("r"), map[string][]byte{"result": big}); err != nil {
		t.Fatalf("blob of %d bytes: %v", len(big), err)
	}
	if b, err := s.JobBlob("j", "result"); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("big blob read back: %d bytes, %v", len(b), err)
	}
	if err := s.PutJob("j", []byte("r"), map[string][]byte{"result": []byte("short")}); err != nil {
		t.Fatal(err)
	}
	if b, err := s.JobBlob("j", "result"); err != nil || string(b) != "short" {
		t.Fatalf("replaced blob = %d bytes %.10q, %v", len(b), b, err)
	}
	if err := s.PutJob("j", []byte("r"), map[string][]byte{"empty": nil}); err != nil {
		t.Fatal(err)
	}
	if b, err := s.JobBlob("j", "empty"); err != nil || len(b) != 0 {
		t.Fatalf("empty blob = %q, %v", b, err)
	}

	if err := s.update(func(txn *badger.Txn) error { return txn.Set(jobBlobKey("old", "request"), []byte("whole")) }); err != nil {
		t.Fatal(err)
	}
	if b, err := s.JobBlob("old", "request"); err != nil || string(b) != "whole" {
		t.Fatalf("blob in the earlier layout = %q, %v", b, err)
	}
	if err := s.PutJob("j", nil, map[string][]byte{"a/b": nil}); err == nil {
		t.Error("blob name with a slash accepted")
	}
}
