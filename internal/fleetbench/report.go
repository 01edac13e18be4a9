package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// report is everything one run measured.
type report struct {
	o       options
	machine string
	// loads are the machine's load averages when each phase ended.
	loads   []string
	compile compileResult

	startAll  time.Duration
	startEach summary
	// heartbeatsIn is how long after the last agent was ready the hub
	// held every agent's heartbeat.
	heartbeatsIn time.Duration

	hubRSSIdle, hubRSSAgents, hubRSSAfter int64
	hubCPUIdle                            time.Duration // over o.idleWindow, no agents
	cpuWindow                             time.Duration // measured window with agents
	hubCPUAgents, agentsCPUIdle           time.Duration // over cpuWindow
	freshHeartbeats                       int

	rounds     []round
	purges     summary
	purgeShort int // purges that timed out before every agent answered
}

// compileResult is the median time wasmhost takes to load a module.
type compileResult struct{ small, large time.Duration }

// round is one measured deploy.
type round struct {
	size int
	push time.Duration // deploy.Push, upload included
	// installed and served are per agent, from the moment Push returned:
	// the agent's log time of the install, and the first HTTPS answer
	// with the new body.
	installed, served []time.Duration
	fleetCPU, hubCPU  time.Duration // CPU the agents and the hub used
	wall              time.Duration // push start to the last agent serving
	retries           int           // pushes that failed and were retried
	// waited is from the push returning until deploy.Wait, which reads
	// the agents' heartbeats as tern deploy does, reported every agent
	// serving.
	waited time.Duration
}

// summary is a distribution's nearest-rank percentiles.
type summary struct {
	n                  int
	p50, p90, p99, max time.Duration
}

func summarize(ds []time.Duration) summary {
	if len(ds) == 0 {
		return summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(float64(len(s))*p+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return summary{n: len(s), p50: rank(0.50), p90: rank(0.90), p99: rank(0.99), max: s[len(s)-1]}
}

func (s summary) String() string {
	return fmt.Sprintf("p50 %s · p90 %s · p99 %s · max %s (n=%d)", ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max), s.n)
}

// signed summarizes durations that may be negative, by their median and
// extremes.
func signed(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("min %s · p50 %s · max %s (n=%d)", ms(s[0]), ms(s[len(s)/2]), ms(s[len(s)-1]), len(s))
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func pct(cpu, wall time.Duration) string {
	if wall <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(cpu)/float64(wall))
}

// write prints the report as Markdown.
func (r *report) write(w io.Writer) {
	o := r.o
	n := o.agents
	where := "one `tern agent` process each"
	if o.inproc {
		where = "all in one process, each with its own leaf node, store and listeners"
	}
	fmt.Fprintf(w, "## Fleet benchmark: %d agents (%s), %s module\n\n", n, where, o.moduleSize)
	fmt.Fprintf(w, "- machine: %s\n", r.machine)
	if len(r.loads) > 0 {
		fmt.Fprintf(w, "- load average (1, 5, 15 min) after each phase: %s\n", strings.Join(r.loads, "; "))
	}
	fmt.Fprintf(w, "- wasmhost load (compile) of the guest: %s plain, %s padded to %s (median of 5)\n", ms(r.compile.small), ms(r.compile.large), o.moduleSize)
	if r.startEach.n > 0 {
		fmt.Fprintf(w, "- start: %d agents, %d at a time, in %s; each %s; every heartbeat on the hub %s later\n",
			n, o.parallel, r.startAll.Round(time.Millisecond), r.startEach, r.heartbeatsIn.Round(time.Millisecond))
	}

	if len(r.rounds) > 0 {
		var conv, convInst, push, each, eachInst, first, wall, waited, overWait []time.Duration
		var fleetCPU, hubCPU time.Duration
		retries := 0
		for _, rd := range r.rounds {
			retries += rd.retries
			wall = append(wall, rd.wall)
			waited = append(waited, rd.waited)
			overWait = append(overWait, rd.waited-slices.Max(rd.served))
			conv = append(conv, slices.Max(rd.served))
			convInst = append(convInst, slices.Max(rd.installed))
			first = append(first, slices.Min(rd.installed))
			push = append(push, rd.push)
			each = append(each, rd.served...)
			eachInst = append(eachInst, rd.installed...)
			fleetCPU += rd.fleetCPU
			hubCPU += rd.hubCPU
		}
		k := time.Duration(len(r.rounds))
		fmt.Fprintf(w, "\n### Convergence (%d deploys of a %d-byte module after one warm-up)\n\n", len(r.rounds), r.rounds[0].size)
		fmt.Fprintf(w, "| measure | distribution |\n|---|---|\n")
		fmt.Fprintf(w, "| **every agent serves** (push returned → last agent's HTTPS answer has the new body) | %s |\n", summarize(conv))
		fmt.Fprintf(w, "| every agent installed (→ last agent's \"release installed\" log time) | %s |\n", summarize(convInst))
		fmt.Fprintf(w, "| first agent installed | %s |\n", summarize(first))
		fmt.Fprintf(w, "| one agent serves (all agents × deploys) | %s |\n", summarize(each))
		fmt.Fprintf(w, "| one agent installed (all agents × deploys) | %s |\n", summarize(eachInst))
		fmt.Fprintf(w, "| deploy.Push (sign, upload, publish; retries included) | %s |\n", summarize(push))
		fmt.Fprintf(w, "| push started → every agent serves | %s |\n", summarize(wall))
		fmt.Fprintf(w, "| push returned → deploy.Wait reports every agent serving (heartbeats, as tern deploy waits) | %s |\n", summarize(waited))
		fmt.Fprintf(w, "| deploy.Wait's report − last agent's HTTPS answer (what waiting adds; negative: reported first) | %s |\n", signed(overWait))
		if retries > 0 {
			fmt.Fprintf(w, "\n%d of %d pushes failed at first (upload timed out) and were retried.\n", retries, len(r.rounds))
		}
		fmt.Fprintf(w, "\nCPU per deploy: agents %s in all (%s per agent), hub %s.\n",
			(fleetCPU / k).Round(time.Millisecond), ms(fleetCPU/k/time.Duration(n)), (hubCPU / k).Round(time.Millisecond))
		fmt.Fprintf(w, "\n| deploy | push (retries) | first installed | all installed | all serving | agents' CPU | hub CPU |\n|---|---|---|---|---|---|---|\n")
		for i, rd := range r.rounds {
			fmt.Fprintf(w, "| %d | %s (%d) | %s | %s | %s | %s | %s |\n", i+1, ms(rd.push), rd.retries, ms(slices.Min(rd.installed)),
				ms(slices.Max(rd.installed)), ms(slices.Max(rd.served)), rd.fleetCPU.Round(time.Millisecond), rd.hubCPU.Round(time.Millisecond))
		}
	}

	if r.purges.n > 0 {
		fmt.Fprintf(w, "\n### Purge (PublishPurge → acknowledgement by all %d agents)\n\n", n)
		fmt.Fprintf(w, "- %s\n", r.purges)
		if r.purgeShort > 0 {
			fmt.Fprintf(w, "- %d of %d purges timed out (5 s) before every agent answered\n", r.purgeShort, o.purges)
		}
	}

	if r.hubRSSAgents > 0 {
		fmt.Fprintf(w, "\n### Hub cost\n\n")
		fmt.Fprintf(w, "- RSS: %s alone, %s with %d idle agents: **%.0f KiB per agent**", mib(r.hubRSSIdle), mib(r.hubRSSAgents), n,
			float64(r.hubRSSAgents-r.hubRSSIdle)/1024/float64(n))
		if r.hubRSSAfter > 0 {
			fmt.Fprintf(w, " (%s after the deploys and purges)", mib(r.hubRSSAfter))
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "- CPU alone: %s of one core over %s\n", pct(r.hubCPUIdle, o.idleWindow), o.idleWindow)
		if r.cpuWindow > 0 {
			beats := float64(n) * float64(r.cpuWindow) / float64(o.heartbeat)
			fmt.Fprintf(w, "- CPU with %d agents heartbeating every %s: **%s of one core** over %s (%.0f µs per heartbeat, idle share included); %d/%d heartbeats fresh at the end\n",
				n, o.heartbeat, pct(r.hubCPUAgents, r.cpuWindow), r.cpuWindow.Round(time.Second),
				float64(r.hubCPUAgents.Microseconds())/beats, r.freshHeartbeats, n)
			fmt.Fprintf(w, "- the %d idle agents together over the same window: %s of one core (%s each)\n",
				n, pct(r.agentsCPUIdle, r.cpuWindow), pct(r.agentsCPUIdle/time.Duration(n), r.cpuWindow))
		}
	}
}
