package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
	"github.com/tern-edge/tern/localca"
	ternsync "github.com/tern-edge/tern/sync"
	"github.com/tern-edge/tern/wasmhost"
)

// fleet is the running hub and agents, and what the benchmark uses to
// reach them.
type fleet struct {
	o      options
	logw   io.Writer
	hub    *hubProc
	agents []*agentProc
	pub    *ternsync.Client
	key    ed25519.PrivateKey
	http   *http.Client
	m      artifact.Manifest
	base   []byte
	seq    uint64 // the app's current sequence on the hub
}

func (f *fleet) logf(format string, args ...any) {
	fmt.Fprintf(f.logw, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// bench runs every phase in order and returns what it measured, also
// when a later phase fails.
func bench(ctx context.Context, o options, logw io.Writer) (_ *report, err error) {
	rep := &report{o: o, machine: describeMachine()}
	f := &fleet{o: o, logw: logw}

	m, dir, err := artifact.LoadManifest(o.guest)
	if err != nil {
		return nil, fmt.Errorf("guest: %w", err)
	}
	if f.base, err = os.ReadFile(filepath.Join(dir, m.Wasm)); err != nil {
		return nil, fmt.Errorf("guest: %w", err)
	}
	f.m = m
	if rep.compile, err = compileCost(ctx, f.base, int(o.moduleSize)); err != nil {
		return nil, err
	}
	f.logf("compile: hello %s, %s module %s", rep.compile.small, o.moduleSize, rep.compile.large)

	data := o.data
	if data == "" {
		if data, err = os.MkdirTemp("", "fleetbench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(data)
	}
	if f.o.tern == "" {
		f.o.tern = filepath.Join(data, "tern")
		f.logf("building %s", f.o.tern)
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", f.o.tern, "github.com/tern-edge/tern/cmd/tern").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/tern: %w\n%s", err, out)
		}
	}
	if f.key, err = artifact.GenerateKey(); err != nil {
		return nil, err
	}

	if f.hub, err = startHub(ctx, f.o.tern, filepath.Join(data, "hub"), f.o.compress); err != nil {
		return nil, err
	}
	defer func() { f.hub.stop(10 * time.Second) }()
	defer f.stopAgents()
	if f.pub, err = ternsync.Connect(ternsync.ConnConfig{URL: f.hub.clientURL, Name: "fleetbench"}); err != nil {
		return nil, err
	}
	defer f.pub.Close()

	for _, phase := range []struct {
		name string
		run  func(context.Context, *report) error
	}{
		{"hub alone", f.measureHubAlone},
		{"start", func(ctx context.Context, rep *report) error { return f.startAgents(ctx, data, rep) }},
		{"idle fleet", f.measureHubWithAgents},
		{"deploys", f.converge},
		{"purges", f.purge},
	} {
		err := phase.run(ctx, rep)
		rep.loads = append(rep.loads, phase.name+" "+loadAverage())
		if err != nil {
			return rep, err
		}
	}
	rep.hubRSSAfter, _ = rssBytes(f.hub.pid())
	return rep, nil
}

// compileCost times wasmhost loading (compiling) the plain guest and the
// padded module, to show that the padding costs no compilation.
func compileCost(ctx context.Context, base []byte, size int) (compileResult, error) {
	rt, err := wasmhost.New(ctx, wasmhost.Config{})
	if err != nil {
		return compileResult{}, err
	}
	defer rt.Close(ctx)
	const n = 5
	timeLoad := func(size int) (time.Duration, error) {
		var ds []time.Duration
		for v := range n {
			// A version of its own per load: a new digest, no cache hit.
			wasm, err := buildModule(base, 9000+size%997+v, size)
			if err != nil {
				return 0, err
			}
			start := time.Now()
			app, err := rt.Load(ctx, wasmhost.AppConfig{Name: "probe", Wasm: wasm})
			if err != nil {
				return 0, fmt.Errorf("load %d-byte module: %w", len(wasm), err)
			}
			ds = append(ds, time.Since(start))
			app.Close(ctx)
		}
		slices.Sort(ds)
		return ds[n/2], nil
	}
	var r compileResult
	if r.small, err = timeLoad(0); err != nil {
		return r, err
	}
	r.large, err = timeLoad(size)
	return r, err
}

// measureHubAlone takes the hub's memory and CPU before any agent.
func (f *fleet) measureHubAlone(ctx context.Context, rep *report) error {
	if err := sleep(ctx, f.o.settle/2); err != nil {
		return err
	}
	var err error
	if rep.hubRSSIdle, err = rssBytes(f.hub.pid()); err != nil {
		return err
	}
	f.logf("hub alone: RSS %s; CPU over %s…", mib(rep.hubRSSIdle), f.o.idleWindow)
	rep.hubCPUIdle, err = f.cpuOver(ctx, []int{f.hub.pid()}, f.o.idleWindow)
	return err
}

// startAgents starts the agents, a bounded number at a time, and waits
// until every one has published a heartbeat to the hub.
func (f *fleet) startAgents(ctx context.Context, data string, rep *report) error {
	cfg := filepath.Join(data, "agent.toml")
	toml := fmt.Appendf(nil, "version = 1\nheartbeat = %q\n[cache]\nmemtable = %q\n", f.o.heartbeat.String(), benchMemtable.String())
	if f.o.compress != "" {
		toml = fmt.Appendf(toml, "\n[hub]\ncompression = %q\n", f.o.compress)
	}
	if err := os.WriteFile(cfg, toml, 0o600); err != nil {
		return err
	}
	args := agentArgs{
		bin:         f.o.tern,
		config:      cfg,
		leafURL:     f.hub.leafURL,
		trust:       artifact.FormatPublicKey(f.key.Public().(ed25519.PublicKey)),
		heartbeat:   f.o.heartbeat,
		inproc:      f.o.inproc,
		compression: f.o.compress,
	}
	f.agents = make([]*agentProc, f.o.agents)
	var mu gosync.Mutex
	var times []time.Duration
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.o.parallel)
	for i := range f.agents {
		g.Go(func() error {
			t := time.Now()
			ap, err := startAgent(gctx, args, filepath.Join(data, fmt.Sprintf("agent-%03d", i)), i)
			if err != nil {
				return err
			}
			mu.Lock()
			f.agents[i] = ap
			times = append(times, time.Since(t))
			if len(times)%25 == 0 {
				f.logf("%d agents ready", len(times))
			}
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	rep.startAll = time.Since(start)
	rep.startEach = summarize(times)
	start = time.Now()

	if err := f.waitFor(ctx, "every agent's heartbeat on the hub", time.Minute, func() bool {
		hbs, err := f.pub.Fleet(ctx)
		return err == nil && len(hbs) == len(f.agents)
	}); err != nil {
		return err
	}
	rep.heartbeatsIn = time.Since(start)
	f.logf("%d agents up in %s, all heartbeats on the hub %s later", len(f.agents), rep.startAll.Round(time.Millisecond), rep.heartbeatsIn.Round(time.Millisecond))

	pool := x509.NewCertPool()
	for _, ap := range f.agents {
		pem, err := ap.caPEM(localca.CertFile)
		if err != nil {
			return err
		}
		pool.AppendCertsFromPEM(pem)
	}
	tr := &http.Transport{
		// Every agent's certificate names localhost; its own CA signed it.
		TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "localhost"},
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     5 * time.Minute,
	}
	f.http = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return nil
}

// measureHubWithAgents takes the hub's memory with every agent connected
// and idle, then its CPU while they heartbeat.
func (f *fleet) measureHubWithAgents(ctx context.Context, rep *report) error {
	if err := sleep(ctx, f.o.settle); err != nil {
		return err
	}
	var samples []int64
	for range 3 {
		r, err := rssBytes(f.hub.pid())
		if err != nil {
			return err
		}
		samples = append(samples, r)
		if err := sleep(ctx, f.o.settle/5); err != nil {
			return err
		}
	}
	slices.Sort(samples)
	rep.hubRSSAgents = samples[1]
	f.logf("hub with %d agents: RSS %s; CPU over %s…", len(f.agents), mib(rep.hubRSSAgents), f.o.cpuWindow)

	pids := append([]int{f.hub.pid()}, f.agentPIDs()...)
	before, err := f.ticks(pids)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := sleep(ctx, f.o.cpuWindow); err != nil {
		return err
	}
	after, err := f.ticks(pids)
	if err != nil {
		return err
	}
	rep.cpuWindow = time.Since(start)
	rep.hubCPUAgents = f.tickDur(after[0] - before[0])
	var fleetTicks int64
	for i := 1; i < len(pids); i++ {
		fleetTicks += after[i] - before[i]
	}
	rep.agentsCPUIdle = f.tickDur(fleetTicks)

	hbs, err := f.pub.Fleet(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, hb := range hbs {
		if !hb.Stale(now) && now.Sub(hb.Time) <= 2*f.o.heartbeat {
			rep.freshHeartbeats++
		}
	}
	return nil
}

// converge deploys once to warm up (first TLS connections, first
// install), then o.rounds times, timing each.
func (f *fleet) converge(ctx context.Context, rep *report) error {
	for v := range f.o.rounds + 1 {
		if v == 1 && f.o.cpuProfile != "" {
			stop, err := startCPUProfile(f.o.cpuProfile)
			if err != nil {
				return err
			}
			defer stop()
		}
		r, err := f.deployRound(ctx, v+1)
		if err != nil {
			return fmt.Errorf("deploy %d: %w", v+1, err)
		}
		what := "warm-up"
		if v > 0 {
			what = fmt.Sprintf("round %d", v)
			rep.rounds = append(rep.rounds, r)
		}
		f.logf("deploy %s: push %s, all installed %s, all serving %s, fleet CPU %s",
			what, ms(r.push), ms(slices.Max(r.installed)), ms(slices.Max(r.served)), r.fleetCPU.Round(time.Millisecond))
		// Let the old versions close and the heartbeats go out before
		// the next deploy.
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}
	if f.o.memProfile != "" {
		return writeHeapProfile(f.o.memProfile)
	}
	return nil
}

// writeHeapProfile writes this process's live heap, after a collection,
// to path.
func writeHeapProfile(path string) error {
	out, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	runtime.GC()
	err = pprof.WriteHeapProfile(out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return nil
}

// deployRound pushes version v and waits until every agent serves it.
func (f *fleet) deployRound(ctx context.Context, v int) (round, error) {
	wasm, err := buildModule(f.base, v, int(f.o.moduleSize))
	if err != nil {
		return round{}, err
	}
	body := bodyFor(v)
	m := f.m
	m.Version = fmt.Sprintf("1.0.%d", v)
	seq := f.seq + 1
	n := len(f.agents)
	r := round{size: len(wasm), installed: make([]time.Duration, n), served: make([]time.Duration, n)}

	pids := append(f.agentPIDs(), f.hub.pid())
	before, err := f.ticks(pids)
	if err != nil {
		return r, err
	}

	// The waiters start before the push so none misses its install; they
	// take the time from when the push returns.
	pushed := make(chan struct{})
	var t0 time.Time
	deadline := time.Now().Add(f.o.timeout)
	var g errgroup.Group
	for i, ap := range f.agents {
		g.Go(func() error {
			at, err := ap.waitInstalled(seq, deadline)
			if err != nil {
				return err
			}
			for {
				got, err := f.get(ctx, ap.addr)
				if err == nil && got == body {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s installed sequence %d but serves %q (%v), want %q", ap.name, seq, got, err, body)
				}
				time.Sleep(time.Millisecond)
			}
			servedAt := time.Now()
			<-pushed
			r.installed[i] = at.Sub(t0)
			r.served[i] = servedAt.Sub(t0)
			return nil
		})
	}
	// A push whose upload times out (the hub busy sending the module to
	// every mirror) is retried, as a publisher would, and counted; the
	// push time runs from the first attempt.
	start := time.Now()
	var res deploy.Result
	for attempt := 1; ; attempt++ {
		res, err = deploy.Push(ctx, m, wasm, deploy.Options{Client: f.pub, Key: f.key})
		if err == nil || attempt == 3 || ctx.Err() != nil {
			break
		}
		r.retries++
		f.logf("deploy %d: attempt %d failed after %s: %v", v, attempt, time.Since(start).Round(time.Millisecond), err)
	}
	t0 = time.Now()
	r.push = t0.Sub(start)
	close(pushed)
	if err != nil {
		// The waiters fail at their deadline.
		g.Wait()
		return r, err
	}
	if res.Release.Sequence < seq {
		g.Wait()
		return r, fmt.Errorf("hub gave sequence %d, want %d: is another publisher deploying %s?", res.Release.Sequence, seq, m.Name)
	}
	f.seq = res.Release.Sequence
	// What tern deploy does next: follow the heartbeats until every
	// agent reports the release.
	reps, werr := deploy.Wait(ctx, f.pub, deploy.WaitOptions{App: m.Name, Sequence: res.Release.Sequence, Timeout: f.o.timeout})
	r.waited = time.Since(t0)
	if err := g.Wait(); err != nil {
		return r, err
	}
	if werr != nil {
		return r, werr
	}
	for _, rep := range reps {
		if rep.State != deploy.Serving {
			return r, fmt.Errorf("deploy.Wait: agent %s %s: %s", rep.Agent, rep.State, rep.Error)
		}
	}
	if len(reps) != n {
		return r, fmt.Errorf("deploy.Wait reported %d agents, want %d", len(reps), n)
	}
	after, err := f.ticks(pids)
	if err != nil {
		return r, err
	}
	var fleetTicks int64
	hub := len(pids) - 1
	for i := range hub {
		fleetTicks += after[i] - before[i]
	}
	r.fleetCPU = f.tickDur(fleetTicks)
	r.hubCPU = f.tickDur(after[hub] - before[hub])
	r.wall = t0.Sub(start) + slices.Max(r.served)
	return r, nil
}

// get fetches the app's route from the agent listening on addr.
func (f *fleet) get(ctx context.Context, addr string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/hello", nil)
	if err != nil {
		return "", err
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), nil
}

// purge publishes purges until every agent acknowledges one (interest in
// the purge subject reaches the hub shortly after each agent starts),
// then times o.purges of them.
func (f *fleet) purge(ctx context.Context, rep *report) error {
	if f.o.purges == 0 {
		return nil
	}
	n := len(f.agents)
	once := func() (time.Duration, int, error) {
		start := time.Now()
		acks, err := f.pub.PublishPurge(ctx, ternsync.Purge{URLs: []string{"https://localhost/hello"}}, n, 5*time.Second)
		d := time.Since(start)
		for _, a := range acks {
			if a.Error != "" {
				return d, len(acks), fmt.Errorf("agent %s: purge: %s", a.Agent, a.Error)
			}
		}
		return d, len(acks), err
	}
	if err := f.waitFor(ctx, "every agent to acknowledge a purge", 30*time.Second, func() bool {
		_, got, err := once()
		return err == nil && got == n
	}); err != nil {
		return err
	}
	var ds []time.Duration
	for range f.o.purges {
		d, got, err := once()
		if err != nil {
			return err
		}
		if got != n {
			rep.purgeShort++
			continue
		}
		ds = append(ds, d)
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	rep.purges = summarize(ds)
	f.logf("purge: p50 %s p99 %s (%d of %d without every ack)", ms(rep.purges.p50), ms(rep.purges.p99), rep.purgeShort, f.o.purges)
	return nil
}

// agentPIDs lists the agents' processes, each once: with -inproc that is
// the benchmark's own, whose CPU then includes its HTTPS client.
func (f *fleet) agentPIDs() []int {
	var pids []int
	for _, ap := range f.agents {
		pids = append(pids, ap.pid())
	}
	slices.Sort(pids)
	return slices.Compact(pids)
}

// stopAgents stops every agent at once and waits for them.
func (f *fleet) stopAgents() {
	var wg gosync.WaitGroup
	for _, ap := range f.agents {
		if ap != nil {
			wg.Go(func() { ap.stop(15 * time.Second) })
		}
	}
	wg.Wait()
}

// cpuOver measures the CPU the processes pids use over d.
func (f *fleet) cpuOver(ctx context.Context, pids []int, d time.Duration) (time.Duration, error) {
	before, err := f.ticks(pids)
	if err != nil {
		return 0, err
	}
	if err := sleep(ctx, d); err != nil {
		return 0, err
	}
	after, err := f.ticks(pids)
	if err != nil {
		return 0, err
	}
	var sum int64
	for i := range pids {
		sum += after[i] - before[i]
	}
	return f.tickDur(sum), nil
}

func (f *fleet) ticks(pids []int) ([]int64, error) {
	out := make([]int64, len(pids))
	for i, pid := range pids {
		t, err := cpuTicks(pid)
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}

func (f *fleet) tickDur(t int64) time.Duration {
	return time.Duration(t) * time.Second / time.Duration(f.o.clkTck)
}

// waitFor polls cond every 100ms until it holds or limit passes.
func (f *fleet) waitFor(ctx context.Context, what string, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", limit, what)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// describeMachine names the CPU, its count and the Go version.
func describeMachine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d × %s, %s %s/%s", runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// startCPUProfile starts profiling this process's CPU into path and
// returns the function that stops it and closes the file.
func startCPUProfile(path string) (stop func(), err error) {
	out, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		out.Close()
	}, nil
}
