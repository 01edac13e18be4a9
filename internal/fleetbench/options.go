package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tern-edge/tern/artifact"
)

// options are the benchmark's flags.
type options struct {
	agents     int
	rounds     int
	purges     int
	parallel   int
	moduleSize artifact.Size
	heartbeat  time.Duration
	idleWindow time.Duration
	cpuWindow  time.Duration
	timeout    time.Duration
	settle     time.Duration
	tern       string
	guest      string
	data       string
	clkTck     int
	inproc     bool
	compress   string
	cpuProfile string
	memProfile string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{moduleSize: 1 << 20}
	fs := flag.NewFlagSet("fleetbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.agents, "agents", 100, "number of agents (each a `tern agent` process with its own leaf node and store)")
	fs.IntVar(&o.rounds, "rounds", 10, "measured deploys (after one warm-up deploy)")
	fs.IntVar(&o.purges, "purges", 50, "measured purges (after warm-up)")
	fs.IntVar(&o.parallel, "parallel", 8, "agents started at a time")
	fs.StringVar(&o.compress, "leaf-compression", "", "leaf-link compression of the hub and every agent (off, fast, auto-fast, …; empty: their default)")
	fs.BoolVar(&o.inproc, "inproc", false, "run the agents inside this process (each still with its own leaf node, store, CA and listeners) instead of one `tern agent` process each")
	fs.TextVar(&o.moduleSize, "module-size", artifact.Size(1<<20), "size of the deployed module, e.g. 1MiB")
	fs.DurationVar(&o.heartbeat, "heartbeat", 5*time.Second, "agents' heartbeat interval")
	fs.DurationVar(&o.idleWindow, "idle-window", 10*time.Second, "how long the hub's CPU is measured before any agent connects")
	fs.DurationVar(&o.cpuWindow, "cpu-window", time.Minute, "how long the hub's CPU is measured with every agent connected and heartbeating")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "pause before the hub's memory is read, so connections and mirrors settle")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "how long one deploy may take to converge before the run fails")
	fs.StringVar(&o.tern, "tern", "", "tern binary to run (default: go build ./cmd/tern into the data directory)")
	fs.StringVar(&o.guest, "guest", "guests/hello", "directory of the hello guest the module is built from")
	fs.StringVar(&o.data, "data", "", "directory for every process's data (default: a temporary one, removed at the end)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process over the measured deploys to `file` (with -inproc it covers the agents)")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile of this process after the deploys to `file` (with -inproc it covers the agents)")
	fs.IntVar(&o.clkTck, "clk-tck", 100, "clock ticks per second of /proc/<pid>/stat (getconf CLK_TCK)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var bad []string
	if o.agents < 1 {
		bad = append(bad, fmt.Sprintf("-agents %d: need at least 1", o.agents))
	}
	if o.rounds < 1 {
		bad = append(bad, fmt.Sprintf("-rounds %d: need at least 1", o.rounds))
	}
	if o.purges < 0 || o.parallel < 1 || o.clkTck < 1 {
		bad = append(bad, "-purges must be >= 0, -parallel and -clk-tck >= 1")
	}
	if o.heartbeat < time.Second {
		bad = append(bad, fmt.Sprintf("-heartbeat %s: agents accept at least 1s", o.heartbeat))
	}
	if o.moduleSize > 64<<20 {
		bad = append(bad, fmt.Sprintf("-module-size %s: agents download at most 64MiB by default", o.moduleSize))
	}
	if len(bad) > 0 {
		for _, b := range bad {
			fmt.Fprintln(stderr, b)
		}
		return o, errors.New("bad flags")
	}
	return o, nil
}
