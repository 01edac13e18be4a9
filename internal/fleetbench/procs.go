package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"time"

	"github.com/tern-edge/tern/agent"
	"github.com/tern-edge/tern/artifact"
)

// child is a tern process the benchmark started (the hub or one agent),
// or with -inproc an agent running inside the benchmark's own process. Its
// slog text log is read line by line as it comes, which is how the
// benchmark learns, without polling, that an agent is ready or has
// installed a release.
type child struct {
	name   string
	cmd    *exec.Cmd          // nil for an agent in this process
	cancel context.CancelFunc // stops an agent in this process
	done   chan struct{}      // closed when the process (or agent) has exited
	onLine func(line string)

	mu   gosync.Mutex
	tail []string // the last lines of its log, for error messages
}

// benchMemtable is the store memtable size of the benchmark's agents:
// 4 MiB, not the agent's 16 MiB default, which is sized for cache misses
// and would give 100 agents in one process 1.6 GB of memtable arenas
// (store.DefaultMemTableBytes). The fleet figures in docs/FLEET.md were
// measured with it.
const benchMemtable = 4 * artifact.MiB

// tailLines is how much of a child's log an error shows.
const tailLines = 8

// addLine records one line of the child's log and hands it on.
func (c *child) addLine(line string) {
	c.mu.Lock()
	c.tail = append(c.tail, line)
	if len(c.tail) > tailLines {
		c.tail = c.tail[len(c.tail)-tailLines:]
	}
	c.mu.Unlock()
	if c.onLine != nil {
		c.onLine(line)
	}
}

// Write takes whole log lines, as slog's text handler writes them (one
// record per call), so an in-process agent's log is read like a child's.
func (c *child) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		c.addLine(line)
	}
	return len(p), nil
}

func startChild(name, bin string, args []string, stdout io.Writer, onLine func(line string)) (*child, error) {
	c := &child{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{}), onLine: onLine}
	c.cmd.Stdout = stdout
	dieWithParent(c.cmd)
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.addLine(sc.Text())
		}
		// Keep draining whatever the scanner refused (an overlong line),
		// so the child never blocks on a full pipe.
		io.Copy(io.Discard, stderr)
		c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// pid is the child's process ID: the benchmark's own for an agent in this
// process.
func (c *child) pid() int {
	if c.cmd == nil {
		return os.Getpid()
	}
	return c.cmd.Process.Pid
}

// logTail returns the last lines the child logged.
func (c *child) logTail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.tail, "\n")
}

// stop asks the child to shut down gracefully and kills it after grace.
func (c *child) stop(grace time.Duration) {
	select {
	case <-c.done:
		return
	default:
	}
	if c.cmd == nil {
		c.cancel()
		select {
		case <-c.done:
		case <-time.After(grace):
		}
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// hubProc is `tern hub` on loopback ports.
type hubProc struct {
	*child
	clientURL, leafURL string
}

func startHub(ctx context.Context, bin, dir, compression string) (*hubProc, error) {
	pr, pw := io.Pipe()
	args := []string{"hub", "--data", dir, "--listen", "127.0.0.1:0", "--leaf-listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-level", "warn"}
	if compression != "" {
		args = append(args, "--leaf-compression", compression)
	}
	c, err := startChild("hub", bin, args, pw, nil)
	if err != nil {
		return nil, err
	}
	h := &hubProc{child: c}
	go func() { <-c.done; pw.Close() }()
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			// "  publishers:  tern deploy --hub nats://… ./app" and
			// "  agents:      tern agent --hub nats-leaf://… --trust …"
			f := strings.Fields(sc.Text())
			for i := 0; i+1 < len(f); i++ {
				if f[i] != "--hub" {
					continue
				}
				switch {
				case strings.HasPrefix(f[i+1], "nats-leaf://"):
					h.leafURL = f[i+1]
				case strings.HasPrefix(f[i+1], "nats://"):
					h.clientURL = f[i+1]
				}
			}
			if h.leafURL != "" && h.clientURL != "" {
				close(found)
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case <-found:
		return h, nil
	case <-c.done:
		err = fmt.Errorf("hub exited before it was ready:\n%s", c.logTail())
	case <-time.After(30 * time.Second):
		err = fmt.Errorf("hub not ready after 30s:\n%s", c.logTail())
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.stop(5 * time.Second)
	return nil, err
}

// agentProc is one `tern agent`, a leaf node of the hub with its own
// data directory (badger store, leaf JetStream, local CA).
type agentProc struct {
	*child
	data string

	ready chan struct{} // closed once the agent logged "agent ready"
	addr  string        // its public listener, set before ready closes

	// installs maps a release sequence to when the agent installed it,
	// by the agent's own log clock (same machine, same clock).
	mu       gosync.Mutex
	installs map[uint64]time.Time
	// installed is signalled (without blocking) after each install.
	installed chan struct{}
}

// agentArgs are what every agent runs with besides its own directory.
type agentArgs struct {
	bin, config, leafURL, trust string
	compression                 string // empty: the default
	heartbeat                   time.Duration
	inproc                      bool // run in this process, not as `tern agent`
}

func startAgent(ctx context.Context, a agentArgs, dir string, i int) (*agentProc, error) {
	ap := &agentProc{
		data:      dir,
		ready:     make(chan struct{}),
		installs:  map[uint64]time.Time{},
		installed: make(chan struct{}, 1),
	}
	var once gosync.Once
	onLine := func(line string) {
		if !strings.Contains(line, "msg=") {
			return
		}
		kv := parseLogLine(line)
		switch kv["msg"] {
		case "agent ready":
			once.Do(func() { ap.addr = kv["listen"]; close(ap.ready) })
		case "release installed":
			seq, err := strconv.ParseUint(kv["sequence"], 10, 64)
			if err != nil {
				return
			}
			t, err := time.Parse(time.RFC3339Nano, kv["time"])
			if err != nil {
				return
			}
			ap.mu.Lock()
			ap.installs[seq] = t
			ap.mu.Unlock()
			select {
			case ap.installed <- struct{}{}:
			default:
			}
		}
	}
	var c *child
	var err error
	if a.inproc {
		c, err = startInprocAgent(a, dir, i, onLine)
	} else {
		c, err = startChild(fmt.Sprintf("agent %d", i), a.bin, []string{
			"agent", "--config", a.config, "--data", dir, "--hub", a.leafURL, "--trust", a.trust,
			"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--site", fmt.Sprintf("site-%03d", i),
			"--log-level", "info",
		}, nil, onLine)
	}
	if err != nil {
		return nil, err
	}
	ap.child = c
	select {
	case <-ap.ready:
		return ap, nil
	case <-c.done:
		err = fmt.Errorf("agent %d exited before it was ready:\n%s", i, c.logTail())
	case <-time.After(60 * time.Second):
		err = fmt.Errorf("agent %d not ready after 60s:\n%s", i, c.logTail())
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.stop(5 * time.Second)
	return nil, err
}

// installedAt reports when the agent first installed sequence seq or a
// later one: a retried deploy may publish seq+1 with the same module.
func (ap *agentProc) installedAt(seq uint64) (time.Time, bool) {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	var first time.Time
	for s, t := range ap.installs {
		if s >= seq && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	return first, !first.IsZero()
}

// waitInstalled waits until the agent has installed seq, the deadline
// passes or the agent exits.
func (ap *agentProc) waitInstalled(seq uint64, deadline time.Time) (time.Time, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		if t, ok := ap.installedAt(seq); ok {
			return t, nil
		}
		select {
		case <-ap.installed:
		case <-ap.done:
			return time.Time{}, fmt.Errorf("%s exited:\n%s", ap.name, ap.logTail())
		case <-timer.C:
			return time.Time{}, fmt.Errorf("%s: sequence %d not installed in time:\n%s", ap.name, seq, ap.logTail())
		}
	}
}

// parseLogLine splits a slog text line into its keys and values; quoted
// values are unquoted.
func parseLogLine(line string) map[string]string {
	kv := map[string]string{}
	for s := line; s != ""; {
		s = strings.TrimLeft(s, " ")
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			break
		}
		key, rest := s[:eq], s[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
			val, rest = rest[:sp], rest[sp:]
		} else {
			val, rest = rest, ""
		}
		kv[key] = val
		s = rest
	}
	return kv
}

// caPEM reads the agent's local CA certificate.
func (ap *agentProc) caPEM(file string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(ap.data, file))
	if err != nil {
		return nil, fmt.Errorf("%s: CA: %w", ap.name, err)
	}
	if len(b) == 0 {
		return nil, errors.New(ap.name + ": empty CA file")
	}
	return b, nil
}

// startInprocAgent runs agent i inside this process, configured as
// `tern agent` would be with the flags startAgent gives the process: its
// own leaf node, badger store, local CA and listeners, sharing only the Go
// runtime with the others.
func startInprocAgent(a agentArgs, dir string, i int, onLine func(string)) (*child, error) {
	cfg := agent.DefaultConfig()
	cfg.Data = dir
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin = "127.0.0.1:0"
	cfg.Site = fmt.Sprintf("site-%03d", i)
	cfg.Hub.URL = a.leafURL
	if a.compression != "" {
		cfg.Hub.Compression = a.compression
	}
	cfg.Trust.Publishers = []string{a.trust}
	cfg.Heartbeat = artifact.Duration(a.heartbeat)
	cfg.Cache.Memtable = benchMemtable
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent %d: %w", i, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &child{name: fmt.Sprintf("agent %d", i), cancel: cancel, done: make(chan struct{}), onLine: onLine}
	logger := slog.New(slog.NewTextHandler(c, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ag, err := agent.New(ctx, cfg, agent.Options{Logger: logger, Version: "fleetbench"})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("agent %d: %w", i, err)
	}
	go func() {
		defer close(c.done)
		err := ag.Run(ctx, func() { logger.Info("agent ready", "listen", ag.Addr().String()) })
		if err != nil {
			logger.Error("agent stopped", "err", err)
		}
	}()
	return c, nil
}
