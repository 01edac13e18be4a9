package sync

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func startTestHub(t *testing.T) *Client {
	t.Helper()
	hub, err := StartHub(HubConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Shutdown)
	c, err := Connect(ConnConfig{URL: hub.ClientURL(), Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.EnsureBuckets(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReleasesCompareAndSet(t *testing.T) {
	c := startTestHub(t)
	ctx := context.Background()
	if _, _, err := c.Release(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("release of absent app: %v, want ErrNotFound", err)
	}
	if err := c.PutRelease(ctx, "a", []byte("v1"), 0); err != nil {
		t.Fatal(err)
	}
	// A second "first" deploy lost the race.
	if err := c.PutRelease(ctx, "a", []byte("v1b"), 0); !errors.Is(err, ErrRaced) {
		t.Fatalf("create over existing: %v, want ErrRaced", err)
	}
	env, rev, err := c.Release(ctx, "a")
	if err != nil || string(env) != "v1" {
		t.Fatalf("release a = %q, %v", env, err)
	}
	if err := c.PutRelease(ctx, "a", []byte("v2"), rev); err != nil {
		t.Fatal(err)
	}
	if err := c.PutRelease(ctx, "a", []byte("v2b"), rev); !errors.Is(err, ErrRaced) {
		t.Fatalf("update from a stale revision: %v, want ErrRaced", err)
	}
	if err := c.PutRelease(ctx, "b", []byte("b1"), 0); err != nil {
		t.Fatal(err)
	}
	entries, err := c.Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range entries {
		got[e.App] = string(e.Envelope)
	}
	if len(got) != 2 || got["a"] != "v2" || got["b"] != "b1" {
		t.Fatalf("releases = %v", got)
	}
}

func TestPutArtifactProgressAndDedup(t *testing.T) {
	c := startTestHub(t)
	ctx := context.Background()
	data := bytes.Repeat([]byte("x"), 3<<20)
	var last int64
	calls := 0
	if err := c.PutArtifact(ctx, "sha256:big", bytes.NewReader(data), int64(len(data)), func(n int64) { last = n; calls++ }); err != nil {
		t.Fatal(err)
	}
	if last != int64(len(data)) || calls < 2 {
		t.Fatalf("progress: last %d after %d calls, want %d in several", last, calls, len(data))
	}
	// The same object again is not uploaded twice.
	calls = 0
	if err := c.PutArtifact(ctx, "sha256:big", bytes.NewReader(nil), int64(len(data)), func(n int64) { last = n; calls++ }); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || last != int64(len(data)) {
		t.Fatalf("re-upload: %d progress calls, last %d", calls, last)
	}
}
