package sync_test

// The publisher's and the root's tools against a hub that someone else
// can write to: each test has an attacker write the hub's buckets with a
// plain NATS client, the publisher or root holder run the command, and an
// agent's watcher (the real verification pipeline) follow the hub.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"slices"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
	ternsync "github.com/tern-edge/tern/sync"
)

// fleet is a hub, a publisher's connection to it, an attacker's raw NATS
// connection and one agent's watcher.
type fleet struct {
	t        *testing.T
	hub      *ternsync.Hub
	pub      *ternsync.Client
	attacker jetstream.JetStream
	agent    *recorder
	watcher  *ternsync.Watcher
	trusted  atomic.Pointer[artifact.KeySet]
}

func newFleet(t *testing.T, trusted artifact.KeySet) *fleet {
	t.Helper()
	hub, err := ternsync.StartHub(ternsync.HubConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Shutdown)
	f := &fleet{t: t, hub: hub, agent: &recorder{installed: map[string]artifact.Release{}}}
	f.pub = connect(t, hub, "publisher")
	if err := f.pub.EnsureBuckets(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(hub.ClientURL(), nats.Name("attacker"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if f.attacker, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	f.trusted.Store(&trusted)
	w, err := ternsync.NewWatcher(ternsync.WatcherConfig{
		Client:    connect(t, hub, "agent"),
		Trusted:   func() (artifact.KeySet, error) { return *f.trusted.Load(), nil },
		Installer: f.agent,
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.watcher = w
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func connect(t *testing.T, hub *ternsync.Hub, name string) *ternsync.Client {
	t.Helper()
	c, err := ternsync.Connect(ternsync.ConnConfig{URL: hub.ClientURL(), Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// recorder is an agent's installer that keeps what it was given.
type recorder struct {
	mu        gosync.Mutex
	installed map[string]artifact.Release
	digests   []string // every module ever installed, in order
}

func (r *recorder) Installed(app string) (uint64, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rel := r.installed[app]
	return rel.Sequence, rel.Digest
}

func (r *recorder) Install(_ context.Context, rel artifact.Release, _, _ []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.installed[rel.App] = rel
	r.digests = append(r.digests, rel.Digest)
	return nil
}

func (r *recorder) ever(digest string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.digests {
		if d == digest {
			return true
		}
	}
	return false
}

// waitInstalled waits until the agent runs app at seq.
func (f *fleet) waitInstalled(app string, seq uint64) artifact.Release {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f.agent.mu.Lock()
		rel := f.agent.installed[app]
		f.agent.mu.Unlock()
		if rel.Sequence == seq {
			return rel
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.t.Fatalf("agent did not install %s@%d", app, seq)
	return artifact.Release{}
}

// settle deploys a marker app and waits for the agent to install it: the
// watcher handles the hub's changes in order, so by then it has seen
// everything written before.
func (f *fleet) settle(key ed25519.PrivateKey) {
	f.t.Helper()
	res, err := deploy.Push(context.Background(), manifest("marker", "1.0.0", "/marker"), module("marker"), deploy.Options{Client: f.pub, Key: key, Trusted: *f.trusted.Load()})
	if err != nil {
		f.t.Fatal(err)
	}
	f.waitInstalled("marker", res.Release.Sequence)
}

// forge has the attacker upload its module and write into the release
// bucket, under app, a release of it signed by a key nobody trusts.
func (f *fleet) forge(app string, seq uint64, wasm []byte, extraRoute string) (envelope []byte, digest string) {
	f.t.Helper()
	ctx := context.Background()
	obs, err := f.attacker.ObjectStore(ctx, ternsync.ArtifactsBucket)
	if err != nil {
		f.t.Fatal(err)
	}
	digest = artifact.Digest(wasm)
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: digest}, bytes.NewReader(wasm)); err != nil {
		f.t.Fatal(err)
	}
	m := manifest(app, "2.0.1", "/"+app, extraRoute)
	now := time.Now().UTC().Truncate(time.Second)
	env, err := artifact.Sign(artifact.Release{App: app, Sequence: seq, Digest: digest, Size: int64(len(wasm)),
		Issued: now, Expires: now.Add(time.Hour), Manifest: m}, mustKey(f.t))
	if err != nil {
		f.t.Fatal(err)
	}
	f.write(ternsync.AppsBucket, app, env)
	return env, digest
}

// write is the attacker putting value under key in bucket.
func (f *fleet) write(bucket, key string, value []byte) {
	f.t.Helper()
	kv, err := f.attacker.KeyValue(context.Background(), bucket)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), key, value); err != nil {
		f.t.Fatal(err)
	}
}

func manifest(app, version string, paths ...string) artifact.Manifest {
	m := artifact.Manifest{Name: app, Version: version, Wasm: app + ".wasm"}
	for _, p := range paths {
		m.Routes = append(m.Routes, artifact.Route{Path: p})
	}
	return m
}

// module is a tiny stand-in module, distinct per tag: the watcher checks
// the wasm header and the digest, not the code.
func module(tag string) []byte { return append([]byte("\x00asm\x01\x00\x00\x00"), tag...) }

func mustKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	k, err := artifact.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// TestRollbackSkipsUnverifiedHistory: an attacker slips a release signed
// by an untrusted key into an app's history and writes the current one
// back, so agents see no change; rollback must neither default to it nor
// accept it by sequence, and returns to the release before.
func TestRollbackSkipsUnverifiedHistory(t *testing.T) {
	ctx := context.Background()
	key := mustKey(t)
	f := newFleet(t, artifact.NewKeySet(pubOf(key)))
	opts := deploy.Options{Client: f.pub, Key: key}
	v1, err := deploy.Push(ctx, manifest("rb2", "1.0.0", "/rb2"), module("one"), opts)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := deploy.Push(ctx, manifest("rb2", "2.0.0", "/rb2"), module("two"), opts)
	if err != nil {
		t.Fatal(err)
	}
	f.waitInstalled("rb2", 2)

	_, evil := f.forge("rb2", 3, module("evil"), "/evil")
	f.write(ternsync.AppsBucket, "rb2", v2.Envelope)

	// By sequence: the attacker's entry claims 3, and is refused by name.
	_, err = deploy.Rollback(ctx, "rb2", 3, opts)
	if err == nil || !errors.Is(err, deploy.ErrUnverified) || !errors.Is(err, artifact.ErrUntrustedKey) {
		t.Fatalf("rollback to the attacker's sequence: %v, want ErrUnverified and ErrUntrustedKey", err)
	}
	// By default: the attacker's entry is skipped.
	res, err := deploy.Rollback(ctx, "rb2", 0, opts)
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Release; r.Digest != v1.Release.Digest || r.Manifest.Version != "1.0.0" || r.Sequence != 3 || res.From != 1 || len(r.Manifest.Routes) != 1 {
		t.Fatalf("rolled back to %s %s (from sequence %d, routes %v) as %d, want 1.0.0 %s as 3",
			r.Manifest.Version, r.Digest, res.From, r.Manifest.Routes, r.Sequence, v1.Release.Digest)
	}
	if got := f.waitInstalled("rb2", 3); got.Digest != v1.Release.Digest {
		t.Fatalf("agent runs %s, want %s", got.Digest, v1.Release.Digest)
	}
	if f.agent.ever(evil) {
		t.Fatal("the agent installed the attacker's module")
	}

	hist, err := deploy.History(ctx, f.pub, "rb2", artifact.NewKeySet(pubOf(key)))
	if err != nil {
		t.Fatal(err)
	}
	var flags []string
	for _, e := range hist {
		switch {
		case e.Err != nil:
			flags = append(flags, artifact.Reason(e.Err))
		case e.Repeat:
			flags = append(flags, "repeat")
		default:
			flags = append(flags, "ok")
		}
	}
	if want := []string{"ok", "ok", "untrusted_key", "repeat", "ok"}; !slices.Equal(flags, want) {
		t.Fatalf("history = %v, want %v", flags, want)
	}

	// A forged current release: refused, or, told to, superseded from the
	// newest verified one (sequence 3, module one) back to module two.
	f.forge("rb2", 9, module("evil"), "/evil")
	if _, err := deploy.Rollback(ctx, "rb2", 0, opts); !errors.Is(err, deploy.ErrUnverifiedCurrent) {
		t.Fatalf("rollback over a forged current release: %v, want ErrUnverifiedCurrent", err)
	}
	opts.Supersede = true
	res, err = deploy.Rollback(ctx, "rb2", 0, opts)
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Release; r.Sequence != 4 || r.Digest != v2.Release.Digest || res.From != 2 {
		t.Fatalf("superseding rollback to %s from %d as %d, want module two from 2 as 4", r.Digest, res.From, r.Sequence)
	}
	f.waitInstalled("rb2", 4)
	if f.agent.ever(evil) {
		t.Fatal("the agent installed the attacker's module")
	}
}

// TestDeployRefusesUnverifiedCurrent: an attacker writes a "current"
// release of its own; a staged deploy must not sign it as the rollout's
// abort release, and a plain deploy must not number from it.
func TestDeployRefusesUnverifiedCurrent(t *testing.T) {
	ctx := context.Background()
	key := mustKey(t)
	f := newFleet(t, artifact.NewKeySet(pubOf(key)))
	opts := deploy.Options{Client: f.pub, Key: key}
	if _, err := deploy.Push(ctx, manifest("ro", "1.0.0", "/ro"), module("one"), opts); err != nil {
		t.Fatal(err)
	}
	f.waitInstalled("ro", 1)
	_, evil := f.forge("ro", 2, module("evil"), "/evil")

	staged := opts
	staged.Rollout = &deploy.RolloutPlan{Waves: []ternsync.Selector{{"*"}}, Wait: time.Second}
	_, err := deploy.Push(ctx, manifest("ro", "2.0.0", "/ro"), module("two"), staged)
	if !errors.Is(err, deploy.ErrUnverifiedCurrent) || !errors.Is(err, artifact.ErrUntrustedKey) {
		t.Fatalf("staged deploy over a forged current release: %v, want ErrUnverified and ErrUntrustedKey", err)
	}
	// Whatever abort release the rollout record holds, the attacker
	// copies into the release bucket.
	if r, _, err := f.pub.Rollout(ctx, "ro"); err == nil {
		f.write(ternsync.AppsBucket, "ro", r.Abort)
	} else if !errors.Is(err, ternsync.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := deploy.Push(ctx, manifest("ro", "2.0.0", "/ro"), module("two"), opts); !errors.Is(err, deploy.ErrUnverified) {
		t.Fatalf("deploy over a forged current release: %v, want ErrUnverified", err)
	}
	f.settle(key)
	if f.agent.ever(evil) {
		t.Fatal("the agent installed the attacker's module")
	}
	if seq, _ := f.agent.Installed("ro"); seq != 1 {
		t.Fatalf("agent runs ro@%d, want 1", seq)
	}

	// Told to, the publisher replaces the forged release, building on
	// the newest one that verifies: the abort release is that one's.
	staged.Supersede = true
	res, err := deploy.Push(ctx, manifest("ro", "2.0.0", "/ro"), module("two"), staged)
	if err != nil {
		t.Fatal(err)
	}
	if res.Release.Sequence != 2 {
		t.Fatalf("superseding release has sequence %d, want 2", res.Release.Sequence)
	}
	r, _, err := f.pub.Rollout(ctx, "ro")
	if err != nil {
		t.Fatal(err)
	}
	abort, err := artifact.Open(r.Abort, artifact.NewKeySet(pubOf(key)))
	if err != nil || abort.Digest != artifact.Digest(module("one")) || abort.Sequence != 3 {
		t.Fatalf("abort release %s@%d, %v; want module one at 3", abort.Digest, abort.Sequence, err)
	}
	// The wave converges and the controller publishes the release.
	f.write(ternsync.AppsBucket, "ro", r.Release)
	if got := f.waitInstalled("ro", 2); got.Digest != artifact.Digest(module("two")) {
		t.Fatalf("agent runs %s, want module two", got.Digest)
	}
	if f.agent.ever(evil) {
		t.Fatal("the agent installed the attacker's module")
	}
}

// TestTrustSetRefusesReplayedList: the root revokes a stolen publisher
// key; the attacker writes the older list, which still names it, back to
// the hub and deploys with the stolen key. The next routine trust set must
// not build on the replayed list; --from and --reset start over.
func TestTrustSetRefusesReplayedList(t *testing.T) {
	ctx := context.Background()
	root, p1, p2 := mustKey(t), mustKey(t), mustKey(t)
	f := newFleet(t, artifact.KeySet{})
	var list atomic.Uint64
	tw := ternsync.NewTrustWatcher(ternsync.TrustWatcherConfig{
		Client:    connect(t, f.hub, "agent-trust"),
		Roots:     artifact.NewKeySet(pubOf(root)),
		Installed: list.Load,
		Accept: func(_ context.Context, l artifact.Publishers, _ []byte) error {
			ks := l.KeySet()
			f.trusted.Store(&ks)
			list.Store(l.Sequence)
			f.watcher.Rescan()
			return nil
		},
	})
	twCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); tw.Run(twCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitList := func(seq uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for list.Load() != seq {
			if time.Now().After(deadline) {
				t.Fatalf("agent holds publisher list %d, want %d", list.Load(), seq)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	l1, err := deploy.SetPublishers(ctx, f.pub, root, deploy.TrustChange{Add: []ed25519.PublicKey{pubOf(p1), pubOf(p2)}})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := deploy.SetPublishers(ctx, f.pub, root, deploy.TrustChange{Revoke: []ed25519.PublicKey{pubOf(p2)}, Last: l1.Envelope})
	if err != nil {
		t.Fatal(err)
	}
	waitList(2)

	f.write(ternsync.TrustBucket, "publishers", l1.Envelope)
	stolen, err := deploy.Push(ctx, manifest("stolen", "1.0.0", "/stolen"), module("evil"), deploy.Options{Client: f.pub, Key: p2})
	if err != nil {
		t.Fatal(err)
	}

	// The routine re-sign: refused, whether the record is there or lost.
	if _, err := deploy.SetPublishers(ctx, f.pub, root, deploy.TrustChange{Last: l2.Envelope}); !errors.Is(err, deploy.ErrListMismatch) {
		t.Fatalf("trust set over a replayed list: %v, want ErrListMismatch", err)
	}
	if _, err := deploy.SetPublishers(ctx, f.pub, root, deploy.TrustChange{}); !errors.Is(err, deploy.ErrListMismatch) {
		t.Fatalf("trust set with no record of the last list: %v, want ErrListMismatch", err)
	}
	f.settle(p1)
	if f.agent.ever(stolen.Release.Digest) {
		t.Fatal("the agent installed the release of the revoked key")
	}

	// Starting over: afresh, with no record, then from the list signed
	// last; each goes above every list of the root the hub still keeps
	// (not only above the replayed one), and neither brings the stolen
	// key back.
	l3, err := deploy.SetPublishers(ctx, f.pub, root, deploy.TrustChange{Reset: true, Add: []ed25519.PublicKey{pubOf(p1)}})
	if err != nil {
		t.Fatal(err)
	}
	if l3.Sequence != 3 || len(l3.Keys) != 1 {
		t.Fatalf("reset list = %d %v, want sequence 3 and p1 alone", l3.Sequence, l3.Keys)
	}
	waitList(3)
	l4, err := deploy.SetPublishers(ctx, f.pub, root, deploy.TrustChange{From: l2.Envelope, Last: l3.Envelope})
	if err != nil {
		t.Fatal(err)
	}
	if l4.Sequence != 4 || !slices.Equal(l4.Keys, []string{artifact.FormatPublicKey(pubOf(p1))}) {
		t.Fatalf("list from list 2 = %d %v", l4.Sequence, l4.Keys)
	}
	waitList(4)
	// The routine re-sign builds on the hub's list again once it is the
	// one signed last.
	if _, err := deploy.SetPublishers(ctx, f.pub, root, deploy.TrustChange{Last: l4.Envelope}); err != nil {
		t.Fatal(err)
	}
	waitList(5)
	f.settle(p1)
	if f.agent.ever(stolen.Release.Digest) {
		t.Fatal("the agent installed the release of the revoked key")
	}
}
