package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	ternsync "github.com/tern-edge/tern/sync"
)

func cmdPurge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("purge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var h hubFlags
	h.register(fs)
	var urls, prefixes, tags multiFlag
	fs.Var(&urls, "url", "URL to purge (https://host/path?query); repeatable")
	fs.Var(&prefixes, "prefix", "host and path prefix to purge (example.com/static/); repeatable")
	fs.Var(&tags, "tag", "Surrogate-Key / Cache-Tag to purge; repeatable")
	soft := fs.Bool("soft", false, "mark stale (revalidate on next use) instead of deleting")
	wait := fs.Duration("wait", 2*time.Second, "how long to wait for acknowledgements")
	asJSON := fs.Bool("json", false, "print the outcome as JSON (see docs/CLI.md)")
	if fs.Parse(args) != nil {
		return errUsage
	}
	if len(urls)+len(prefixes)+len(tags) == 0 {
		return errors.New("nothing to purge: give --url, --prefix or --tag")
	}
	c, err := h.connect("tern-purge")
	if err != nil {
		return err
	}
	defer c.Close()
	// Agents that reported recently are the ones expected to answer.
	fleet, err := c.Fleet(ctx)
	if err != nil {
		return err
	}
	want := 0
	for _, hb := range fleet {
		if hb.Live(time.Now()) {
			want++
		}
	}
	start := time.Now()
	acks, err := c.PublishPurge(ctx, ternsync.Purge{URLs: urls, Prefixes: prefixes, Tags: tags, Soft: *soft}, want, *wait)
	if err != nil {
		return err
	}
	purged, failed := 0, 0
	out := purgeJSON{Live: want, Acknowledged: len(acks), Agents: []purgeAgentJSON{}}
	for _, a := range acks {
		purged += a.Purged
		out.Agents = append(out.Agents, purgeAgentJSON{Agent: a.Agent, Site: a.Site, Purged: a.Purged, Error: a.Error})
		if a.Error != "" {
			failed++
			if !*asJSON {
				fmt.Fprintf(stderr, "agent %s (site %s): %s\n", a.Agent, a.Site, a.Error)
			}
		}
	}
	out.Purged, out.Failures, out.Seconds = purged, failed, time.Since(start).Seconds()
	if *asJSON {
		if err := printJSON(stdout, out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "purge acknowledged by %d of %d live agents in %s: %d entries, %d failures\n",
			len(acks), want, time.Since(start).Round(time.Millisecond), purged, failed)
	}
	if len(acks) < want || failed > 0 {
		return fmt.Errorf("%d of %d agents did not confirm the purge", want-len(acks)+failed, want)
	}
	return nil
}

// purgeJSON is what tern purge --json prints.
type purgeJSON struct {
	// Live is how many agents were expected to answer; Acknowledged how
	// many did within --wait.
	Live         int              `json:"live"`
	Acknowledged int              `json:"acknowledged"`
	Purged       int              `json:"purged"`
	Failures     int              `json:"failures"`
	Seconds      float64          `json:"seconds"`
	Agents       []purgeAgentJSON `json:"agents"`
}

type purgeAgentJSON struct {
	Agent  string `json:"agent"`
	Site   string `json:"site"`
	Purged int    `json:"purged"`
	Error  string `json:"error,omitempty"`
}
