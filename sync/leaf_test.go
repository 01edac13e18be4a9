package sync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
		obs, err := lc.modules(ctx)
		if err != nil {
			return nil, err
		}
		r, err := obs.Get(ctx, "sha256:m")
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r)
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
