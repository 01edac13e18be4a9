package sync

import (
	"context"
	"errors"
	"fmt"
	"net"
	gosync "sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

type runnerFunc func(ctx context.Context, job OffloadJob) OffloadResult

func (f runnerFunc) RunOffloaded(ctx context.Context, job OffloadJob) OffloadResult {
	return f(ctx, job)
}

type countingPurger struct{ n chan Purge }

func (p countingPurger) Purge(_ context.Context, pg Purge) (int, error) {
	p.n <- pg
	return 1, nil
}

// TestLeavesIsolatedCallsRelayed checks that a hub's leaf nodes do not
// learn each other's subscriptions, and that what sites send each other
// still arrives: a call to another site's queue group and its answer, "no
// responders" for a site nobody serves, a purge and its acknowledgement.
func TestLeavesIsolatedCallsRelayed(t *testing.T) {
	t.Run("hub", func(t *testing.T) {
		hub, err := StartHub(HubConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", LeafListen: "127.0.0.1:0", Domain: HubDomain})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(hub.Shutdown)
		testRelay(t, hub, hub, hub)
	})
	// A plain nats-server that isolates leaf interest, with the relay of
	// tern controller connected over the network.
	t.Run("own-nats", func(t *testing.T) {
		opts := &server.Options{
			Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true,
			JetStream: true, JetStreamDomain: HubDomain, StoreDir: t.TempDir(),
			LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: server.RANDOM_PORT, IsolateLeafnodeInterest: true},
		}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		t.Cleanup(ns.Shutdown)
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats-server not ready")
		}
		r, err := StartRelay(ConnConfig{URL: ns.ClientURL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		hub := &Hub{ns: ns, opts: opts}
		testRelay(t, hub, hub, hub)
	})
	// Leaves on different nodes: each node's relay sees the call, and
	// the site must still run it once.
	t.Run("cluster", func(t *testing.T) {
		var addrs, routes []string
		for range 3 {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addrs, routes = append(addrs, ln.Addr().String()), append(routes, "nats-route://"+ln.Addr().String())
			ln.Close()
		}
		nodes := make([]*Hub, 3)
		var wg gosync.WaitGroup
		for i := range nodes {
			wg.Go(func() {
				n, err := StartHub(HubConfig{Name: fmt.Sprintf("hub-%d", i), Dir: t.TempDir(), Listen: "127.0.0.1:0", LeafListen: "127.0.0.1:0",
					Domain: HubDomain, Cluster: &Cluster{Name: "tern", Listen: addrs[i], Routes: routes}})
				if err != nil {
					t.Error(err)
					return
				}
				t.Cleanup(n.Shutdown)
				nodes[i] = n
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		testRelay(t, nodes[2], nodes[0], nodes[1])
	})
}

// testRelay runs site a on a leaf of hubA and site b on a leaf of hubB,
// and checks calls, "no responders", purges and isolation; hub is where
// a publisher connects.
func testRelay(t *testing.T, hub, hubA, hubB *Hub) {
	var leaves []*Hub
	var clients []*Client
	for site, up := range map[string]*Hub{"a": hubA, "b": hubB} {
		leaf, err := StartHub(HubConfig{Name: "leaf-" + site, Dir: t.TempDir(), Listen: "-", Domain: "leaf-" + site, Upstream: &Upstream{URL: up.LeafURL()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(leaf.Shutdown)
		waitUntil(t, "leaf link "+site, leaf.LeafConnected)
		c, err := Connect(ConnConfig{Server: leaf, Name: site, FleetDomain: HubDomain})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		if site == "a" {
			leaves, clients = append([]*Hub{leaf}, leaves...), append([]*Client{c}, clients...)
		} else {
			leaves, clients = append(leaves, leaf), append(clients, c)
		}
	}
	a, b := clients[0], clients[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runsMu gosync.Mutex
	runs := map[string]int{}
	// Every site runs a job by counting it, so that a duplicate shows.
	runner := runnerFunc(func(_ context.Context, job OffloadJob) OffloadResult {
		runsMu.Lock()
		runs[job.ID]++
		runsMu.Unlock()
		return OffloadResult{Status: 200, Body: []byte("ran " + job.ID)}
	})
	go b.ServeJobs(ctx, "b", runner, nil)
	purges := countingPurger{n: make(chan Purge, 4)}
	go b.ServePurges(ctx, "agent-b", "b", purges, nil)

	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	// Until a site's subscription has reached the hub (every node of a
	// cluster, each in its own time), calls to it are unreachable; and
	// until the caller's reply subscription has, an answer can be lost, so
	// each try has its own job and timeout.
	tries := 0 // numbers every try's job across calls
	call := func(from *Client, site string) (OffloadResult, string) {
		var (
			res OffloadResult
			id  string
		)
		waitUntil(t, "an offload to "+site, func() bool {
			tries++
			id = fmt.Sprintf("%s-%d", site, tries)
			actx, acancel := context.WithTimeout(cctx, 3*time.Second)
			defer acancel()
			var err error
			res, err = from.OffloadJob(actx, site, OffloadJob{ID: id})
			if err != nil && !errors.Is(err, ErrUnreachable) && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("offload to %s: %v", site, err)
			}
			return err == nil
		})
		return res, id
	}
	if res, id := call(a, "b"); string(res.Body) != "ran "+id {
		t.Fatalf("offload from a to b: %+v", res)
	}
	// Leaf a does not know that leaf b serves site b.
	if n := leaves[0].ns.GlobalAccount().Interest(JobsSubjectPrefix + ".b"); n != 0 {
		t.Errorf("leaf a knows %d subscriptions on %s.b, want none", n, JobsSubjectPrefix)
	}

	start := time.Now()
	if _, err := a.OffloadJob(cctx, "nowhere", OffloadJob{ID: "j2"}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("offload to a site nobody serves: %v, want ErrUnreachable", err)
	} else if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("ErrUnreachable after %s: the relay should answer at once", waited)
	}
	// From the hub itself too: the relay's subscription must not make a
	// site nobody serves look served.
	hc, err := Connect(ConnConfig{URL: hub.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if _, err := hc.OffloadJob(cctx, "nowhere", OffloadJob{ID: "j3"}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("offload from the hub to a site nobody serves: %v, want ErrUnreachable", err)
	}
	// In a cluster the hub is a third node, which may learn of b's
	// subscription after a's node did.
	res, hubJob := call(hc, "b")
	if string(res.Body) != "ran "+hubJob {
		t.Fatalf("offload from the hub to b: %+v", res)
	}

	// A site served on the hub itself (an agent with an embedded hub that
	// accepts leaves): its subscription is the hub's own, which leaf a
	// knows, and a call from a runs there once, not also through the relay.
	go hc.ServeJobs(ctx, "h", runner, nil)
	if res, id := call(a, "h"); string(res.Body) != "ran "+id {
		t.Fatalf("offload from a to h: %+v", res)
	}
	select {
	case p := <-purges.n:
		t.Fatalf("purge %+v before any was sent", p)
	default:
	}

	acks, err := a.PublishPurge(cctx, Purge{URLs: []string{"https://x/y"}}, 1, 5*time.Second)
	if err != nil || len(acks) != 1 || acks[0].Agent != "agent-b" {
		t.Fatalf("purge from leaf a: acks %+v, %v; want agent-b's", acks, err)
	}
	if p := <-purges.n; len(p.URLs) != 1 {
		t.Fatalf("purge at b: %+v", p)
	}

	// Every call ran once, whatever the number of relays.
	time.Sleep(200 * time.Millisecond) // a duplicate would arrive by now
	runsMu.Lock()
	defer runsMu.Unlock()
	for id, n := range runs {
		if n != 1 {
			t.Errorf("job %s ran %d times, want once", id, n)
		}
	}
	if runs[hubJob] != 1 {
		t.Errorf("jobs run: %v, want %s among them", runs, hubJob)
	}
}
