package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var h hubFlags
	h.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if fs.Parse(args) != nil {
		return errUsage
	}
	c, err := h.connect("tern-status")
	if err != nil {
		return err
	}
	defer c.Close()
	fleet, err := c.Fleet(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	if *asJSON {
		type row struct {
			Heartbeat any  `json:"heartbeat"`
			Stale     bool `json:"stale"`
			Live      bool `json:"live"`
		}
		rows := []row{}
		for _, hb := range fleet {
			rows = append(rows, row{hb, hb.Stale(now), hb.Live(now)})
		}
		return printJSON(stdout, rows)
	}
	if len(fleet) == 0 {
		fmt.Fprintln(stdout, "no agents have reported to this hub")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tAGENT\tSTATE\tLAST SEEN\tVERSION\tLABELS\tAPPS\tREFUSALS")
	for _, hb := range fleet {
		state := "ok"
		switch {
		case hb.Stale(now):
			state = "STALE"
		case hb.Stopped:
			state = "STOPPED"
		}
		var apps []string
		for _, a := range hb.Apps {
			apps = append(apps, fmt.Sprintf("%s@%s#%d", a.App, a.Version, a.Sequence))
		}
		var labels []string
		for k, v := range hb.Labels {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		refusals := "-"
		if n := len(hb.Refusals); n > 0 {
			r := hb.Refusals[0]
			refusals = fmt.Sprintf("%d (last: %s#%d %s)", n, r.App, r.Sequence, r.Reason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s ago\t%s\t%s\t%s\t%s\n", hb.Site, hb.Agent, state,
			now.Sub(hb.Time).Round(time.Second), hb.Version, strings.Join(labels, ","), strings.Join(apps, " "), refusals)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	rolls, _, err := c.Rollouts(ctx)
	if err != nil || len(rolls) == 0 {
		return nil
	}
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLLOUT\tSTATE\tWAVE\tUPDATED\tREASON")
	apps := make([]string, 0, len(rolls))
	for app := range rolls {
		apps = append(apps, app)
	}
	sort.Strings(apps)
	for _, app := range apps {
		r := rolls[app]
		fmt.Fprintf(tw, "%s\t%s\t%d/%d (%s)\t%s ago\t%s\n", app, r.State, r.Wave+1, len(r.Waves),
			strings.Join(r.Waves[min(r.Wave, len(r.Waves)-1)], ","), now.Sub(r.Updated).Round(time.Second), r.Reason)
	}
	return tw.Flush()
}
