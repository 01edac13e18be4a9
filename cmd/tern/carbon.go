package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

const carbonUsage = `Usage: tern carbon sim [flags]
       tern carbon status [--admin ADDR] [--json]

sim replays carbon-intensity traces (each one a site; jobs arrive at the
first, or where --arrivals says) with a generated or given workload,
through Tern's planner, against run-now (every job at once at its own
site) and an oracle with perfect knowledge, and prints the emissions of
each, the capacity violations and the deadline misses.

status asks a running agent's admin listener for its grid intensity now
and ahead, its queued deferred jobs, and what running them later saved.
`

// cmdCarbon runs the carbon subcommands: sim and status.
func cmdCarbon(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "sim":
			return cmdCarbonSim(ctx, args[1:], stdout, stderr)
		case "status":
			return cmdCarbonStatus(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprint(stderr, carbonUsage)
	return errUsage
}

// readFile opens path and parses it with read, which names it by its base
// name in errors.
func readFile[T any](path string, read func(io.Reader, string) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	return read(f, filepath.Base(path))
}
