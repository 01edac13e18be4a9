package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
	ternsync "github.com/tern-edge/tern/sync"
)

// Exit statuses of deploy and rollback besides 0 (every live agent
// serves), 1 (an error) and 2 (usage).
const (
	exitRefused  = 3 // some agent refused the release
	exitTimedOut = 4 // some live agent did not report it in time
)

// exitError ends a command with a status other than 1.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// waitFlags are how deploy and rollback wait for the fleet.
type waitFlags struct {
	noWait  *bool
	timeout *time.Duration
	asJSON  *bool
}

func (w *waitFlags) register(fs interface {
	Bool(string, bool, string) *bool
	Duration(string, time.Duration, string) *time.Duration
}) {
	w.noWait = fs.Bool("no-wait", false, "return once the release is on the hub, without waiting for agents")
	w.timeout = fs.Duration("timeout", 0, "how long to wait for agents (default: 10s plus two heartbeat intervals of the slowest live agent)")
	w.asJSON = fs.Bool("json", false, "print the outcome as JSON (see docs/CLI.md)")
}

// releaseJSON is a release as deploy and rollback print it with --json.
type releaseJSON struct {
	App       string    `json:"app"`
	Version   string    `json:"version"`
	Sequence  uint64    `json:"sequence"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	Publisher string    `json:"publisher"`
	Expires   time.Time `json:"expires"`
	// From is, for a rollback, the sequence whose module and manifest the
	// release restores.
	From uint64 `json:"from,omitempty"`
}

// agentJSON is one agent's report as deploy and rollback print it.
type agentJSON struct {
	Agent    string  `json:"agent"`
	Site     string  `json:"site"`
	State    string  `json:"state"`
	Version  string  `json:"version,omitempty"`
	Sequence uint64  `json:"sequence,omitempty"`
	Reason   string  `json:"reason,omitempty"`
	Error    string  `json:"error,omitempty"`
	Seconds  float64 `json:"seconds"`
	TimedOut bool    `json:"timed_out,omitempty"`
}

// outcomeJSON is what deploy and rollback print with --json.
type outcomeJSON struct {
	Release releaseJSON `json:"release"`
	// Outcome is "serving", "refused", "timed_out", "published" (with
	// --no-wait or when no agent is live), or for a staged rollout
	// "staged" (--detach), "done" or "failed".
	Outcome string      `json:"outcome"`
	Agents  []agentJSON `json:"agents"`
	// Rollout is the staged rollout's last state, with --rollout.
	Rollout *rolloutJSON `json:"rollout,omitempty"`
}

type rolloutJSON struct {
	State  string `json:"state"`
	Wave   int    `json:"wave"`
	Waves  int    `json:"waves"`
	Reason string `json:"reason,omitempty"`
}

func newReleaseJSON(res deploy.Result, key ed25519.PrivateKey) releaseJSON {
	r := res.Release
	return releaseJSON{App: r.App, Version: r.Manifest.Version, Sequence: r.Sequence, Digest: r.Digest, Size: r.Size,
		Publisher: artifact.KeyID(key.Public().(ed25519.PublicKey)), Expires: r.Expires, From: res.From}
}

// printJSON writes v as indented JSON: the --json shape of every command.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// reportLine is one agent's line while a deploy waits.
func reportLine(r deploy.Report, app string) string {
	site := r.Site
	if site == "" {
		site = r.Agent
	}
	var what string
	switch r.State {
	case deploy.Serving:
		what = fmt.Sprintf("%s %s (seq %d)  %.1f s", app, r.Version, r.Sequence, r.After.Seconds())
	case deploy.Refused:
		what = r.Reason + ": " + r.Error
	case deploy.NotReporting:
		what = "no heartbeat from the agent"
		if r.TimedOut {
			what = fmt.Sprintf("reported nothing of the release in %.1f s", r.After.Seconds())
		}
	}
	return fmt.Sprintf("  %-10s %-14s %s  [agent %s]", site, r.State, what, r.Agent)
}

// awaitFleet waits for the agents to serve or refuse res's release and
// prints what each did; the error carries the exit status.
func awaitFleet(ctx context.Context, c *ternsync.Client, res deploy.Result, key ed25519.PrivateKey, w waitFlags, stdout io.Writer) error {
	r := res.Release
	out := outcomeJSON{Release: newReleaseJSON(res, key), Agents: []agentJSON{}}
	opts := deploy.WaitOptions{App: r.App, Sequence: r.Sequence, Timeout: *w.timeout}
	if !*w.asJSON {
		opts.Report = func(rep deploy.Report) { fmt.Fprintln(stdout, reportLine(rep, r.App)) }
	}
	reps, werr := deploy.Wait(ctx, c, opts)
	if werr != nil && !errors.Is(werr, deploy.ErrWaitTimeout) {
		return werr
	}
	serving, refused, live, timedOut := 0, 0, 0, 0
	var sites []string
	for _, rep := range reps {
		out.Agents = append(out.Agents, agentJSON{Agent: rep.Agent, Site: rep.Site, State: rep.State, Version: rep.Version,
			Sequence: rep.Sequence, Reason: rep.Reason, Error: rep.Error, Seconds: rep.After.Seconds(), TimedOut: rep.TimedOut})
		switch {
		case rep.State == deploy.Serving:
			serving++
			live++
		case rep.State == deploy.Refused:
			refused++
			live++
			sites = append(sites, rep.Site)
		case rep.TimedOut:
			timedOut++
			live++
		}
	}
	var exit error
	switch {
	case refused > 0:
		out.Outcome = "refused"
		exit = &exitError{exitRefused, fmt.Sprintf("%d of %d live agents refused %s@%d (%s); each keeps serving what it had; see tern status",
			refused, live, r.App, r.Sequence, strings.Join(sites, ", "))}
	case timedOut > 0:
		out.Outcome = "timed_out"
		exit = &exitError{exitTimedOut, fmt.Sprintf("%d of %d live agents did not report %s@%d in time; --timeout waits longer, tern status shows the fleet",
			timedOut, live, r.App, r.Sequence)}
	case live == 0:
		out.Outcome = "published"
	default:
		out.Outcome = "serving"
	}
	if *w.asJSON {
		if err := printJSON(stdout, out); err != nil {
			return err
		}
		return exit
	}
	if exit == nil {
		if live == 0 {
			fmt.Fprintf(stdout, "no live agent reports to this hub: %s %s waits there for agents to connect\n", r.App, r.Manifest.Version)
		} else {
			fmt.Fprintf(stdout, "%s %s (sequence %d) serving on %d of %d live agents\n", r.App, r.Manifest.Version, r.Sequence, serving, live)
		}
	}
	return exit
}

// followRollout prints each wave of res's staged rollout as it passes or
// halts, until the rollout ends or ctx does.
func followRollout(ctx context.Context, c *ternsync.Client, res deploy.Result, key ed25519.PrivateKey, w waitFlags, stdout io.Writer) error {
	r := res.Release
	report := func(ro ternsync.Rollout) {
		if *w.asJSON {
			return
		}
		wave := strings.Join(ro.Waves[min(ro.Wave, len(ro.Waves)-1)], ",")
		switch {
		case ro.State == ternsync.RolloutDone:
			fmt.Fprintf(stdout, "  rollout done: every wave serves %s %s\n", r.App, r.Manifest.Version)
		case ro.State == ternsync.RolloutFailed:
			fmt.Fprintf(stdout, "  wave %d/%d (%s) halted: %s; the fleet returned to the release before\n", ro.Wave+1, len(ro.Waves), wave, ro.Reason)
		case !ro.Converged.IsZero():
			fmt.Fprintf(stdout, "  wave %d/%d (%s) serving; healthy for %s before the next\n", ro.Wave+1, len(ro.Waves), wave, ro.Wait)
		default:
			fmt.Fprintf(stdout, "  wave %d/%d (%s) installing\n", ro.Wave+1, len(ro.Waves), wave)
		}
	}
	wctx := ctx
	if *w.timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, *w.timeout)
		defer cancel()
	}
	last, err := deploy.FollowRollout(wctx, c, r.App, r.Sequence, report)
	out := outcomeJSON{Release: newReleaseJSON(res, key), Agents: []agentJSON{}}
	if len(last.Waves) > 0 {
		out.Rollout = &rolloutJSON{State: last.State, Wave: last.Wave, Waves: len(last.Waves), Reason: last.Reason}
	}
	var exit error
	switch {
	case err != nil && ctx.Err() == nil && wctx.Err() != nil:
		out.Outcome = "timed_out"
		exit = &exitError{exitTimedOut, fmt.Sprintf("rollout of %s@%d still at wave %d/%d after --timeout %s; the hub goes on advancing it, tern status shows it",
			r.App, r.Sequence, last.Wave+1, len(last.Waves), *w.timeout)}
	case err != nil:
		return err
	case last.State == ternsync.RolloutFailed:
		out.Outcome = "failed"
		exit = &exitError{exitRefused, fmt.Sprintf("rollout of %s@%d halted at wave %d/%d: %s", r.App, r.Sequence, last.Wave+1, len(last.Waves), last.Reason)}
	default:
		out.Outcome = "done"
	}
	if *w.asJSON {
		if err := printJSON(stdout, out); err != nil {
			return err
		}
	}
	return exit
}

// refusalJSON is one live agent's refusal of an app's current release.
type refusalJSON struct {
	Agent  string `json:"agent"`
	Site   string `json:"site"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// fleetUptake is how far one release has reached the live agents.
type fleetUptake struct {
	serving, live int
	refused       []refusalJSON
}

// uptakeOf counts the live agents of fleet that serve app's release seq
// (or a later one) and those that refused it.
func uptakeOf(fleet []ternsync.Heartbeat, app string, seq uint64, now time.Time) fleetUptake {
	u := fleetUptake{refused: []refusalJSON{}}
	for _, hb := range fleet {
		if !hb.Live(now) {
			continue
		}
		u.live++
		switch r := deploy.Observe(hb, app, seq, now); r.State {
		case deploy.Serving:
			u.serving++
		case deploy.Refused:
			u.refused = append(u.refused, refusalJSON{Agent: r.Agent, Site: r.Site, Reason: r.Reason, Error: r.Error})
		}
	}
	return u
}

// refusedText is "-" or "K (reason, …)".
func (u fleetUptake) refusedText() string {
	if len(u.refused) == 0 {
		return "-"
	}
	var reasons []string
	for _, r := range u.refused {
		if !slices.Contains(reasons, r.Reason) {
			reasons = append(reasons, r.Reason)
		}
	}
	return fmt.Sprintf("%d (%s)", len(u.refused), strings.Join(reasons, ", "))
}
