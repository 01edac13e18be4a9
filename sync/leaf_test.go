package sync

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tern-edge/tern/artifact"
)

// TestLeafMirrors runs a hub and a leaf node: the leaf's release bucket
// mirrors the hub's and stays readable once the hub is gone; modules come
// from the hub through the leaf link, on demand.
func TestLeafMirrors(t *testing.T) {
	ctx := context.Background()
	hub, err := StartHub(HubConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", LeafListen: "127.0.0.1:0", Domain: HubDomain})
	if err != nil {
		t.Fatal(err)
	}
	hubStopped := false
	defer func() {
		if !hubStopped {
			hub.Shutdown()
		}
	}()
	if hub.LeafURL() == "" {
		t.Fatal("hub has no leaf URL")
	}
	pub, err := Connect(ConnConfig{URL: hub.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.EnsureBuckets(ctx, 1); err != nil {
		t.Fatal(err)
	}

	leaf, err := StartHub(HubConfig{Name: "leaf1", Dir: t.TempDir(), Listen: "-", Domain: "leaf1", Upstream: &Upstream{URL: hub.LeafURL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer leaf.Shutdown()
	lc, err := Connect(ConnConfig{Server: leaf, FleetDomain: HubDomain})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	waitUntil(t, "leaf link", leaf.LeafConnected)

	// A leaf set up by an earlier version mirrored every module; ensuring
	// the mirrors removes that one.
	oldMirror := "OBJ_" + ArtifactsBucket
	if _, err := lc.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:   oldMirror,
		Mirror: &jetstream.StreamSource{Name: oldMirror, Domain: HubDomain},
	}); err != nil {
		t.Fatal(err)
	}
	if err := lc.EnsureMirrors(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.js.Stream(ctx, oldMirror); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("module mirror after EnsureMirrors: %v, want it removed", err)
	}

	module := bytes.Repeat([]byte("wasm"), 100_000)
	if err := pub.PutArtifact(ctx, "sha256:m", bytes.NewReader(module), int64(len(module)), nil); err != nil {
		t.Fatal(err)
	}
	if err := pub.PutRelease(ctx, "app", []byte("release-1"), 0); err != nil {
		t.Fatal(err)
	}
	// Heartbeats from the leaf land in the hub's fleet bucket.
	if err := lc.PublishHeartbeat(ctx, Heartbeat{Agent: "a1", Site: "s1"}); err != nil {
		t.Fatal(err)
	}
	fleet, err := pub.Fleet(ctx)
	if err != nil || len(fleet) != 1 || fleet[0].Agent != "a1" {
		t.Fatalf("fleet on hub = %+v, %v", fleet, err)
	}

	readModule := func() ([]byte, error) {
		ms, err := lc.modules(ctx)
		if err != nil {
			return nil, err
		}
		return fetch(ctx, &ms, artifact.Release{App: "app", Sequence: 1, Digest: "sha256:m", Size: int64(len(module))})
	}
	waitUntil(t, "the release mirror to catch up", func() bool {
		env, _, err := lc.Release(ctx, "app")
		return err == nil && string(env) == "release-1"
	})
	if b, err := readModule(); err != nil || !bytes.Equal(b, module) {
		t.Fatalf("module through the leaf: %d bytes, %v", len(b), err)
	}

	hub.Shutdown()
	hubStopped = true
	env, _, err := lc.Release(ctx, "app")
	if err != nil || string(env) != "release-1" {
		t.Fatalf("leaf without hub: release %q, %v", env, err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := lc.modules(short); err == nil {
		t.Fatal("module store reachable with the hub down")
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// Generous: a loaded CI machine compiles modules slowly under -race.
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFetch: a module comes back whole across chunks; a size other than
// the signed one is refused before any chunk is read; a missing object is
// a wait, not a refusal.
func TestFetch(t *testing.T) {
	ctx := context.Background()
	hub, err := StartHub(HubConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", Domain: HubDomain})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Shutdown()
	c, err := Connect(ConnConfig{Server: hub})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.EnsureBuckets(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Three and a bit chunks of the object store's 128 KiB, and another
	// object in between so chunk sequences are not contiguous.
	module := bytes.Repeat([]byte("0123456789abcdef"), 3*8192+5)
	if err := c.PutArtifact(ctx, "sha256:a", bytes.NewReader(module), int64(len(module)), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.PutArtifact(ctx, "sha256:b", bytes.NewReader([]byte("other")), 5, nil); err != nil {
		t.Fatal(err)
	}
	ms, err := c.modules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rel := artifact.Release{App: "app", Sequence: 1, Digest: "sha256:a", Size: int64(len(module))}
	if got, err := fetch(ctx, &ms, rel); err != nil || !bytes.Equal(got, module) {
		t.Fatalf("fetch = %d bytes, %v; want the %d bytes put", len(got), err, len(module))
	}
	short := rel
	short.Size--
	if _, err := fetch(ctx, &ms, short); !errors.Is(err, artifact.ErrSize) || errors.Is(err, errUnavailable) {
		t.Errorf("fetch with a smaller signed size = %v, want a size refusal", err)
	}
	missing := rel
	missing.Digest = "sha256:none"
	if _, err := fetch(ctx, &ms, missing); !errors.Is(err, errUnavailable) {
		t.Errorf("fetch of a missing object = %v, want unavailable", err)
	}
}
