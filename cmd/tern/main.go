// Command tern is Tern's single binary: the agent, the single-node `up`,
// and the publisher's tools. It only parses flags; the work happens in the
// agent and deploy packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// A second signal while shutting down forces the exit.
		<-ctx.Done()
		stop()
		force := make(chan os.Signal, 1)
		signal.Notify(force, os.Interrupt, syscall.SIGTERM)
		<-force
		fmt.Fprintln(os.Stderr, "tern: second signal, exiting now")
		os.Exit(2)
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Tern runs signed WebAssembly functions at the edge.

Usage:
  tern up          start a single-node Tern: embedded hub, agent, sample app
  tern hub         run a hub (optionally one node of a cluster) for a fleet
  tern controller  advance staged rollouts on a hub that is a NATS cluster of your own
  tern agent       run an agent that follows a hub as a leaf node
  tern deploy      sign and publish an app
  tern apps        list the apps on a hub
  tern purge       drop cached responses on every agent (by URL, prefix or tag)
  tern rollback    make an earlier release of an app current again (signed)
  tern status      list the agents of a fleet, their apps and refusals
  tern new         create an app to start from (--lang go|wat)
  tern keys gen    create a publisher (or root) key
  tern trust       sign the fleet's publisher list with a root key (set, show)
  tern carbon      carbon-aware scheduling (tern carbon status, tern carbon sim)
  tern check       validate a config file or an app manifest
  tern reload      make a running agent re-read its config file (as SIGHUP does)
  tern version     print the version (also tern --version)

Run 'tern help <command>' or 'tern <command> -h' for a command's flags.
`

// run executes one tern command and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"up":         cmdUp,
		"agent":      cmdAgent,
		"deploy":     cmdDeploy,
		"apps":       cmdApps,
		"keys":       cmdKeys,
		"check":      cmdCheck,
		"status":     cmdStatus,
		"hub":        cmdHub,
		"controller": cmdController,
		"carbon":     cmdCarbon,
		"trust":      cmdTrust,
		"purge":      cmdPurge,
		"rollback":   cmdRollback,
		"new":        cmdNew,
		"reload":     cmdReload,
		"version": func(context.Context, []string, io.Writer, io.Writer) error {
			fmt.Fprintln(stdout, "tern", version)
			return nil
		},
	}
	switch args[0] {
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "help":
		if len(args) == 1 {
			fmt.Fprint(stdout, usage)
			return 0
		}
		// tern help CMD [SUB] is tern CMD [SUB] -h.
		return run(ctx, append(append([]string{}, args[1:]...), "-h"), stdout, stderr)
	case "-v", "-version", "--version":
		args[0] = "version"
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tern: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if helpAsked(args[1:]) {
		// Asked for, a command's usage goes to stdout and is no error.
		if err := cmd(ctx, args[1:], stdout, stdout); err != nil && err != errUsage {
			fmt.Fprintf(stderr, "tern %s: %v\n", args[0], err)
			return 1
		}
		return 0
	}
	if err := cmd(ctx, args[1:], stdout, stderr); err != nil {
		if err == errUsage {
			return 2
		}
		var ee *exitError
		if errors.As(err, &ee) {
			fmt.Fprintf(stderr, "tern %s: %s\n", args[0], ee.msg)
			return ee.code
		}
		fmt.Fprintf(stderr, "tern %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// helpAsked reports whether args ask for help (-h, -help or --help
// before any "--").
func helpAsked(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}
