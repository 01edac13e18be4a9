package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	ternsync "github.com/tern-edge/tern/sync"
)

// connectHub gives the agent its NATS side. Without a hub URL the agent
// runs the hub itself (tern up) and follows it directly. With one, it runs
// a leaf node of that hub with a JetStream domain of its own, whose
// buckets mirror the hub's: the agent follows its leaf, so a site cut off
// from the hub still has every release and module, and catches up by
// itself when the link returns.
func (a *Agent) connectHub(ctx context.Context) error {
	cfg := a.cfg
	logger := a.logger.With("component", "sync")
	if cfg.Hub.URL == "" {
		hub, err := ternsync.StartHub(ternsync.HubConfig{
			Dir:        filepath.Join(cfg.Data, "hub"),
			Listen:     cfg.Hub.Listen,
			LeafListen: cfg.Hub.LeafListen,
			Domain:     ternsync.HubDomain,
			MinFree:    int64(cfg.Store.MinFree),
			Logger:     a.logger.With("component", "hub"),

			LeafCompression: cfg.Hub.Compression,
		})
		if err != nil {
			return err
		}
		a.hub = hub
		a.onUndo(hub.Shutdown)
		if err := os.WriteFile(filepath.Join(cfg.Data, HubURLFile), []byte(hub.ClientURL()+"\n"), 0o600); err != nil {
			return fmt.Errorf("record hub url: %w", err)
		}
		if a.client, err = ternsync.Connect(ternsync.ConnConfig{Server: hub, Name: "tern-agent", Logger: logger}); err != nil {
			return err
		}
		a.onUndo(a.client.Close)
		// The hub tern up embeds: its fleet metrics are the agent's.
		registerHubMetrics(a.reg, hub, a.client)
		return a.client.EnsureBuckets(ctx, 1)
	}

	upstream := cfg.Hub.URL
	if cfg.Hub.PasswordFile != "" {
		pw, err := ReadSecret(cfg.Hub.PasswordFile)
		if err != nil {
			return err
		}
		if upstream, err = withUser(upstream, ternsync.AgentUser, pw); err != nil {
			return err
		}
	}
	leaf, err := ternsync.StartHub(ternsync.HubConfig{
		Name:     "tern-" + a.id,
		Dir:      filepath.Join(cfg.Data, "leaf"),
		Listen:   "-",
		Domain:   "tern-" + a.id,
		Upstream: &ternsync.Upstream{URL: upstream, Creds: cfg.Hub.Creds},
		MinFree:  int64(cfg.Store.MinFree),
		Logger:   a.logger.With("component", "leaf"),

		LeafCompression: cfg.Hub.Compression,
	})
	if err != nil {
		return err
	}
	a.leaf = leaf
	a.onUndo(leaf.Shutdown)
	a.client, err = ternsync.Connect(ternsync.ConnConfig{
		Server:      leaf,
		FleetDomain: ternsync.HubDomain,
		Name:        "tern-agent",
		Logger:      logger,
	})
	if err != nil {
		return err
	}
	a.onUndo(a.client.Close)
	// Mirrors are local streams: creating them needs no hub, and they
	// fill in whenever the link is up.
	return a.client.EnsureMirrors(ctx)
}

// HubOptions configure a standalone hub (`tern hub`).
type HubOptions struct {
	// Data holds the hub's JetStream files.
	Data string
	// Listen is the client address publishers and tools connect to.
	Listen string
	// LeafListen is where agents' leaf nodes connect.
	LeafListen string
	// Name is this node's server name; it must differ between the nodes of
	// a cluster. Default: tern-hub.
	Name string
	// ClusterName, ClusterListen and Routes join the node to a cluster.
	ClusterName   string
	ClusterListen string
	Routes        []string
	// AgentPassword and PublisherPassword, when set, make the hub require
	// authentication: agents' leaf nodes as user "agent", with permission
	// to read and to report heartbeats only; publishers' tools as user
	// "publisher".
	AgentPassword     string
	PublisherPassword string
	// LeafCompression is the S2 compression of what the hub sends to
	// agents' leaf nodes: off, fast, better, best, auto or auto-fast;
	// empty: off.
	LeafCompression string
	// Admin is the address of the hub's /healthz, /readyz and /metrics
	// (server.DefaultAdminAddr when empty; "-" for none).
	Admin string
	// Monitor, when set, enables nats-server's own monitoring endpoints
	// (/varz, /connz, /leafz, /jsz) on that address.
	Monitor string
	// MinFree is the free space kept on the data directory's file system:
	// uploads that would go below it are refused with the disk named.
	// Zero: the default of store.min_free, from the file system's size.
	MinFree int64
	Logger  *slog.Logger
}

// RunHub runs a hub with no agent until ctx is done: the NATS server with
// JetStream that publishers push to and agents follow as leaf nodes. With
// routes it is one node of a cluster, and its buckets are replicated on up
// to three nodes. ready is called with the hub once it accepts clients.
func RunHub(ctx context.Context, o HubOptions, ready func(*ternsync.Hub)) error {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg := ternsync.HubConfig{
		Name:       o.Name,
		Dir:        filepath.Join(o.Data, "hub"),
		Listen:     o.Listen,
		LeafListen: o.LeafListen,
		Domain:     ternsync.HubDomain,
		Monitor:    o.Monitor,
		MinFree:    o.MinFree,
		Logger:     logger.With("component", "hub"),

		LeafCompression: o.LeafCompression,

		AgentPassword:     o.AgentPassword,
		PublisherPassword: o.PublisherPassword,
	}
	replicas := 1
	if o.ClusterListen != "" || len(o.Routes) > 0 {
		if o.ClusterName == "" {
			o.ClusterName = "tern"
		}
		cfg.Cluster = &ternsync.Cluster{Name: o.ClusterName, Listen: o.ClusterListen, Routes: o.Routes}
		replicas = min(1+len(o.Routes), 3)
	}
	hub, err := ternsync.StartHub(cfg)
	if err != nil {
		return err
	}
	defer hub.Shutdown()
	c, err := ternsync.Connect(ternsync.ConnConfig{Server: hub, Name: "tern-hub", Password: o.PublisherPassword, Logger: logger})
	if err != nil {
		return err
	}
	defer c.Close()
	var buckets atomic.Bool
	reg := prometheus.NewRegistry()
	registerHubMetrics(reg, hub, c)
	rm := newRolloutMetrics(reg)
	if o.Admin != "-" {
		stop, err := serveHubAdmin(ctx, o.Admin, hub, reg, &buckets, logger)
		if err != nil {
			return err
		}
		defer stop()
	}
	if !ensureBuckets(ctx, c, replicas, logger) {
		return nil
	}
	buckets.Store(true)
	if ready != nil {
		ready(hub)
	}
	rc := &rolloutController{c: c, logger: logger.With("component", "rollout"), now: time.Now, m: rm}
	rc.Run(ctx)
	logger.Info("hub stopping")
	return nil
}

// ControllerOptions configure RunController.
type ControllerOptions struct {
	// Conn says how to reach the hub (any NATS server or cluster with
	// JetStream in the domain ternsync.HubDomain) as a publisher.
	Conn ternsync.ConnConfig
	// Replicas of the buckets the controller creates when they are
	// missing (1 to 5; 0 means 1).
	Replicas int
	// Ready, when set, is called once the buckets exist and the relay
	// runs.
	Ready  func()
	Logger *slog.Logger
}

// RunController does the work a tern hub does besides being a NATS
// server, for a hub that is not one (a NATS cluster of the operator's own),
// until ctx is done: it creates the fleet's buckets when they are missing,
// relays what sites send each other (ternsync.Relay; needed where the hub
// isolates its leaf nodes' interest, harmless elsewhere) and advances
// staged rollouts. Several may run against one hub: every rollout step is
// a compare-and-set, so exactly one makes each, and the relay's calls are
// a queue group.
func RunController(ctx context.Context, o ControllerOptions) error {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c, err := ternsync.Connect(o.Conn)
	if err != nil {
		return err
	}
	defer c.Close()
	logger.Info("controller starting: creating the fleet's buckets where missing", "hub", o.Conn.URL)
	if !ensureBuckets(ctx, c, max(o.Replicas, 1), logger) {
		return nil
	}
	relayConn := o.Conn
	relayConn.Name = "tern-relay"
	relay, err := ternsync.StartRelay(relayConn)
	if err != nil {
		return err
	}
	defer relay.Close()
	if o.Ready != nil {
		o.Ready()
	}
	rc := &rolloutController{c: c, logger: logger.With("component", "rollout"), now: time.Now}
	return rc.Run(ctx)
}

// ensureBuckets creates the fleet's missing buckets, trying again every
// second until it succeeds (true) or ctx ends (false): a cluster elects
// its JetStream leader only once enough peers are up.
func ensureBuckets(ctx context.Context, c *ternsync.Client, replicas int, logger *slog.Logger) bool {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.EnsureBuckets(cctx, replicas)
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		logger.Warn("hub buckets not ready; retrying", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}
