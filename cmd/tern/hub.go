package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tern-edge/tern/agent"
	"github.com/tern-edge/tern/artifact"
	ternsync "github.com/tern-edge/tern/sync"
)

func cmdHub(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o agent.HubOptions
	fs.StringVar(&o.Data, "data", ".tern-hub", "directory for the hub's JetStream files")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:4222", "client address for publishers and tools (tern deploy --hub)")
	fs.StringVar(&o.LeafListen, "leaf-listen", "127.0.0.1:7422", "address agents connect to as leaf nodes (tern agent --hub)")
	fs.StringVar(&o.LeafCompression, "leaf-compression", "off", "S2 compression of what the hub sends agents: off, fast (for uplinks where bytes cost), better, best, auto or auto-fast (none up to 10 ms round trip, fast beyond)")
	fs.StringVar(&o.Name, "name", "tern-hub", "server name; unique per cluster node")
	fs.StringVar(&o.ClusterName, "cluster", "", "cluster name, the same on every node (default tern when clustered)")
	fs.StringVar(&o.ClusterListen, "cluster-listen", "", "this node's cluster address, e.g. 0.0.0.0:6222")
	routes := fs.String("routes", "", "the other nodes' cluster URLs, comma-separated (nats-route://h2:6222,…)")
	agentPW := fs.String("agent-password-file", "", "require agents to authenticate (user agent) with the password in this file; agents may then only read and report")
	pubPW := fs.String("publisher-password-file", "", "require publishers to authenticate (user publisher) with the password in this file")
	fs.StringVar(&o.Admin, "admin", "127.0.0.1:9091", "address of the hub's /healthz, /readyz and /metrics; - for none")
	fs.StringVar(&o.Monitor, "monitor", "", "address of nats-server's monitoring endpoints (/varz, /connz, /leafz, /jsz), e.g. 127.0.0.1:8222; default: off")
	minFree := fs.String("min-free", "", `free space the hub keeps on its data directory's file system, e.g. "256MiB"; uploads that would go below it are refused (default: 5% of the file system, between 1MiB and 1GiB)`)
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	if fs.Parse(args) != nil {
		return errUsage
	}
	if *minFree != "" {
		n, err := artifact.ParseSize(*minFree)
		if err != nil || n <= 0 {
			return fmt.Errorf("--min-free %q: want a positive size such as 256MiB", *minFree)
		}
		o.MinFree = int64(n)
	}
	if *routes != "" {
		o.Routes = strings.Split(*routes, ",")
	}
	if (*agentPW == "") != (*pubPW == "") {
		return errors.New("give both --agent-password-file and --publisher-password-file, or neither")
	}
	if *agentPW != "" {
		var err error
		if o.AgentPassword, err = agent.ReadSecret(*agentPW); err != nil {
			return err
		}
		if o.PublisherPassword, err = agent.ReadSecret(*pubPW); err != nil {
			return err
		}
	}
	if err := checkLogFormat(*logFormat); err != nil {
		return err
	}
	o.Logger = newLogger(*logLevel, *logFormat, stderr)
	return agent.RunHub(ctx, o, func(h *ternsync.Hub) {
		fmt.Fprintf(stdout, "Tern hub is up.\n  publishers:  tern deploy --hub %s ./app\n  agents:      tern agent --hub %s --trust KEY.pub\n", h.ClientURL(), h.LeafURL())
		if u := h.MonitorURL(); u != "" {
			fmt.Fprintf(stdout, "  monitor:     %s/varz, /connz, /leafz, /jsz\n", u)
		}
		if u := h.ClusterURL(); u != "" {
			fmt.Fprintf(stdout, "  cluster:     %s\n", u)
		}
	})
}
