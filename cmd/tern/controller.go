package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/tern-edge/tern/agent"
)

func cmdController(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var h hubFlags
	h.register(fs)
	replicas := fs.Int("replicas", 1, "replicas of the fleet's buckets, where the controller creates them (1 to 5)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tern controller --hub URL [flags]\n\n"+
			"Runs what a tern hub does besides being a NATS server (creates the fleet's\n"+
			"buckets, advances staged rollouts, relays what sites send each other)\n"+
			"against a hub that is a NATS cluster of your own, with JetStream in the\n"+
			"domain \"hub\" and a leaf-node listener.")
		fs.PrintDefaults()
	}
	if fs.Parse(args) != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	if *replicas < 1 || *replicas > 5 {
		return fmt.Errorf("--replicas %d: want 1 to 5", *replicas)
	}
	conn, err := h.config("tern-controller")
	if err != nil {
		return err
	}
	if err := checkLogFormat(*logFormat); err != nil {
		return err
	}
	logger := newLogger(*logLevel, *logFormat, stderr)
	conn.Logger, conn.Retry = logger, true
	return agent.RunController(ctx, agent.ControllerOptions{Conn: conn, Replicas: *replicas, Logger: logger, Ready: func() {
		fmt.Fprintln(stdout, "Tern controller is running: staged rollouts advance, and calls between sites are relayed, while it runs.")
	}})
}
