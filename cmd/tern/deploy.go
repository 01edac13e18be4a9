package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tern-edge/tern/agent"
	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
	ternsync "github.com/tern-edge/tern/sync"
)

// hubFlags say how the publisher's tools reach a hub. Without --hub they
// use the hub that `tern up` recorded under --data.
type hubFlags struct {
	hub, creds, nkey, data, passwordFile string
}

func (h *hubFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&h.hub, "hub", "", "hub URL (default: the local hub of tern up, found under --data)")
	fs.StringVar(&h.creds, "creds", "", "NATS credentials file")
	fs.StringVar(&h.nkey, "nkey", "", "NATS nkey seed file")
	fs.StringVar(&h.data, "data", defaultData, "data directory of a local tern up (default: .tern here or in the nearest parent directory)")
	fs.StringVar(&h.passwordFile, "password-file", "", "password of user publisher, for a hub that requires one")
}

func (h *hubFlags) connect(name string) (*ternsync.Client, error) {
	cfg, err := h.config(name)
	if err != nil {
		return nil, err
	}
	c, err := ternsync.Connect(cfg)
	if errors.Is(err, ternsync.ErrAuth) {
		if h.passwordFile == "" && h.creds == "" && h.nkey == "" {
			return nil, fmt.Errorf("%w\nthe hub requires credentials: pass --password-file FILE (the publisher password of tern hub --publisher-password-file), --creds or --nkey", err)
		}
		return nil, fmt.Errorf("%w\ncheck the file given to --password-file, --creds or --nkey", err)
	}
	return c, err
}

// defaultData is --data's default, the directory tern up uses.
const defaultData = ".tern"

// resolveData finds the data directory of a local tern up when --data
// was left at its default: ./.tern, or, as git finds .git, the nearest
// .tern in a parent directory, so that "tern deploy ." works from inside
// an app's directory.
func (h *hubFlags) resolveData() {
	if h.data != defaultData {
		return
	}
	if _, err := os.Stat(defaultData); err == nil {
		return
	}
	dir, err := os.Getwd()
	if err != nil {
		return
	}
	for {
		parent := filepath.Dir(dir)
		if parent == dir {
			return
		}
		dir = parent
		if st, err := os.Stat(filepath.Join(dir, defaultData)); err == nil && st.IsDir() {
			h.data = filepath.Join(dir, defaultData)
			return
		}
	}
}

// config is how to connect to the hub the flags name.
func (h *hubFlags) config(name string) (ternsync.ConnConfig, error) {
	h.resolveData()
	url := h.hub
	if url == "" {
		b, err := os.ReadFile(filepath.Join(h.data, agent.HubURLFile))
		if errors.Is(err, fs.ErrNotExist) {
			return ternsync.ConnConfig{}, fmt.Errorf("no --hub given and no local hub recorded in %s (nor in a .tern of a parent directory): start one with 'tern up', pass --data DIR of a running tern up, or --hub URL", h.data)
		}
		if err != nil {
			return ternsync.ConnConfig{}, err
		}
		url = strings.TrimSpace(string(b))
	}
	var password string
	if h.passwordFile != "" {
		var err error
		if password, err = agent.ReadSecret(h.passwordFile); err != nil {
			return ternsync.ConnConfig{}, err
		}
	}
	return ternsync.ConnConfig{URL: url, CredsFile: h.creds, NKeyFile: h.nkey, Password: password, Name: name}, nil
}

func cmdDeploy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("deploy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var h hubFlags
	h.register(fs)
	keyPath := keyFlag(fs)
	ttl := fs.Duration("ttl", deploy.DefaultTTL, "how long the release stays valid")
	rollout := fs.String("rollout", "", `stage the release in waves, e.g. "site=fra1; region=eu; 50%; *"`)
	waveWait := fs.Duration("wave-wait", 30*time.Second, "with --rollout: how long each wave must stay healthy before the next")
	waveTimeout := fs.Duration("wave-timeout", 10*time.Minute, "with --rollout: how long a wave may take to converge")
	maxErrors := fs.Float64("max-error-rate", 0.05, "with --rollout: share of 5xx answers that fails a wave and rolls it back")
	detach := fs.Bool("detach", false, "with --rollout: return once the rollout is staged, without following its waves")
	var wf waitFlags
	wf.register(fs)
	var trust multiFlag
	supersede := trustFlags(fs, &trust)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tern deploy [flags] APP_DIR\n\nSigns the app in APP_DIR (its tern.toml and module), publishes it to the hub and waits\nuntil every live agent serves or refuses it. Exit status: 0 all serve, 3 some refused,\n4 some did not report in time (--timeout).")
		fs.PrintDefaults()
	}
	key, arg, err := parsePublisherArgs(fs, args, &h, keyPath)
	if err != nil {
		return err
	}
	// Validate locally before touching the network.
	m, _, err := artifact.LoadManifest(arg)
	if err != nil {
		return err
	}
	trusted, err := parseKeys(trust)
	if err != nil {
		return err
	}
	c, err := h.connect("tern-deploy")
	if err != nil {
		return err
	}
	defer c.Close()
	opts := deploy.Options{Client: c, Key: key, TTL: *ttl, Trusted: trusted, Supersede: *supersede}
	if *rollout != "" {
		waves, err := ternsync.ParseWaves(*rollout)
		if err != nil {
			return err
		}
		opts.Rollout = &deploy.RolloutPlan{Waves: waves, Wait: *waveWait, Timeout: *waveTimeout, MaxErrorRate: *maxErrors}
	}
	p := &progress{w: stderr, app: m.Name}
	opts.Progress = p.report
	res, err := deploy.Dir(ctx, arg, opts)
	if err != nil {
		return unverifiedHint(err)
	}
	p.done()
	r := res.Release
	if opts.Rollout != nil {
		if !*wf.asJSON {
			fmt.Fprintf(stdout, "staged %s %s (sequence %d) in %d waves; the hub advances it\n",
				r.App, r.Manifest.Version, r.Sequence, len(opts.Rollout.Waves))
		}
		if *detach || *wf.noWait {
			if *wf.asJSON {
				return printJSON(stdout, outcomeJSON{Release: newReleaseJSON(res, key), Outcome: "staged", Agents: []agentJSON{}})
			}
			fmt.Fprintln(stdout, "watch it with tern status")
			return nil
		}
		return followRollout(ctx, c, res, key, wf, stdout)
	}
	return published(ctx, c, res, key, wf, "published", stdout)
}

// published reports a release the hub took and, unless --no-wait, waits
// for the fleet to serve or refuse it.
func published(ctx context.Context, c *ternsync.Client, res deploy.Result, key ed25519.PrivateKey, wf waitFlags, verb string, stdout io.Writer) error {
	r := res.Release
	if *wf.noWait && *wf.asJSON {
		return printJSON(stdout, outcomeJSON{Release: newReleaseJSON(res, key), Outcome: "published", Agents: []agentJSON{}})
	}
	if !*wf.asJSON {
		what := fmt.Sprintf("%s, %d bytes", r.Digest, r.Size)
		if !r.HasModule() {
			what = "origin"
		}
		if res.From != 0 {
			what += fmt.Sprintf(", restoring sequence %d", res.From)
		}
		fmt.Fprintf(stdout, "%s %s %s (sequence %d, %s), signed by %s, expires %s\n",
			verb, r.App, r.Manifest.Version, r.Sequence, what,
			artifact.KeyID(key.Public().(ed25519.PublicKey)), r.Expires.Format(time.RFC3339))
	}
	if *wf.noWait {
		return nil
	}
	return awaitFleet(ctx, c, res, key, wf, stdout)
}

// progress prints upload progress for modules large enough to wait for.
type progress struct {
	w       io.Writer
	app     string
	shown   bool
	lastPct int64
}

func (p *progress) report(sent, total int64) {
	if total < 1<<20 {
		return
	}
	pct := sent * 100 / total
	if p.shown && pct == p.lastPct {
		return
	}
	p.shown, p.lastPct = true, pct
	fmt.Fprintf(p.w, "\ruploading %s: %3d%% (%d/%d KiB)", p.app, pct, sent>>10, total>>10)
}

func (p *progress) done() {
	if p.shown {
		fmt.Fprintln(p.w)
	}
}

func cmdApps(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("apps", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var h hubFlags
	h.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	history := fs.String("history", "", "list the releases of this app that the hub keeps, each verified")
	var trust multiFlag
	fs.Var(&trust, "trust", "publisher key to verify against (ed25519:… or a .pub file); repeatable; default: the dev key under --data")
	if fs.Parse(args) != nil {
		return errUsage
	}
	trusted, err := parseKeys(trust)
	if err != nil {
		return err
	}
	if len(trust) == 0 {
		h.resolveData()
		if k, err := artifact.ReadPrivateKeyFile(filepath.Join(h.data, agent.DevKeyFile)); err == nil {
			trusted = trusted.With(k.Public().(ed25519.PublicKey))
		}
	}
	c, err := h.connect("tern-apps")
	if err != nil {
		return err
	}
	defer c.Close()
	if *history != "" {
		return showHistory(ctx, c, *history, trusted, *asJSON, stdout)
	}
	apps, err := deploy.List(ctx, c, trusted)
	if err != nil {
		return err
	}
	fleet, err := c.Fleet(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	uptake := func(r artifact.Release) fleetUptake { return uptakeOf(fleet, r.App, r.Sequence, now) }
	if *asJSON {
		type row struct {
			App       string    `json:"app"`
			Version   string    `json:"version"`
			Sequence  uint64    `json:"sequence"`
			Digest    string    `json:"digest"`
			Size      int64     `json:"size"`
			Publisher string    `json:"publisher"`
			Verified  bool      `json:"verified"`
			Expires   time.Time `json:"expires"`
			Routes    []string  `json:"routes"`
			Problem   string    `json:"problem,omitempty"`
			Error     string    `json:"error,omitempty"`
			// Serving of Live agents serve this release or a later one;
			// Refused lists the live agents that refused it.
			Serving int           `json:"serving"`
			Live    int           `json:"live"`
			Refused []refusalJSON `json:"refused"`
		}
		rows := []row{}
		for _, a := range apps {
			u := uptake(a.Release)
			r := row{App: a.Release.App, Version: a.Release.Manifest.Version, Sequence: a.Release.Sequence,
				Digest: a.Release.Digest, Size: a.Release.Size, Publisher: a.Publisher, Verified: a.Verified,
				Expires: a.Release.Expires, Routes: routeStrings(a.Release.Manifest),
				Serving: u.serving, Live: u.live, Refused: u.refused}
			if a.Err != nil {
				r.Error = a.Err.Error()
			}
			if a.Problem != nil {
				r.Problem = a.Problem.Error()
			}
			rows = append(rows, r)
		}
		return printJSON(stdout, rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tVERSION\tSEQ\tSERVING\tREFUSED\tDIGEST\tPUBLISHER\tEXPIRES\tROUTES")
	for _, a := range apps {
		if a.Err != nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\tunreadable: %v\n", a.Release.App, a.Err)
			continue
		}
		u := uptake(a.Release)
		pub := a.Publisher
		if !a.Verified {
			pub += " (unverified: " + artifact.Reason(a.Problem) + ")"
		}
		r := a.Release
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d/%d\t%s\t%s\t%s\t%s\t%s\n", r.App, r.Manifest.Version, r.Sequence, u.serving, u.live, u.refusedText(),
			shortDigest(r.Digest), pub, r.Expires.Format("2006-01-02"), strings.Join(routeStrings(r.Manifest), " "))
	}
	return tw.Flush()
}

// showHistory prints the releases of app the hub keeps, oldest first,
// marking those that do not verify: rollback skips them.
func showHistory(ctx context.Context, c *ternsync.Client, app string, trusted artifact.KeySet, asJSON bool, stdout io.Writer) error {
	hist, err := deploy.History(ctx, c, app, trusted)
	if err != nil {
		return err
	}
	if asJSON {
		type row struct {
			Revision  uint64    `json:"revision"`
			Updated   time.Time `json:"updated"`
			Version   string    `json:"version"`
			Sequence  uint64    `json:"sequence"`
			Digest    string    `json:"digest"`
			Publisher string    `json:"publisher"`
			Verified  bool      `json:"verified"`
			Repeat    bool      `json:"repeat,omitempty"`
			Problem   string    `json:"problem,omitempty"`
		}
		rows := []row{}
		for _, e := range hist {
			r := row{Revision: e.Revision, Updated: e.Updated, Version: e.Release.Manifest.Version, Sequence: e.Release.Sequence,
				Digest: e.Release.Digest, Publisher: e.Publisher, Verified: e.Verified(), Repeat: e.Repeat}
			if e.Err != nil {
				r.Problem = e.Err.Error()
			}
			rows = append(rows, r)
		}
		return printJSON(stdout, rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REV\tSTORED\tVERSION\tSEQ\tDIGEST\tPUBLISHER\tSTATUS")
	for _, e := range hist {
		status := "verified"
		switch {
		case e.Err != nil:
			status = "UNVERIFIED (" + artifact.Reason(e.Err) + "): " + e.Err.Error()
		case e.Repeat:
			status = "verified (repeats the release before)"
		}
		r := e.Release
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\n", e.Revision, e.Updated.UTC().Format(time.RFC3339), r.Manifest.Version,
			r.Sequence, shortDigest(r.Digest), e.Publisher, status)
	}
	return tw.Flush()
}

// trustFlags registers --trust, publisher keys besides the signing key
// that hub state may be signed by, and --supersede.
func trustFlags(fs *flag.FlagSet, trust *multiFlag) *bool {
	fs.Var(trust, "trust", "another publisher key the fleet trusts (ed25519:… or a .pub file): the current release and history must verify against these and --key; repeatable")
	return fs.Bool("supersede", false, "replace a current release on the hub that does not verify, building on the newest one that does")
}

// unverifiedHint adds to an error about an unverifiable current release
// what the publisher can do about it.
func unverifiedHint(err error) error {
	if errors.Is(err, deploy.ErrUnverifiedCurrent) {
		return fmt.Errorf("%w\nnothing was signed; if the release is another publisher's, pass its key with --trust; if it was forged, --supersede replaces it", err)
	}
	return err
}

// parseKeys reads public keys given as ed25519:… or as .pub files.
func parseKeys(in []string) (artifact.KeySet, error) {
	var keys []ed25519.PublicKey
	for _, t := range in {
		s, err := readPublicKey(t)
		if err != nil {
			return artifact.KeySet{}, err
		}
		k, err := artifact.ParsePublicKey(s)
		if err != nil {
			return artifact.KeySet{}, err
		}
		keys = append(keys, k)
	}
	return artifact.NewKeySet(keys...), nil
}

func routeStrings(m artifact.Manifest) []string {
	out := make([]string, 0, len(m.Routes))
	for _, r := range m.Routes {
		p := r.Path
		if p == "" {
			p = "/"
		}
		out = append(out, r.Host+p)
	}
	return out
}

func shortDigest(d string) string {
	if d == "" {
		return "origin" // a release without a module
	}
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

func cmdKeys(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "gen" {
		fmt.Fprintln(stderr, "Usage: tern keys gen --out FILE")
		return errUsage
	}
	fs := flag.NewFlagSet("keys gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "file for the private key; the public key goes to FILE.pub")
	if fs.Parse(args[1:]) != nil {
		return errUsage
	}
	if *out == "" {
		fmt.Fprintln(stderr, "tern keys gen: --out is required")
		return errUsage
	}
	key, err := artifact.GenerateKey()
	if err != nil {
		return err
	}
	if err := agent.WriteKeyPair(*out, key); err != nil {
		return err
	}
	pub := key.Public().(ed25519.PublicKey)
	fmt.Fprintf(stdout, "wrote %s and %s.pub\npublic key %s (id %s): add it to an agent's trust.publishers to accept its releases\n",
		*out, *out, artifact.FormatPublicKey(pub), artifact.KeyID(pub))
	return nil
}

func cmdCheck(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object per file (see docs/CLI.md)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tern check [--json] FILE|APP_DIR...\n\nValidates agent config files and apps' tern.toml (a directory or a file named tern.toml),\nwithout starting anything. Exit status 1 when any of them is invalid.")
		fs.PrintDefaults()
	}
	if fs.Parse(args) != nil {
		return errUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	results := []checkResult{}
	failed := 0
	for _, path := range fs.Args() {
		r := checkOne(path)
		results = append(results, r)
		if r.Error != "" {
			failed++
		}
		if *asJSON {
			continue
		}
		if r.Error != "" {
			if fs.NArg() > 1 {
				fmt.Fprintf(stderr, "%s: %s\n", path, r.Error)
			}
		} else {
			fmt.Fprintln(stdout, r.summary)
		}
	}
	if *asJSON {
		if err := printJSON(stdout, results); err != nil {
			return err
		}
	}
	switch {
	case failed == 0:
		return nil
	case len(results) == 1 && !*asJSON:
		return errors.New(results[0].Error)
	default:
		return fmt.Errorf("%d of %d files are invalid", failed, len(results))
	}
}

// checkResult is what tern check says of one file, as --json prints it.
type checkResult struct {
	Path string `json:"path"`
	// Kind is "app" or "config".
	Kind    string `json:"kind"`
	OK      bool   `json:"ok"`
	App     string `json:"app,omitempty"`
	Version string `json:"version,omitempty"`
	// Digest and Size are the module's; Origin marks an app without one.
	Digest string `json:"digest,omitempty"`
	Size   int    `json:"size,omitempty"`
	Origin bool   `json:"origin,omitempty"`
	Error  string `json:"error,omitempty"`

	summary string
}

// checkOne validates an agent config file or an app manifest.
func checkOne(path string) checkResult {
	r := checkResult{Path: path, Kind: "config"}
	st, err := os.Stat(path)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	if !st.IsDir() && filepath.Base(path) != "tern.toml" {
		if _, err := agent.LoadConfig(path); err != nil {
			r.Error = err.Error()
			return r
		}
		r.OK, r.summary = true, fmt.Sprintf("config %s: ok", path)
		return r
	}
	r.Kind = "app"
	m, dir, err := artifact.LoadManifest(path)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.App, r.Version = m.Name, m.Version
	if m.Origin != nil {
		// An origin app has no module to check.
		r.OK, r.Origin = true, true
		r.summary = fmt.Sprintf("app %s %s: ok (origin, %d upstreams)", m.Name, m.Version, len(m.Origin.Upstreams))
		return r
	}
	wasm, err := os.ReadFile(filepath.Join(dir, m.Wasm))
	if err != nil {
		r.Error = fmt.Sprintf("app %s: %v", m.Name, err)
		return r
	}
	if err := artifact.CheckWasm(wasm); err != nil {
		r.Error = fmt.Sprintf("app %s: %s: %v", m.Name, m.Wasm, err)
		return r
	}
	r.OK, r.Digest, r.Size = true, artifact.Digest(wasm), len(wasm)
	r.summary = fmt.Sprintf("app %s %s: ok (%s, %d bytes)", m.Name, m.Version, r.Digest, len(wasm))
	return r
}

func cmdRollback(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rollback", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var h hubFlags
	h.register(fs)
	keyPath := keyFlag(fs)
	to := fs.Uint64("to", 0, "sequence to return to (default: the release before the current one)")
	var wf waitFlags
	wf.register(fs)
	ttl := fs.Duration("ttl", deploy.DefaultTTL, "how long the rollback release stays valid")
	var trust multiFlag
	supersede := trustFlags(fs, &trust)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tern rollback [flags] APP\n\nSigns a new release of APP that restores an earlier one (module and manifest), so agents move\nback to it, and waits for them as deploy does. Default: the release before the current one.")
		fs.PrintDefaults()
	}
	key, arg, err := parsePublisherArgs(fs, args, &h, keyPath)
	if err != nil {
		return err
	}
	trusted, err := parseKeys(trust)
	if err != nil {
		return err
	}
	c, err := h.connect("tern-rollback")
	if err != nil {
		return err
	}
	defer c.Close()
	res, err := deploy.Rollback(ctx, arg, *to, deploy.Options{Client: c, Key: key, TTL: *ttl, Trusted: trusted, Supersede: *supersede})
	if errors.Is(err, deploy.ErrNoPrevious) {
		return fmt.Errorf("%w\n'tern apps --history %s' lists the releases the hub keeps; --to SEQ returns to one of them", err, arg)
	}
	if err != nil {
		return unverifiedHint(err)
	}
	return published(ctx, c, res, key, wf, "rolled back", stdout)
}

func keyFlag(fs *flag.FlagSet) *string {
	return fs.String("key", "", "publisher key (default: the dev key of tern up under --data)")
}

// parsePublisherArgs parses the flags of a command that takes one argument
// and signs with a publisher key, and reads the key: --key, or the dev key
// of tern up under --data.
func parsePublisherArgs(fs *flag.FlagSet, args []string, h *hubFlags, keyPath *string) (ed25519.PrivateKey, string, error) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, "", errUsage
	}
	if len(pos) != 1 {
		fs.Usage()
		return nil, "", errUsage
	}
	if *keyPath == "" {
		h.resolveData()
		*keyPath = filepath.Join(h.data, agent.DevKeyFile)
	}
	key, err := artifact.ReadPrivateKeyFile(*keyPath)
	return key, pos[0], err
}

// parseInterspersed parses flags before and after the positional
// arguments ("tern rollback hello --to 3"), as users of other tools
// expect, and returns the positional ones; "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}
