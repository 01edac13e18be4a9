package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tern-edge/tern/agent"
	"github.com/tern-edge/tern/internal/lograte"
)

// errUsage reports bad flags; the flag package has already said why.
var errUsage = errors.New("usage")

// agentFlags are the flags `up` and `agent` share; each one overrides the
// config file.
type agentFlags struct {
	fs        *flag.FlagSet
	config    string
	data      string
	listen    string
	admin     string
	logLevel  string
	logFormat string
	site      string
	labels    string
}

func newAgentFlags(name string, stderr io.Writer) *agentFlags {
	f := &agentFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.fs.SetOutput(stderr)
	f.fs.StringVar(&f.config, "config", "", "config file (see docs/CONFIG.md)")
	f.fs.StringVar(&f.data, "data", "", "data directory (default ./.tern)")
	f.fs.StringVar(&f.listen, "listen", "", "public address, TCP and UDP (default :8443)")
	f.fs.StringVar(&f.admin, "admin", "", "metrics and health address (default 127.0.0.1:9090)")
	f.fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error")
	f.fs.StringVar(&f.logFormat, "log-format", "", "text or json (default text)")
	f.fs.StringVar(&f.site, "site", "", "site name reported to the fleet (default: host name)")
	f.fs.StringVar(&f.labels, "labels", "", "labels for rollout selectors, e.g. region=eu,tier=pop")
	return f
}

// load builds the config: defaults, then the file, then the flags.
func (f *agentFlags) load() (agent.Config, error) {
	cfg := agent.DefaultConfig()
	if f.config != "" {
		var err error
		if cfg, err = agent.LoadConfig(f.config); err != nil {
			return cfg, err
		}
	}
	f.fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "data":
			cfg.Data = f.data
		case "listen":
			cfg.Listen = f.listen
		case "admin":
			cfg.Admin = f.admin
		case "log-level":
			cfg.LogLevel = f.logLevel
		case "log-format":
			cfg.LogFormat = f.logFormat
		case "site":
			cfg.Site = f.site
		}
	})
	if f.labels != "" {
		labels, err := parseLabels(f.labels)
		if err != nil {
			return cfg, err
		}
		cfg.Labels = labels
	}
	return cfg, cfg.Validate()
}

func newLogger(level, format string, w io.Writer) *slog.Logger {
	l, _ := newLeveledLogger(level, format, w)
	return l
}

// newLeveledLogger returns a logger writing format ("json", or text for
// anything else) and its level, which a reload changes.
func newLeveledLogger(level, format string, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	l, err := agent.ParseLevel(level)
	if err != nil {
		l = slog.LevelInfo
	}
	lv := new(slog.LevelVar)
	lv.Set(l)
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	// Per-request warnings (a trapping guest, a down origin) are bounded
	// per app and reason; the metrics keep the exact counts.
	return slog.New(lograte.New(h, lograte.Options{})), lv
}

// checkLogFormat names a bad --log-format.
func checkLogFormat(format string) error {
	if format != "text" && format != "json" {
		return fmt.Errorf("--log-format %q: want text or json", format)
	}
	return nil
}

// notifyHangup catches SIGHUP from now on, so that a hangup while the
// agent starts is a reload once it runs rather than the end of the process.
func notifyHangup() chan os.Signal {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup
}

// reloadOnHangup re-reads the config with load and applies it to a at
// each SIGHUP on hup until ctx is done. A config that fails to load or
// validate is logged with the reason, and the running one stays.
func reloadOnHangup(ctx context.Context, hup chan os.Signal, a *agent.Agent, load func() (agent.Config, error), logger *slog.Logger) {
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			logger.Info("SIGHUP: reloading the config")
			if err := a.ReloadFrom(load); err != nil {
				logger.Error("config not reloaded; the running one stays", "err", err)
			}
		}
	}()
}

func cmdUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newAgentFlags("up", stderr)
	hubListen := f.fs.String("hub-listen", "", "embedded hub's client address (default 127.0.0.1:4222)")
	leafListen := f.fs.String("leaf-listen", "", "where the embedded hub accepts agents' leaf nodes (default: none)")
	if f.fs.Parse(args) != nil {
		return errUsage
	}
	load := func() (agent.Config, error) {
		cfg, err := f.load()
		if err != nil {
			return cfg, err
		}
		if *hubListen != "" {
			cfg.Hub.Listen = *hubListen
		}
		if *leafListen != "" {
			cfg.Hub.LeafListen = *leafListen
		}
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if cfg.Hub.URL != "" {
		return fmt.Errorf("hub.url is %s, but tern up runs its own hub: use tern agent to follow another", cfg.Hub.URL)
	}
	hup := notifyHangup()
	defer signal.Stop(hup)
	logger, level := newLeveledLogger(cfg.LogLevel, cfg.LogFormat, stderr)
	key, err := agent.EnsureDevKey(cfg.Data)
	if err != nil {
		return err
	}
	a, err := agent.New(ctx, cfg, agent.Options{Logger: logger, Level: level, LoadConfig: load, Version: version, ExtraTrusted: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}})
	if err != nil {
		return err
	}
	reloadOnHangup(ctx, hup, a, load, logger)
	if err := a.DeploySample(ctx, key); err != nil {
		logger.Error("sample app not deployed", "err", err)
	}
	return a.Run(ctx, func() { printBanner(stdout, a, cfg) })
}

func cmdAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newAgentFlags("agent", stderr)
	hub := f.fs.String("hub", "", "the hub's leaf-node URL, e.g. nats-leaf://hub.example.net:7422")
	creds := f.fs.String("creds", "", "NATS credentials file for the leaf connection")
	hubPW := f.fs.String("hub-password-file", "", "password of user agent, for a hub that requires one")
	var trust multiFlag
	f.fs.Var(&trust, "trust", "trusted publisher key (ed25519:… or a .pub file); repeatable")
	if f.fs.Parse(args) != nil {
		return errUsage
	}
	load := func() (agent.Config, error) {
		cfg, err := f.load()
		if err != nil {
			return cfg, err
		}
		if *hub != "" {
			cfg.Hub.URL = *hub
		}
		if *creds != "" {
			cfg.Hub.Creds = *creds
		}
		if *hubPW != "" {
			cfg.Hub.PasswordFile = *hubPW
		}
		for _, t := range trust {
			k, err := readPublicKey(t)
			if err != nil {
				return cfg, err
			}
			cfg.Trust.Publishers = append(cfg.Trust.Publishers, k)
		}
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if cfg.Hub.URL == "" {
		return errors.New("no hub: give --hub or hub.url in the config (tern up runs a hub of its own)")
	}
	hup := notifyHangup()
	defer signal.Stop(hup)
	logger, level := newLeveledLogger(cfg.LogLevel, cfg.LogFormat, stderr)
	a, err := agent.New(ctx, cfg, agent.Options{Logger: logger, Level: level, LoadConfig: load, Version: version})
	if err != nil {
		return err
	}
	reloadOnHangup(ctx, hup, a, load, logger)
	return a.Run(ctx, func() {
		logger.Info("agent ready", "listen", a.Addr().String(), "hub", cfg.Hub.URL, "admin", a.AdminAddr().String())
	})
}

func printBanner(w io.Writer, a *agent.Agent, cfg agent.Config) {
	_, port, _ := net.SplitHostPort(a.Addr().String())
	base := "https://localhost:" + port
	// deploy finds the dev key and the hub under --data, ".tern" unless
	// up was told otherwise.
	dataFlag := ""
	if filepath.Clean(cfg.Data) != ".tern" {
		dataFlag = " --data " + cfg.Data
	}
	fmt.Fprintf(w, `
Tern is up.
  apps (HTTPS, HTTP/2, HTTP/3)  %s/hello
  local CA certificate          %s
  hub                           %s
  metrics                       http://%s/metrics

Try it:
  curl --cacert %s %s/hello

Deploy your own (signed with the dev key in %s; deploy returns once the agent serves it):
  go run ./cmd/tern deploy%s ./guests/echo && curl --cacert %s %s/echo

`, base, a.CAPath(), a.HubURL(), a.AdminAddr(), a.CAPath(), base, cfg.Data, dataFlag, a.CAPath(), base)
}

// readPublicKey accepts a key ("ed25519:…") or a file holding one.
func readPublicKey(s string) (string, error) {
	if strings.HasPrefix(s, "ed25519:") {
		return s, nil
	}
	b, err := os.ReadFile(s)
	if err != nil {
		return "", fmt.Errorf("trusted key: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// parseLabels parses "k=v,k2=v2".
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--labels: %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}
