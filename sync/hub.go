// Package sync is everything Tern does over NATS: the embedded hub, the
// publisher's uploads, and the agent's watch that fetches, verifies and
// hands over new releases. It is the only package that imports nats.go and
// nats-server. Import it as ternsync; it shares its name with the standard
// library's sync.
package sync

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// HubConfig configures an embedded nats-server: a hub, or an agent's leaf
// node.
type HubConfig struct {
	// Name identifies the server among its peers.
	Name string
	// Dir holds JetStream's files; it is created if missing.
	Dir string
	// Listen is the client address, "127.0.0.1:4222" by default. Port 0
	// picks a free port. "-" listens nowhere: only in-process clients.
	Listen string
	// LeafListen, when set, accepts leaf-node connections from agents
	// there (port 0 picks a free port).
	LeafListen string
	// Domain is the server's JetStream domain; a hub uses HubDomain, each
	// leaf a domain of its own.
	Domain string
	// Upstream, when set, makes this server a leaf node of that hub.
	Upstream *Upstream
	// LeafCompression is the S2 compression of what this server sends over
	// leaf-node links, both those it accepts and its upstream: "off",
	// "fast", "better", "best", "auto" (nats-server's level by round-trip
	// time) or "auto-fast" (none up to 10 ms, fast beyond). Empty means
	// "off". See leafCompression.
	LeafCompression string
	// Cluster, when set, makes this server one node of a clustered hub.
	Cluster *Cluster
	// AgentPassword, when set, makes leaf-node connections authenticate as
	// user "agent" with it; they get the agent permissions (AgentDeny):
	// they read everything and report heartbeats, but cannot publish
	// releases, modules, rollouts, trust lists or purges.
	AgentPassword string
	// PublisherPassword, when set, makes client connections authenticate
	// as user "publisher" with it: the role that deploys.
	PublisherPassword string
	// MinFree is the free space kept on Dir's file system: uploads that
	// would go below it are refused before they start (DiskSubject), and
	// JetStream, stuck after a failed write, is restarted once this much
	// is free again. 0 means disk.DefaultReserve of the file system.
	MinFree int64
	// Monitor, when set, is the address of nats-server's own HTTP
	// monitoring endpoints (/varz, /connz, /leafz, /jsz, /healthz…),
	// served by the server itself (port 0 picks a free port). Keep it on
	// loopback: they describe every connection.
	Monitor string
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger
}

// Upstream is the hub a leaf node connects to.
type Upstream struct {
	// URL is the hub's leaf-node URL, e.g. nats-leaf://hub:7422, or
	// several (one per node of a clustered hub) separated by commas.
	URL string
	// Creds is a NATS credentials file for the leaf connection.
	Creds string
}

// Cluster joins a hub node to its peers: a NATS cluster with JetStream
// replicas, so the hub survives the loss of a node.
type Cluster struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// Listen is this node's cluster address (port 0 picks a free port).
	Listen string
	// Routes are the other nodes' cluster URLs, e.g. nats-route://h2:6222.
	Routes []string
}

// Users of an authenticating hub.
const (
	// AgentUser is the user agents' leaf nodes connect as.
	AgentUser = "agent"
	// PublisherUser is the user publishers' tools connect as.
	PublisherUser = "publisher"
)

// AgentDeny lists what agents may not publish to the hub: every way of
// writing a release, a module, a rollout or a trust list (direct subjects,
// and the same through the hub's JetStream domain), stream management,
// and fleet-wide purges. What remains is reading (mirrors pull through
// consumers) and writing heartbeats to the fleet bucket.
var AgentDeny = []string{
	"$KV." + AppsBucket + ".>", "$KV." + TrustBucket + ".>", "$KV." + RolloutsBucket + ".>",
	"$O." + ArtifactsBucket + ".>",
	"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.DELETE.>",
	"$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>", "$JS.API.STREAM.RESTORE.>",
	"$JS." + HubDomain + ".API.STREAM.CREATE.>", "$JS." + HubDomain + ".API.STREAM.UPDATE.>",
	"$JS." + HubDomain + ".API.STREAM.DELETE.>", "$JS." + HubDomain + ".API.STREAM.PURGE.>",
	"$JS." + HubDomain + ".API.STREAM.MSG.DELETE.>", "$JS." + HubDomain + ".API.STREAM.RESTORE.>",
	"$JS." + HubDomain + ".API.$KV." + AppsBucket + ".>", "$JS." + HubDomain + ".API.$KV." + TrustBucket + ".>",
	"$JS." + HubDomain + ".API.$KV." + RolloutsBucket + ".>", "$JS." + HubDomain + ".API.$O." + ArtifactsBucket + ".>",
	PurgeSubject,
}

// HubDomain is the JetStream domain of the hub. Leaf agents reach the
// hub's buckets through it.
const HubDomain = "hub"

// Hub is a nats-server with JetStream running inside this process.
type Hub struct {
	ns    *server.Server
	opts  *server.Options // the server writes chosen ports back here
	relay *Relay          // when the hub accepts leaf nodes (see Relay)
	link  *link           // a leaf node's hub connection coming up
	guard *guard          // disk status and healing (disk.go)
}

// DefaultHubListen is the embedded hub's default client address: loopback
// only, so a development hub is never reachable from the network.
const DefaultHubListen = "127.0.0.1:4222"

// StartHub starts an embedded nats-server with JetStream stored under
// cfg.Dir and waits until it accepts connections.
func StartHub(cfg HubConfig) (*Hub, error) {
	listen := cfg.Listen
	if listen == "" {
		listen = DefaultHubListen
	}
	name := cfg.Name
	if name == "" {
		name = "tern-hub"
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("hub store %s: %w", cfg.Dir, err)
	}
	opts := &server.Options{
		ServerName:      name,
		JetStream:       true,
		JetStreamDomain: cfg.Domain,
		StoreDir:        cfg.Dir,
		// The agent owns signals and shutdown order.
		NoSigs: true,
	}
	if listen == "-" {
		opts.DontListen = true
	} else {
		host, port, err := splitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("hub listen address: %w", err)
		}
		opts.Host, opts.Port = host, port
	}
	if cfg.Monitor != "" {
		host, port, err := splitHostPort(cfg.Monitor)
		if err != nil {
			return nil, fmt.Errorf("hub monitor address: %w", err)
		}
		opts.HTTPHost, opts.HTTPPort = host, port
	}
	compression, err := leafCompression(cfg.LeafCompression)
	if err != nil {
		return nil, err
	}
	opts.LeafNode.Compression = compression
	if cfg.LeafListen != "" {
		host, port, err := splitHostPort(cfg.LeafListen)
		if err != nil {
			return nil, fmt.Errorf("hub leaf-node address: %w", err)
		}
		opts.LeafNode.Host, opts.LeafNode.Port = host, port
		// Leaves learn the hub's interest only, not each other's; the
		// relay carries what sites send each other (see Relay).
		opts.LeafNode.IsolateLeafnodeInterest = true
	}
	if cl := cfg.Cluster; cl != nil {
		host, port, err := splitHostPort(cl.Listen)
		if err != nil {
			return nil, fmt.Errorf("hub cluster address: %w", err)
		}
		opts.Cluster.Name, opts.Cluster.Host, opts.Cluster.Port = cl.Name, host, port
		for _, r := range cl.Routes {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("hub cluster route %q: not a URL", r)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	if (cfg.AgentPassword == "") != (cfg.PublisherPassword == "") {
		return nil, errors.New("hub: set both the agent and the publisher password, or neither")
	}
	if cfg.AgentPassword != "" {
		// Users of the server itself, not of its leaf-node listener:
		// nats-server applies permissions only to the former, and the
		// connection type keeps each role on its own door.
		opts.Users = []*server.User{{
			Username:               PublisherUser,
			Password:               cfg.PublisherPassword,
			AllowedConnectionTypes: map[string]struct{}{"STANDARD": {}, "IN_PROCESS": {}},
		}, {
			Username: AgentUser,
			Password: cfg.AgentPassword,
			Permissions: &server.Permissions{Publish: &server.SubjectPermission{Deny: AgentDeny},
				// Only the hub answers how much room it has.
				Subscribe: &server.SubjectPermission{Deny: []string{DiskSubject}}},
			AllowedConnectionTypes: map[string]struct{}{"LEAFNODE": {}},
		}}
	}
	if up := cfg.Upstream; up != nil {
		var urls []*url.URL
		for _, s := range strings.Split(up.URL, ",") {
			u, err := url.Parse(strings.TrimSpace(s))
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("hub url %q: not a URL", s)
			}
			urls = append(urls, u)
		}
		opts.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: urls, Credentials: up.Creds,
			Compression: compression}}
		// Reconnect quickly: a gateway whose uplink returns should
		// converge within seconds.
		opts.LeafNode.ReconnectInterval = time.Second
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	var up *link
	if cfg.Upstream != nil {
		up = newLink()
	}
	if cfg.Logger != nil || up != nil {
		l := cfg.Logger
		if l == nil {
			l = slog.New(slog.DiscardHandler)
		}
		ns.SetLoggerV2(natsLogger{l: l, link: up}, false, false, false)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("hub on %s: not ready after 30s", listen)
	}
	h := &Hub{ns: ns, opts: opts, link: up}
	if cfg.LeafListen != "" {
		if h.relay, err = StartRelay(ConnConfig{Server: h, Password: cfg.PublisherPassword}); err != nil {
			ns.Shutdown()
			return nil, err
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &guard{ns: ns, dir: cfg.Dir, reserve: cfg.MinFree, logger: logger, heals: cfg.Cluster == nil}
	var nc *nats.Conn
	if cfg.Upstream == nil {
		// A leaf node answers nothing: its answer would reach the hub.
		c, err := Connect(ConnConfig{Server: h, Password: cfg.PublisherPassword, Name: "tern-disk"})
		if err != nil {
			h.Shutdown()
			return nil, fmt.Errorf("hub disk service: %w", err)
		}
		nc = c.nc
	}
	if err := g.start(nc); err != nil {
		h.Shutdown()
		return nil, err
	}
	h.guard = g
	return h, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// ClientURL is the URL clients connect to.
func (h *Hub) ClientURL() string { return h.ns.ClientURL() }

// LeafURL is the URL leaf nodes connect to, or "" when the hub accepts none.
func (h *Hub) LeafURL() string {
	if h.opts.LeafNode.Port <= 0 {
		return ""
	}
	return "nats-leaf://" + net.JoinHostPort(h.opts.LeafNode.Host, strconv.Itoa(h.opts.LeafNode.Port))
}

// ClusterURL is the URL peers route to, or "" when not clustered.
func (h *Hub) ClusterURL() string {
	if h.opts.Cluster.Port <= 0 {
		return ""
	}
	return "nats-route://" + net.JoinHostPort(h.opts.Cluster.Host, strconv.Itoa(h.opts.Cluster.Port))
}

// MonitorURL is the base URL of nats-server's monitoring endpoints, or ""
// when they are off.
func (h *Hub) MonitorURL() string {
	a := h.ns.MonitorAddr()
	if a == nil {
		return ""
	}
	return "http://" + a.String()
}

// Ready returns nil when the server accepts clients and JetStream is
// healthy (nats-server's own health check), and otherwise why not.
func (h *Hub) Ready() error {
	if !h.ns.Running() {
		return errors.New("nats server not running")
	}
	if st := h.ns.Healthz(nil); st.Status != "ok" {
		return fmt.Errorf("nats server: %s", st.Error)
	}
	return nil
}

// LeafConnected reports whether this leaf node is connected to its hub.
func (h *Hub) LeafConnected() bool { return h.ns.NumLeafNodes() > 0 }

// Leafs returns how many leaf nodes (agents, on a hub) are connected.
func (h *Hub) Leafs() int { return h.ns.NumLeafNodes() }

// SubscriptionChanges returns how many subscriptions this server has
// added and removed since it started, over all accounts. A hub announces
// every change to every leaf node, so a fleet at rest should make none.
func (h *Hub) SubscriptionChanges() (uint64, error) {
	sz, err := h.ns.Subsz(nil)
	if err != nil {
		return 0, fmt.Errorf("hub subscriptions: %w", err)
	}
	return sz.NumInserts + sz.NumRemoves, nil
}

// Shutdown stops the server and waits until it has stopped.
func (h *Hub) Shutdown() {
	if h.guard != nil {
		h.guard.close()
	}
	if h.relay != nil {
		h.relay.Close()
	}
	h.ns.Shutdown()
	h.ns.WaitForShutdown()
}

// natsLogger adapts nats-server's logger to slog, and tells link when a
// leaf node's hub connection comes up.
type natsLogger struct {
	l    *slog.Logger
	link *link
}

func (n natsLogger) Noticef(f string, a ...any) {
	msg := fmt.Sprintf(f, a...)
	n.link.noteLog(msg)
	n.l.Debug(msg)
}
func (n natsLogger) Warnf(f string, a ...any)  { n.l.Warn(fmt.Sprintf(f, a...)) }
func (n natsLogger) Fatalf(f string, a ...any) { n.l.Error(fmt.Sprintf(f, a...)) }
func (n natsLogger) Errorf(f string, a ...any) { n.l.Error(fmt.Sprintf(f, a...)) }
func (n natsLogger) Debugf(f string, a ...any) { n.l.Debug(fmt.Sprintf(f, a...)) }
func (n natsLogger) Tracef(f string, a ...any) {}

// Leaf-link compression modes a configuration may name.
var compressionModes = map[string]server.CompressionOpts{
	"off":    {Mode: server.CompressionOff},
	"fast":   {Mode: server.CompressionS2Fast},
	"better": {Mode: server.CompressionS2Better},
	"best":   {Mode: server.CompressionS2Best},
	"auto":   {Mode: server.CompressionS2Auto},
	// nats-server's auto mode with two levels: uncompressed up to the
	// first round-trip time, S2 fast up to the second and beyond it.
	"auto-fast": {Mode: server.CompressionS2Auto, RTTThresholds: []time.Duration{10 * time.Millisecond, 24 * time.Hour}},
}

// CheckCompression reports whether mode names a leaf-link compression
// mode: off, fast, better, best, auto or auto-fast (empty means off).
func CheckCompression(mode string) error {
	_, err := leafCompression(mode)
	return err
}

// leafCompression maps a configured compression mode to nats-server's.
//
// Tern's default is "off". nats-server's auto modes frame every message in
// S2 even while they choose not to compress (checksummed uncompressed
// blocks), with S2 buffers of their own: with 100 agents in one process
// that was 4 MB of each agent's heap, 0.45 MiB of hub memory per idle
// agent, 500 MiB more after ten 1 MiB deploys, and slower deploys
// (docs/FLEET.md). Over a LAN or a data centre, compression saves no time
// anyway. "fast" is for uplinks where bytes cost (cellular gateways, thin
// WAN links): it compresses wasm modules well for little CPU and passes
// incompressible data almost for free. "auto-fast" is nats-server's auto
// mode limited to none up to a 10 ms round trip and fast beyond;
// nats-server's own "auto" climbs to "better" and "best" as the round trip
// grows, so a saturated uplink or a busy gateway gets the most expensive
// level exactly when it can least afford it.
func leafCompression(mode string) (server.CompressionOpts, error) {
	if mode == "" {
		mode = "off"
	}
	m, ok := compressionModes[mode]
	if !ok {
		return server.CompressionOpts{}, fmt.Errorf("leaf compression %q: want off, fast, better, best, auto or auto-fast", mode)
	}
	// A copy: nats-server normalizes the options it is given in place.
	m.RTTThresholds = slices.Clone(m.RTTThresholds)
	return m, nil
}
