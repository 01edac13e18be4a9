// Package sync is everything Tern does over NATS: the embedded hub, the
// publisher's uploads, and the agent's watch that fetches, verifies and
// hands over new releases. It is the only package that imports nats.go and
// nats-server. Import it as ternsync; it shares its name with the standard
// library's sync.
package sync

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// HubConfig configures an embedded hub.
type HubConfig struct {
	// Dir holds JetStream's files; it is created if missing.
	Dir string
	// Listen is the client address, "127.0.0.1:4222" by default. Port 0
	// picks a free port.
	Listen string
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger
}

// Hub is a nats-server with JetStream running inside this process.
type Hub struct {
	ns *server.Server
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
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("hub listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("hub listen address %q: bad port", listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("hub store %s: %w", cfg.Dir, err)
	}
	opts := &server.Options{
		ServerName: "tern-hub",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		// The agent owns signals and shutdown order.
		NoSigs: true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if cfg.Logger != nil {
		ns.SetLoggerV2(natsLogger{cfg.Logger}, false, false, false)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("hub on %s: not ready after 30s", listen)
	}
	return &Hub{ns: ns}, nil
}

// ClientURL is the URL clients connect to.
func (h *Hub) ClientURL() string { return h.ns.ClientURL() }

// Shutdown stops the server and waits until it has stopped.
func (h *Hub) Shutdown() {
	h.ns.Shutdown()
	h.ns.WaitForShutdown()
}

// natsLogger adapts nats-server's logger to slog.
type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(f string, a ...any) { n.l.Debug(fmt.Sprintf(f, a...)) }
func (n natsLogger) Warnf(f string, a ...any)   { n.l.Warn(fmt.Sprintf(f, a...)) }
func (n natsLogger) Fatalf(f string, a ...any)  { n.l.Error(fmt.Sprintf(f, a...)) }
func (n natsLogger) Errorf(f string, a ...any)  { n.l.Error(fmt.Sprintf(f, a...)) }
func (n natsLogger) Debugf(f string, a ...any)  { n.l.Debug(fmt.Sprintf(f, a...)) }
func (n natsLogger) Tracef(f string, a ...any)  {}
