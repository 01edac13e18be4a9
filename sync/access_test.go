package sync

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestAgentPermissions runs an authenticating hub: an agent's leaf node
// reads releases and modules and writes heartbeats, but cannot publish a
// release, a module, a trust list or a purge; without the password it
// does not connect at all.
func TestAgentPermissions(t *testing.T) {
	ctx := context.Background()
	hub, err := StartHub(HubConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", LeafListen: "127.0.0.1:0", Domain: HubDomain,
		AgentPassword: "agent-secret", PublisherPassword: "pub-secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Shutdown()
	if _, err := Connect(ConnConfig{URL: hub.ClientURL()}); err == nil {
		t.Fatal("a publisher connected without the password")
	}
	pub, err := Connect(ConnConfig{URL: strings.Replace(hub.ClientURL(), "nats://", "nats://publisher:pub-secret@", 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.EnsureBuckets(ctx, 1); err != nil {
		t.Fatal(err)
	}
	module := bytes.Repeat([]byte("m"), 1000)
	if err := pub.PutArtifact(ctx, "sha256:m", bytes.NewReader(module), int64(len(module)), nil); err != nil {
		t.Fatal(err)
	}
	if err := pub.PutRelease(ctx, "app", []byte("good"), 0); err != nil {
		t.Fatal(err)
	}

	leafURL := strings.Replace(hub.LeafURL(), "nats-leaf://", "nats-leaf://agent:agent-secret@", 1)
	lc := agentLeaf(t, &Upstream{URL: leafURL}, "good")
	if err := lc.PublishHeartbeat(ctx, Heartbeat{Agent: "a1", Site: "s"}); err != nil {
		t.Fatalf("heartbeat from an agent: %v", err)
	}

	// An agent keeps its site's jobs on the hub's work queue and removes
	// them, without the right to delete messages.
	seq, err := lc.QueueJob(ctx, QueuedJob{ID: "j1", Site: "s", Owner: "a1", App: "kv", Deadline: time.Now().Add(time.Hour), Runtime: time.Minute})
	if err != nil {
		t.Fatalf("queue a job from an agent: %v", err)
	}
	n := 0
	if err := lc.QueuedJobs(ctx, "s", func(uint64, time.Time, QueuedJob) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("list queued jobs from an agent: %d, %v", n, err)
	}
	if err := lc.DoneJob(ctx, "s", "j1", seq); err != nil {
		t.Fatalf("remove a job from an agent: %v", err)
	}
	n = 0
	if err := lc.QueuedJobs(ctx, "s", func(uint64, time.Time, QueuedJob) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("queued jobs after removal: %d, %v", n, err)
	}

	// Every write an agent might attempt against the hub's buckets fails.
	hubJS, err := jetstream.NewWithDomain(lc.nc, HubDomain)
	if err != nil {
		t.Fatal(err)
	}
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, time.Second) }
	c1, cancel := short()
	defer cancel()
	if kv, err := hubJS.KeyValue(c1, AppsBucket); err == nil {
		c2, cancel := short()
		defer cancel()
		if _, err := kv.Put(c2, "app", []byte("evil")); err == nil {
			t.Error("an agent published a release")
		}
	}
	c3, cancel := short()
	defer cancel()
	if _, err := hubJS.CreateOrUpdateKeyValue(c3, jetstream.KeyValueConfig{Bucket: AppsBucket, History: 1}); err == nil {
		t.Error("an agent reconfigured the releases bucket")
	}
	c4, cancel := short()
	defer cancel()
	if err := hubJS.DeleteKeyValue(c4, TrustBucket); err == nil {
		t.Error("an agent deleted the trust bucket")
	}
	if err := lc.nc.Publish(PurgeSubject, []byte(`{"id":"x","tags":["all"]}`)); err == nil {
		lc.nc.Flush()
	}
	env, _, err := pub.Release(ctx, "app")
	if err != nil || string(env) != "good" {
		t.Fatalf("release on the hub after the attempts: %q, %v", env, err)
	}

	neverLinks(t, &Upstream{URL: hub.LeafURL()}, "a leaf node without the password")
}

// agentLeaf starts an agent's leaf node of the hub at up with its mirrors,
// and waits until its release mirror holds app's release want.
func agentLeaf(t *testing.T, up *Upstream, want string) *Client {
	t.Helper()
	ctx := context.Background()
	leaf, err := StartHub(HubConfig{Name: "leaf", Dir: t.TempDir(), Listen: "-", Domain: "leaf", Upstream: up})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(leaf.Shutdown)
	lc, err := Connect(ConnConfig{Server: leaf, FleetDomain: HubDomain})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lc.Close)
	waitUntil(t, "leaf link", leaf.LeafConnected)
	if err := lc.EnsureMirrors(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the release in the leaf's mirror", func() bool {
		env, _, err := lc.Release(ctx, "app")
		return err == nil && string(env) == want
	})
	return lc
}

// neverLinks starts a leaf node of the hub at up and checks that it does
// not link within a second of attempts (a leaf retries every second).
func neverLinks(t *testing.T, up *Upstream, what string) {
	t.Helper()
	bad, err := StartHub(HubConfig{Name: "bad", Dir: t.TempDir(), Listen: "-", Domain: "bad", Upstream: up})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Shutdown()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if bad.LeafConnected() {
			t.Fatal(what + " linked")
		}
	}
}
