package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"

	ternsync "github.com/tern-edge/tern/sync"
)

// linkProxy forwards TCP connections to a target and can cut and restore
// the link, standing in for a site's uplink.
type linkProxy struct {
	t      *testing.T
	addr   string
	target string
	mu     gosync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newLinkProxy(t *testing.T, target string) *linkProxy {
	p := &linkProxy{t: t, target: target}
	p.listen("127.0.0.1:0")
	t.Cleanup(p.cut)
	return p
}

func (p *linkProxy) listen(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatalf("proxy listen %s: %v", addr, err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

// cut drops every connection and stops accepting new ones.
func (p *linkProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// restore accepts connections again on the same address.
func (p *linkProxy) restore() { p.listen(p.addr) }

// TestFleetLeafAgents runs a hub and three agents that follow it as leaf
// nodes, one of them through a link that is cut while a deploy happens.
func TestFleetLeafAgents(t *testing.T) {
	key := mustKey(t)
	hubCfg := testConfig(t, t.TempDir())
	hubCfg.Hub.LeafListen = "127.0.0.1:0"
	hub := startAgent(t, hubCfg, key)
	leafURL := hub.hub.LeafURL()
	proxy := newLinkProxy(t, strings.TrimPrefix(leafURL, "nats-leaf://"))

	var agents []*testAgent
	for i := range 3 {
		cfg := testConfig(t, t.TempDir())
		cfg.Site = []string{"fra1", "fra1", "gw7"}[i]
		cfg.Hub.URL = leafURL
		if i == 2 {
			cfg.Hub.URL = "nats-leaf://" + proxy.addr
		}
		agents = append(agents, startAgent(t, cfg, key))
	}
	gateway := agents[2]

	ctx := context.Background()
	pub := hubClient(t, hub.Agent)
	m, hello := readGuest(t, "hello")
	if _, err := deploy.Push(ctx, m, hello, deploy.Options{Client: pub, Key: key}); err != nil {
		t.Fatal(err)
	}
	for i, a := range agents {
		waitFor(t, "agent "+string(rune('0'+i))+" to serve v1", func() bool { seq, _ := a.Installed("hello"); return seq == 1 })
	}

	// The gateway loses its uplink; a new version goes out meanwhile.
	proxy.cut()
	waitFor(t, "gateway to notice the cut", func() bool { return !gateway.leaf.LeafConnected() })
	m2 := m
	m2.Version = "1.1.0"
	if _, err := deploy.Push(ctx, m2, hello, deploy.Options{Client: pub, Key: key}); err != nil {
		t.Fatal(err)
	}
	for _, a := range agents[:2] {
		waitFor(t, "connected agents to get v2", func() bool { seq, _ := a.Installed("hello"); return seq == 2 })
	}
	if seq, _ := gateway.Installed("hello"); seq != 1 {
		t.Fatalf("cut-off gateway installed sequence %d, want to keep 1", seq)
	}
	if code, _ := gateway.get(t, "/hello"); code != 200 {
		t.Fatalf("cut-off gateway: /hello = %d", code)
	}

	// The link returns: the gateway converges without anyone acting.
	proxy.restore()
	waitFor(t, "gateway to converge after reconnect", func() bool { seq, _ := gateway.Installed("hello"); return seq == 2 })

	// Every agent reports to the hub's fleet bucket.
	waitFor(t, "heartbeats from all four agents", func() bool {
		fleet, err := pub.Fleet(ctx)
		return err == nil && len(fleet) == 4
	})
}

// TestFleetClusteredHub runs a three-node hub with replicated buckets and
// five agents; deploys converge on all of them, also after one hub node
// stops.
func TestFleetClusteredHub(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster and five agents; skipped with -short")
	}
	// A JetStream cluster needs its routes from the start, so the three
	// cluster ports are chosen before any node starts.
	var clusterAddrs, routes []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		clusterAddrs = append(clusterAddrs, ln.Addr().String())
		routes = append(routes, "nats-route://"+ln.Addr().String())
		ln.Close()
	}
	nodes := make([]*ternsync.Hub, 3)
	var wg gosync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := ternsync.StartHub(ternsync.HubConfig{
				Name:       fmt.Sprintf("hub-%d", i),
				Dir:        t.TempDir(),
				Listen:     "127.0.0.1:0",
				LeafListen: "127.0.0.1:0",
				Domain:     ternsync.HubDomain,
				Cluster:    &ternsync.Cluster{Name: "tern", Listen: clusterAddrs[i], Routes: routes},
			})
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(n.Shutdown)
			nodes[i] = n
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var leafURLs []string
	for _, n := range nodes {
		leafURLs = append(leafURLs, n.LeafURL())
	}
	ctx := context.Background()
	connect := func(n *ternsync.Hub) *ternsync.Client {
		c, err := ternsync.Connect(ternsync.ConnConfig{URL: n.ClientURL(), Name: "publisher"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	pub := connect(nodes[1])
	waitFor(t, "replicated buckets", func() bool {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return pub.EnsureBuckets(cctx, 3) == nil
	})

	key := mustKey(t)
	var agents []*testAgent
	for range 5 {
		cfg := testConfig(t, t.TempDir())
		cfg.Hub.URL = strings.Join(leafURLs, ",")
		agents = append(agents, startAgent(t, cfg, key))
	}
	m, hello := readGuest(t, "hello")
	push := func(c *ternsync.Client, version string) uint64 {
		mv := m
		mv.Version = version
		var res deploy.Result
		waitFor(t, "deploy "+version, func() bool {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			var err error
			res, err = deploy.Push(cctx, mv, hello, deploy.Options{Client: c, Key: key})
			return err == nil
		})
		return res.Release.Sequence
	}
	converge := func(seq uint64) {
		for i, a := range agents {
			waitFor(t, fmt.Sprintf("agent %d to install sequence %d", i, seq), func() bool { s, _ := a.Installed("hello"); return s == seq })
		}
	}
	converge(push(pub, "1.0.0"))

	// One hub node goes away; the others carry on.
	nodes[0].Shutdown()
	pub2 := connect(nodes[2])
	converge(push(pub2, "1.1.0"))
	for i, a := range agents {
		if code, _ := a.get(t, "/hello"); code != 200 {
			t.Fatalf("agent %d: /hello = %d", i, code)
		}
	}
}

// TestRootedTrust runs a leaf agent that trusts a root key only: it takes
// its publisher keys from root-signed lists on the hub, refuses releases
// before the first list and after the list expires, picks up added keys,
// stops serving apps of revoked keys, and refuses a replayed older list.
func TestRootedTrust(t *testing.T) {
	ctx := context.Background()
	hubKey, root, p1, p2 := mustKey(t), mustKey(t), mustKey(t), mustKey(t)
	pubOf := func(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }
	hubCfg := testConfig(t, t.TempDir())
	hubCfg.Hub.LeafListen = "127.0.0.1:0"
	hub := startAgent(t, hubCfg, hubKey)
	pub := hubClient(t, hub.Agent)

	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	cfg := testConfig(t, t.TempDir())
	cfg.Hub.URL = hub.hub.LeafURL()
	cfg.Trust.Roots = []string{artifact.FormatPublicKey(pubOf(root))}
	leaf := startAgentWith(t, cfg, Options{Now: func() time.Time { return time.Unix(0, clock.Load()) }})

	m, hello := readGuest(t, "hello")
	deployAs := func(name string, k ed25519.PrivateKey) uint64 {
		mv := m
		mv.Name = name
		mv.Routes = []artifact.Route{{Path: "/" + name}}
		res, err := deploy.Push(ctx, mv, hello, deploy.Options{Client: pub, Key: k})
		if err != nil {
			t.Fatal(err)
		}
		return res.Release.Sequence
	}
	var lastList []byte
	setList := func(ch deploy.TrustChange) artifact.Publishers {
		ch.Last = lastList
		l, err := deploy.SetPublishers(ctx, pub, root, ch)
		if err != nil {
			t.Fatal(err)
		}
		lastList = l.Envelope
		return l.Publishers
	}
	installed := func(app string) bool { seq, _ := leaf.Installed(app); return seq > 0 }

	// No list yet: nothing is trusted.
	deployAs("one", p1)
	waitFor(t, "refusal before any list", func() bool { return refused(leaf.Agent, "untrusted_key") > 0 })

	// The root names p1: the waiting release is looked at again.
	setList(deploy.TrustChange{Add: []ed25519.PublicKey{pubOf(p1)}})
	waitFor(t, "app of p1", func() bool { return installed("one") })
	deployAs("two", p2)
	waitFor(t, "refusal of p2", func() bool { return refused(leaf.Agent, "untrusted_key") > 1 })
	l2 := setList(deploy.TrustChange{Add: []ed25519.PublicKey{pubOf(p2)}})
	waitFor(t, "app of p2 after it is added", func() bool { return installed("two") })

	// Revoking p1 stops its app at once.
	setList(deploy.TrustChange{Revoke: []ed25519.PublicKey{pubOf(p1)}})
	waitFor(t, "app of revoked p1 to stop", func() bool { return !installed("one") })
	if code, _ := leaf.get(t, "/one"); code != 404 {
		t.Fatalf("revoked app still served: %d", code)
	}
	if code, _ := leaf.get(t, "/two"); code != 200 {
		t.Fatalf("app of p2: %d", code)
	}

	// Replaying the older list that still named p1 does not bring it back.
	old, err := artifact.SignPublishers(l2, root)
	if err != nil {
		t.Fatal(err)
	}
	_, rev, _ := pub.Publishers(ctx)
	if err := pub.PutPublishers(ctx, old, rev); err != nil {
		t.Fatal(err)
	}
	if seq := leaf.publishersSequence(); seq != 3 {
		t.Fatalf("publisher list sequence %d after replay, want 3", seq)
	}

	// Past the list's expiry, new releases are refused (freeze attack);
	// what runs keeps running.
	clock.Add(int64(deploy.DefaultListTTL + time.Hour))
	before := refused(leaf.Agent, "expired")
	deployAs("two", p2)
	waitFor(t, "refusal under an expired list", func() bool { return refused(leaf.Agent, "expired") > before })
	if code, _ := leaf.get(t, "/two"); code != 200 {
		t.Fatalf("installed app under an expired list: %d", code)
	}
}

// TestStagedRollout rolls a release out in two waves, then rolls out a
// broken one whose first wave fails: the hub returns that wave to the
// previous version and the second wave never sees the broken one.
func TestStagedRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for heartbeats; skipped with -short")
	}
	key := mustKey(t)
	hubCfg := testConfig(t, t.TempDir())
	hubCfg.Hub.LeafListen = "127.0.0.1:0"
	hub := startAgent(t, hubCfg, key)
	testStagedRollout(t, key, hubClient(t, hub.Agent), hub.hub.LeafURL())
}

// TestStagedRolloutOwnNATS runs the same rollouts on a hub that is a NATS
// server alone, without what a tern hub runs beside it (buckets, rollout
// controller), which tern controller's work provides instead. (The sync
// package tests its relay against a plain nats-server.)
func TestStagedRolloutOwnNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for heartbeats; skipped with -short")
	}
	hub, err := ternsync.StartHub(ternsync.HubConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", LeafListen: "127.0.0.1:0", Domain: ternsync.HubDomain})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Shutdown)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RunController(ctx, ControllerOptions{Conn: ternsync.ConnConfig{URL: hub.ClientURL(), Name: "controller"}})
	}()
	t.Cleanup(func() { cancel(); <-done })
	pub, err := ternsync.Connect(ternsync.ConnConfig{URL: hub.ClientURL(), Name: "publisher"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	testStagedRollout(t, mustKey(t), pub, hub.LeafURL())
}

// testStagedRollout rolls releases out to three sites linked to leafURL,
// publishing with pub: one that succeeds wave by wave, one whose first
// wave fails and is rolled back.
func testStagedRollout(t *testing.T, key ed25519.PrivateKey, pub *ternsync.Client, leafURL string) {
	ctx := context.Background()
	sites := []string{"a", "b", "c"}
	agents := map[string]*testAgent{}
	for _, site := range sites {
		cfg := testConfig(t, t.TempDir())
		cfg.Site = site
		cfg.Hub.URL = leafURL
		cfg.Heartbeat = artifact.Duration(time.Second)
		agents[site] = startAgent(t, cfg, key)
	}
	seqAt := func(site string) uint64 { seq, _ := agents[site].Installed("hello"); return seq }
	all := func(seq uint64) func() bool {
		return func() bool { return seqAt("a") == seq && seqAt("b") == seq && seqAt("c") == seq }
	}

	// Small modules keep compiling out of the test's time.
	m, hello := readGuest(t, "hello")
	module := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "guests", "faults", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	echo, trap := module("status.wasm"), module("trap.wasm")
	if _, err := deploy.Push(ctx, m, hello, deploy.Options{Client: pub, Key: key}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "v1 everywhere", all(1))

	waves, err := ternsync.ParseWaves("site=a; *")
	if err != nil {
		t.Fatal(err)
	}
	plan := &deploy.RolloutPlan{Waves: waves, Wait: 2 * time.Second, MaxErrorRate: 0.1, Timeout: time.Minute}
	m.Version = "2.0.0"
	if _, err := deploy.Push(ctx, m, echo, deploy.Options{Client: pub, Key: key, Rollout: plan}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "wave 1 (site a) to get v2", func() bool { return seqAt("a") == 2 })
	if seqAt("b") != 1 || seqAt("c") != 1 {
		t.Fatalf("wave 2 moved before wave 1 was judged: b=%d c=%d", seqAt("b"), seqAt("c"))
	}
	if _, err := deploy.Push(ctx, m, echo, deploy.Options{Client: pub, Key: key}); !errors.Is(err, deploy.ErrRolloutActive) {
		t.Fatalf("deploy during a rollout: %v, want ErrRolloutActive", err)
	}
	waitFor(t, "v2 everywhere", all(2))
	waitFor(t, "rollout done", func() bool {
		r, _, err := pub.Rollout(ctx, "hello")
		return err == nil && r.State == ternsync.RolloutDone
	})

	// A broken release: its first wave answers 500s and is rolled back.
	m.Version = "3.0.0"
	if _, err := deploy.Push(ctx, m, trap, deploy.Options{Client: pub, Key: key, Rollout: plan}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "wave 1 to get the broken v3", func() bool { return seqAt("a") == 3 })
	for range 20 {
		if code, _ := agents["a"].get(t, "/hello"); code != 500 {
			t.Fatalf("broken release answered %d", code)
		}
	}
	waitFor(t, "the abort release everywhere", all(4))
	r, _, err := pub.Rollout(ctx, "hello")
	if err != nil || r.State != ternsync.RolloutFailed || !strings.Contains(r.Reason, "errors in") {
		t.Fatalf("rollout = %+v, %v", r, err)
	}
	if _, digest := agents["b"].Installed("hello"); digest != artifact.Digest(echo) {
		t.Fatalf("after the failed rollout site b runs %s, want the v2 module", digest)
	}
	for _, site := range sites {
		if code, _ := agents[site].get(t, "/hello"); code >= 500 {
			t.Fatalf("site %s after the failed rollout: %d", site, code)
		}
	}
}

// TestExpiredReleasePolicy lets an installed release expire: it is
// reported in heartbeats, kept by an agent whose policy is to serve it,
// and dropped by one whose policy is to refuse it.
func TestExpiredReleasePolicy(t *testing.T) {
	ctx := context.Background()
	key := mustKey(t)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	opts := Options{Now: now, ExtraTrusted: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}}
	hubCfg := testConfig(t, t.TempDir())
	hubCfg.Hub.LeafListen = "127.0.0.1:0"
	hub := startAgentWith(t, hubCfg, opts)
	refuseCfg := testConfig(t, t.TempDir())
	refuseCfg.Hub.URL = hub.hub.LeafURL()
	refuseCfg.Expired = "refuse"
	refuser := startAgentWith(t, refuseCfg, opts)

	m, hello := readGuest(t, "hello")
	if _, err := deploy.Push(ctx, m, hello, deploy.Options{Client: hubClient(t, hub.Agent), Key: key, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []*testAgent{hub, refuser} {
		waitFor(t, "install", func() bool { seq, _ := a.Installed("hello"); return seq == 1 })
	}
	clock.Add(int64(2 * time.Hour))
	for _, a := range []*testAgent{hub, refuser} {
		if hb := a.heartbeat(); len(hb.Apps) != 1 || !hb.Apps[0].Expired {
			t.Fatalf("heartbeat of %s does not report the expired release: %+v", a.ID(), hb.Apps)
		}
		a.dropExpired()
	}
	if code, _ := hub.get(t, "/hello"); code != 200 {
		t.Fatalf("agent with expired = serve: %d", code)
	}
	if code, _ := refuser.get(t, "/hello"); code != 404 {
		t.Fatalf("agent with expired = refuse still serves: %d", code)
	}
}

// TestFleetAtRestMakesNoSubscriptions runs a hub and a leaf agent with a
// deferrable app installed (so both keep a view of the fleet) and nothing
// happening: the hub must not add or remove subscriptions, since it
// announces each one to every leaf node, which at fleet scale is N²
// messages. The rollout controller once listed the rollouts bucket with a
// fresh watcher every second, and each agent's fleet view read the fleet
// bucket the same way every heartbeat interval.
func TestFleetAtRestMakesNoSubscriptions(t *testing.T) {
	key := mustKey(t)
	hubCfg := testConfig(t, t.TempDir())
	hubCfg.Hub.LeafListen = "127.0.0.1:0"
	// Heartbeats (and the fleet view's reads) every second, like the
	// rollout ticks, so that each window of the test spans four.
	hubCfg.Heartbeat = artifact.Duration(time.Second)
	hub := startAgent(t, hubCfg, key)
	cfg := testConfig(t, t.TempDir())
	cfg.Hub.URL = hub.hub.LeafURL()
	cfg.Heartbeat = artifact.Duration(time.Second)
	leaf := startAgent(t, cfg, key)

	// A deferrable app: the agents keep a view of the fleet for offload.
	deployKV(t, hub.Agent, key, "[deferrable]\nmax_delay = \"1h\"\nexpected_runtime = \"1s\"\n", hub, leaf)

	changes := func() uint64 {
		n, err := hub.hub.SubscriptionChanges()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Windows of four rollout ticks, in which the old controller made
	// twelve changes or more; the first ones may still see the agents'
	// start-up.
	for window := 1; ; window++ {
		before := changes()
		time.Sleep(4 * rolloutTick)
		n := changes() - before
		if n <= 3 {
			break
		}
		if window == 5 {
			t.Fatalf("%d subscription changes on the hub in %s at rest (window %d), want none", n, 4*rolloutTick, window)
		}
	}
}
