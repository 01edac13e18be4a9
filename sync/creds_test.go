package sync

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tern-edge/tern/artifact"
)

// TestAgentCredentials runs the hub as a NATS deployment in operator mode
// (JWT accounts, as nsc sets them up) and an agent's leaf node that links
// with a credentials file (tern agent --creds) for a user whose JWT carries
// AgentDeny: the agent follows releases, downloads modules and reports,
// and cannot write a release.
func TestAgentCredentials(t *testing.T) {
	ctx := context.Background()
	mustKP := func(create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, string) {
		kp, err := create()
		if err != nil {
			t.Fatal(err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		return kp, pub
	}
	opKP, opPub := mustKP(nkeys.CreateOperator)
	_, sysPub := mustKP(nkeys.CreateAccount)
	accKP, accPub := mustKP(nkeys.CreateAccount)
	sign := func(c interface {
		Encode(nkeys.KeyPair) (string, error)
	}, kp nkeys.KeyPair) string {
		s, err := c.Encode(kp)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	op := jwt.NewOperatorClaims(opPub)
	op.SystemAccount = sysPub
	opJWT := sign(op, opKP)
	opClaims, err := jwt.DecodeOperatorClaims(opJWT)
	if err != nil {
		t.Fatal(err)
	}
	sysJWT := sign(jwt.NewAccountClaims(sysPub), opKP)
	acc := jwt.NewAccountClaims(accPub)
	acc.Name = "fleet"
	acc.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT := sign(acc, opKP)

	// creds writes a credentials file for a user of the fleet account.
	dir := t.TempDir()
	creds := func(name string, deny []string) string {
		ukp, upub := mustKP(nkeys.CreateUser)
		uc := jwt.NewUserClaims(upub)
		uc.Name = name
		uc.Pub.Deny.Add(deny...)
		seed, err := ukp.Seed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := jwt.FormatUserConfig(sign(uc, accKP), seed)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name+".creds")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pubCreds, agentCreds := creds("publisher", nil), creds("agent", AgentDeny)

	resolver := &server.MemAccResolver{}
	for pub, j := range map[string]string{sysPub: sysJWT, accPub: accJWT} {
		if err := resolver.Store(pub, j); err != nil {
			t.Fatal(err)
		}
	}
	opts := &server.Options{
		ServerName: "hub", Host: "127.0.0.1", Port: -1, NoSigs: true,
		JetStream: true, JetStreamDomain: HubDomain, StoreDir: t.TempDir(),
		TrustedOperators: []*jwt.OperatorClaims{opClaims},
		SystemAccount:    sysPub,
		AccountResolver:  resolver,
	}
	opts.LeafNode.Host, opts.LeafNode.Port = "127.0.0.1", -1
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("hub not ready")
	}
	clientURL := ns.ClientURL()
	// The server writes the ports it chose back into its options.
	leafURL := fmt.Sprintf("nats-leaf://127.0.0.1:%d", opts.LeafNode.Port)

	if _, err := Connect(ConnConfig{URL: clientURL}); err == nil {
		t.Fatal("connected to an operator-mode hub without credentials")
	}
	pub, err := Connect(ConnConfig{URL: clientURL, CredsFile: pubCreds})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.EnsureBuckets(ctx, 1); err != nil {
		t.Fatal(err)
	}
	module := bytes.Repeat([]byte("wasm"), 50_000)
	if err := pub.PutArtifact(ctx, "sha256:m", bytes.NewReader(module), int64(len(module)), nil); err != nil {
		t.Fatal(err)
	}
	if err := pub.PutRelease(ctx, "app", []byte("good"), 0); err != nil {
		t.Fatal(err)
	}

	lc := agentLeaf(t, &Upstream{URL: leafURL, Creds: agentCreds}, "good")
	ms, err := lc.modules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := fetch(ctx, &ms, artifact.Release{App: "app", Sequence: 1, Digest: "sha256:m", Size: int64(len(module))}); err != nil || !bytes.Equal(got, module) {
		t.Fatalf("module through a credentialed leaf: %d bytes, %v", len(got), err)
	}
	if err := lc.PublishHeartbeat(ctx, Heartbeat{Agent: "a1", Site: "s"}); err != nil {
		t.Fatalf("heartbeat with agent credentials: %v", err)
	}
	hubJS, err := jetstream.NewWithDomain(lc.nc, HubDomain)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if kv, err := hubJS.KeyValue(short, AppsBucket); err == nil {
		if _, err := kv.Put(short, "app", []byte("evil")); err == nil {
			t.Error("an agent with agent credentials published a release")
		}
	}
	if env, _, err := pub.Release(ctx, "app"); err != nil || string(env) != "good" {
		t.Fatalf("release on the hub after the attempt: %q, %v", env, err)
	}

	neverLinks(t, &Upstream{URL: leafURL}, "a leaf node without credentials")
}
