package sync

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tern-edge/tern/internal/testfs"
)

// TestHubHealsAfterDiskFull fills the disk under a hub while a module is
// written to it, bypassing the upload's check: JetStream fails the write
// and stays stuck on it. Uploads are refused with an error that names the
// disk, and once space is back the hub takes them again without a
// restart, with what it stored before intact.
func TestHubHealsAfterDiskFull(t *testing.T) {
	dir := testfs.Small(t, 24<<20)
	hub, err := StartHub(HubConfig{Dir: filepath.Join(dir, "hub"), Listen: "127.0.0.1:0", MinFree: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Shutdown)
	c, err := Connect(ConnConfig{URL: hub.ClientURL(), Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	if err := c.EnsureBuckets(ctx, 1); err != nil {
		t.Fatal(err)
	}
	before := bytes.Repeat([]byte("before"), 50_000)
	if err := c.PutArtifact(ctx, "before", bytes.NewReader(before), int64(len(before)), nil); err != nil {
		t.Fatal(err)
	}

	// Filled up meanwhile: a raw put, as the disk filled by something
	// else after an upload's check, fails in JetStream.
	filler := testfs.Fill(t, dir, 1<<20)
	big := bytes.Repeat([]byte{7}, 3<<20)
	obs, err := c.js.ObjectStore(ctx, ArtifactsBucket)
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = obs.Put(pctx, jetstream.ObjectMeta{Name: "big"}, bytes.NewReader(big))
	cancel()
	if err == nil {
		t.Fatal("a 3 MiB put into 1 MiB of space worked")
	}

	// Refused, and the error says where and how much.
	err = c.PutArtifact(ctx, "small", bytes.NewReader([]byte("x")), 1, nil)
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), filepath.Join(dir, "hub")) || !strings.Contains(err.Error(), "free") {
		t.Fatalf("upload on a full disk: %v, want ErrDiskFull naming %s", err, dir)
	}

	// Space back: the hub heals by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	mod := bytes.Repeat([]byte("after"), 200_000)
	deadline := time.Now().Add(30 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.PutArtifact(actx, "after", bytes.NewReader(mod), int64(len(mod)), nil)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upload 30s after space came back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for name, want := range map[string][]byte{"before": before, "after": mod} {
		got, err := obs.GetBytes(ctx, name)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("object %s after healing: %d bytes, %v; want %d bytes", name, len(got), err, len(want))
		}
	}
	if d, known, err := c.HubDisk(ctx); err != nil || !known || d.WriteError != "" {
		t.Errorf("hub disk after healing: %+v, %v, %v", d, known, err)
	}
}
