package sync

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

// TestLeafMirrors runs a hub and a leaf node: the leaf's buckets mirror
// the hub's, and stay readable once the hub is gone.
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
	if err := lc.EnsureMirrors(ctx); err != nil {
		t.Fatal(err)
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

	readLocal := func() (string, []byte, error) {
		env, _, err := lc.Release(ctx, "app")
		if err != nil {
			return "", nil, err
		}
		obs, err := lc.js.ObjectStore(ctx, ArtifactsBucket)
		if err != nil {
			return "", nil, err
		}
		r, err := obs.Get(ctx, "sha256:m")
		if err != nil {
			return "", nil, err
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		return string(env), b, err
	}
	waitUntil(t, "mirrors to catch up", func() bool {
		env, b, err := readLocal()
		return err == nil && env == "release-1" && bytes.Equal(b, module)
	})

	hub.Shutdown()
	hubStopped = true
	env, b, err := readLocal()
	if err != nil || env != "release-1" || !bytes.Equal(b, module) {
		t.Fatalf("leaf without hub: %q, %d bytes, %v", env, len(b), err)
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
