package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tern-edge/tern/agent"
	"github.com/tern-edge/tern/jobs"
	"github.com/tern-edge/tern/server"
)

// cmdCarbonStatus prints a running agent's carbon state, read from GET
// /carbon on its admin listener.
func cmdCarbonStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("carbon status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", server.DefaultAdminAddr, "the agent's admin address")
	asJSON := fs.Bool("json", false, "print the agent's JSON as it is")
	hours := fs.Int("hours", 24, "hours of forecast to print")
	if fs.Parse(args) != nil || fs.NArg() != 0 {
		return errUsage
	}
	url := *admin
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+"/carbon", nil)
	if err != nil {
		return fmt.Errorf("carbon status: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("carbon status from %s: %w", *admin, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("carbon status from %s: %w", *admin, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("carbon status from %s: %s: %s", *admin, resp.Status, strings.TrimSpace(string(body)))
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var st agent.CarbonStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("carbon status from %s: %w", *admin, err)
	}
	printCarbonStatus(stdout, st, *hours)
	return nil
}

func printCarbonStatus(w io.Writer, st agent.CarbonStatus, hours int) {
	capacity := "unlimited"
	if st.Capacity > 0 {
		capacity = fmt.Sprint(st.Capacity)
	}
	region := st.Region
	if region == "" {
		region = "(none)"
	}
	fmt.Fprintf(w, "site %s, region %s, capacity %s\n", st.Site, region, capacity)
	if n := st.Now; n != nil {
		fmt.Fprintf(w, "intensity now: %.0f gCO2/kWh (%s, %s, %s)\n", n.GCO2PerKWh, n.Kind, n.Signal, n.Source)
	} else {
		fmt.Fprintln(w, "intensity now: unknown")
	}
	if len(st.Forecast) > 0 {
		fmt.Fprintf(w, "\nforecast (hourly mean, gCO2/kWh, from %s):\n", st.Forecast[0].Source)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, h := range hourly(st.Forecast, hours) {
			fmt.Fprintf(tw, "  %s\t%4.0f\t%s\n", h.start.Format("Mon 15:04 MST"), h.mean, strings.Repeat("█", int(math.Round(h.mean/25))))
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\njobs: %d queued, %d running\n", st.Queued, st.Running)
	if len(st.Next) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  ID\tAPP\tSTARTS\tDEADLINE\tEXPECTED g/kWh\tNOTE")
		for _, j := range st.Next {
			starts, expected, note := "-", "-", j.Reason
			if j.ScheduledAt != nil {
				starts = j.ScheduledAt.Format("Mon 15:04")
			}
			if j.ExpectedIntensity != nil {
				expected = fmt.Sprintf("%.0f", *j.ExpectedIntensity)
			}
			if j.Late {
				note = "late: " + note
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", j.ID[:min(12, len(j.ID))], j.App, starts, j.Deadline.Format("Mon 15:04"), expected, note)
		}
		tw.Flush()
	}
	if len(st.Offloaded) > 0 {
		fmt.Fprintln(w, "\nruns offloaded to other sites (as those sites accounted them):")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "APP\tSITE\tRUNS\tACTUAL g\tRUN-NOW g\tSAVED g\tSAVED\t")
		for _, o := range st.Offloaded {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.3f\t%.3f\t%.3f\t%s\t\n", o.App, o.Site, o.Runs, o.Grams, o.RunNowGrams, o.RunNowGrams-o.Grams, percent(o.RunNowGrams-o.Grams, o.RunNowGrams))
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\naccounted runs (actual beside running at once):")
	if len(st.Apps) == 0 {
		fmt.Fprintln(w, "  none yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "APP\tSITE\tRUNS\tENERGY Wh\tACTUAL g\tRUN-NOW g\tSAVED g\tSAVED\t")
	var total agent.CarbonTotals
	for _, a := range st.Apps {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t\n", a.App, a.Site, a.Invocations, a.EnergyJ/3600, a.Grams, a.RunNowGrams, a.SavedGrams, percent(a.SavedGrams, a.RunNowGrams))
		total.Invocations += a.Invocations
		total.EnergyJ += a.EnergyJ
		total.Grams += a.Grams
		total.RunNowGrams += a.RunNowGrams
		total.SavedGrams += a.SavedGrams
	}
	if len(st.Apps) > 1 {
		fmt.Fprintf(tw, "total\t\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t\n", total.Invocations, total.EnergyJ/3600, total.Grams, total.RunNowGrams, total.SavedGrams, percent(total.SavedGrams, total.RunNowGrams))
	}
	tw.Flush()
}

func percent(part, whole float64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f %%", 100*part/whole)
}

type hourMean struct {
	start time.Time
	mean  float64
}

// hourly averages forecast points of any interval into hours (weighted by
// how much of each hour a point covers), for at most n hours.
func hourly(pts []jobs.Point, n int) []hourMean {
	var out []hourMean
	var sum, weight float64
	var cur time.Time
	flush := func() {
		if weight > 0 && len(out) < n {
			out = append(out, hourMean{cur, sum / weight})
		}
		sum, weight = 0, 0
	}
	for _, p := range pts {
		for t, end := p.Start, p.Start.Add(p.Duration); t.Before(end); {
			h := t.Truncate(time.Hour)
			if !h.Equal(cur) {
				flush()
				cur = h
			}
			next := end
			if h.Add(time.Hour).Before(end) {
				next = h.Add(time.Hour)
			}
			d := next.Sub(t).Hours()
			sum += p.GCO2PerKWh * d
			weight += d
			t = next
		}
	}
	flush()
	return out
}
