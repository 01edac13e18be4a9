// Command fleetbench measures Tern's fleet: how fast a deploy converges on
// every agent, how fast a purge is acknowledged by every agent, and what
// idle agents cost the hub in memory and CPU.
//
// It runs one `tern hub` process and N agents, each a leaf node of the hub
// with its own NATS server, connection, badger store and local CA in a
// data directory of its own, all on loopback with ephemeral ports. By
// default each agent is a `tern agent` process; with -inproc the agents run
// inside this process (configured as `tern agent` would configure them),
// so that N agents on a small machine share one Go runtime instead of
// paying N runtimes' idle cost. The hub is always a process of its own, so
// its memory and CPU are read from /proc for it alone.
//
// Convergence is timed from deploy.Push returning to the moment each
// agent serves the new version: the agent logs "release installed" (read
// from its stderr as it is written, so nothing polls while waiting), and
// then an HTTPS GET of the app's route must answer the new version's body.
// scripts/bench-fleet.sh builds and runs it; docs/FLEET.md has results.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses args, runs the benchmark and writes its report to stdout and
// its progress to stderr. It returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	rep, err := bench(ctx, o, stderr)
	if rep != nil {
		rep.write(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "fleetbench:", err)
		return 1
	}
	return 0
}
