package agent

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/cache"
	ternsync "github.com/tern-edge/tern/sync"
)

// ConfigVersion is the config file format this agent reads.
const ConfigVersion = 1

// Config is an agent's configuration: the documented file (see
// docs/CONFIG.md), then flags on top. Zero fields take the defaults of
// DefaultConfig.
type Config struct {
	// Version is the file format version; it must be ConfigVersion.
	Version int `toml:"version"`
	// Data is the directory for all local state: the store, the local CA,
	// the compile cache and, for `tern up`, the embedded hub.
	Data string `toml:"data"`
	// Listen is the public address, TCP (HTTPS) and UDP (HTTP/3).
	Listen string `toml:"listen"`
	// Admin is the address of the metrics and health endpoint.
	Admin string `toml:"admin"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// LogFormat is text (key=value lines) or json (one object a line).
	LogFormat string `toml:"log_format"`
	// MaxArtifact caps the size of a module the agent downloads.
	MaxArtifact artifact.Size `toml:"max_artifact"`
	// AllowedDirs lists the host directories (and their subdirectories)
	// that apps may be granted read-only access to.
	AllowedDirs []string `toml:"allowed_dirs"`
	// Site names where the agent runs (a PoP, a gateway); agents of one
	// site share it. Default: the host name.
	Site string `toml:"site"`
	// Labels describe the agent for rollout selectors (region=eu, tier=pop).
	Labels map[string]string `toml:"labels"`
	// Expired says what to do with an installed release past its expiry:
	// "serve" it (default: availability first, and it is reported in
	// heartbeats) or "refuse" it (stop serving until a fresh release comes).
	Expired string `toml:"expired"`
	// GCPercent is the Go garbage collector's target (GOGC). Every request
	// allocates a fresh wasm instance, so collecting less often buys
	// throughput; 0 means DefaultGCPercent. The GOGC environment variable,
	// when set, wins.
	GCPercent int `toml:"gc_percent"`
	// MemoryLimit is a soft limit on the agent's memory (GOMEMLIMIT): the
	// collector works harder as it is approached. 0 means
	// DefaultMemoryShare of the memory available to the process (its
	// cgroup's limit, else the machine's). The GOMEMLIMIT environment
	// variable, when set, wins ("off" for none).
	MemoryLimit artifact.Size `toml:"memory_limit"`
	// Heartbeat is how often the agent reports its state to the hub.
	Heartbeat artifact.Duration `toml:"heartbeat"`
	// Store configures the agent's local state on disk (agent/disk.go).
	Store StoreConfig `toml:"store"`
	// Cache configures the HTTP cache in front of Origins.
	Cache CacheConfig `toml:"cache"`
	// Origins are upstream servers the agent fronts as a CDN cache.
	Origins []OriginConfig `toml:"origins"`
	Hub     HubConfig      `toml:"hub"`
	Trust   TrustConfig    `toml:"trust"`
	TLS     TLSConfig      `toml:"tls"`
	// Carbon configures grid intensity and deferred jobs (agent/carbon.go).
	Carbon CarbonConfig `toml:"carbon"`
	// GPU configures inference for tern_ai (agent/gpu.go).
	GPU GPUConfig `toml:"gpu"`
	// ACME configures automatic certificates (agent/tls.go).
	ACME ACMEConfig `toml:"acme"`
	// Limits bound the public listeners (agent/tls.go).
	Limits LimitsConfig `toml:"limits"`
	// Compile bounds what compiling a module may cost (agent/compile.go).
	Compile CompileConfig `toml:"compile"`
}

// HubConfig says where the agent's hub is.
type HubConfig struct {
	// URL is the leaf-node URL of the hub to follow
	// (nats-leaf://hub:7422). Empty means embedded: the agent runs the hub
	// itself (`tern up`).
	URL string `toml:"url"`
	// Listen is the embedded hub's client address.
	Listen string `toml:"listen"`
	// LeafListen is where the embedded hub accepts other agents' leaf
	// nodes; empty accepts none.
	LeafListen string `toml:"leaf_listen"`
	// Creds is a NATS credentials file for the leaf connection to URL.
	Creds string `toml:"creds"`
	// Compression is the S2 compression of what the agent sends over its
	// leaf link (and, running the hub itself, what the hub sends to other
	// agents' leaf nodes): off, fast, better, best, auto or auto-fast
	// (uncompressed over links up to 10 ms round trip, fast beyond).
	// Empty: off; "fast" suits uplinks where bytes cost.
	Compression string `toml:"compression"`
	// PasswordFile holds the password of user "agent" on a hub that
	// requires one (tern hub --agent-password-file).
	PasswordFile string `toml:"password_file"`
}

// TrustConfig lists whom the agent trusts.
type TrustConfig struct {
	// Publishers are the public keys ("ed25519:…") whose releases the agent
	// accepts. Used when Roots is empty.
	Publishers []string `toml:"publishers"`
	// Roots are offline root keys. When set, the agent trusts exactly the
	// publisher keys of the newest unexpired list a root signed, which it
	// receives from the hub, and Publishers must be empty.
	Roots []string `toml:"roots"`
}

// TLSConfig configures certificates.
type TLSConfig struct {
	// Hosts are the names the local CA's certificate covers.
	Hosts []string `toml:"hosts"`
}

// DefaultConfig returns the configuration `tern up` runs with when given
// nothing else.
func DefaultConfig() Config {
	return Config{
		Version:     ConfigVersion,
		Data:        ".tern",
		Listen:      ":8443",
		Admin:       "127.0.0.1:9090",
		LogLevel:    "info",
		LogFormat:   "text",
		MaxArtifact: 64 << 20,
		Heartbeat:   artifact.Duration(10 * time.Second),
		Cache:       CacheConfig{MaxSize: 1 << 30},
		Hub:         HubConfig{Listen: "127.0.0.1:4222"},
		TLS:         TLSConfig{Hosts: []string{"localhost", "127.0.0.1", "::1"}},
		Carbon:      defaultCarbonConfig(),
		GPU:         defaultGPUConfig(),
	}
}

// LoadConfig reads the config file at path over the defaults. Unknown keys
// are an error that names them.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes a config file over the defaults and validates it.
func ParseConfig(b []byte) (Config, error) {
	cfg := DefaultConfig()
	cfg.Version = 0
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&cfg)
	if err != nil {
		return Config{}, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = fmt.Sprintf("%q", k.String())
		}
		return Config{}, fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	}
	if cfg.Version != ConfigVersion {
		return Config{}, fmt.Errorf("version = %d: this agent reads version %d", cfg.Version, ConfigVersion)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate checks every field; the error names the first bad one.
func (c Config) Validate() error {
	if c.Data == "" {
		return errors.New("data: must not be empty")
	}
	for name, addr := range map[string]string{"listen": c.Listen, "admin": c.Admin, "hub.listen": c.Hub.Listen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s = %q: %w", name, addr, err)
		}
	}
	if c.GCPercent < 0 {
		return fmt.Errorf("gc_percent = %d: must not be negative", c.GCPercent)
	}
	if c.MaxArtifact <= 0 || c.MaxArtifact > MaxArtifactCeiling {
		return fmt.Errorf("max_artifact = %s: must lie in (0, %s]: a module is held whole in memory while it is verified and compiled", c.MaxArtifact, artifact.Size(MaxArtifactCeiling))
	}
	if c.Expired != "" && c.Expired != "serve" && c.Expired != "refuse" {
		return fmt.Errorf("expired = %q: want serve or refuse", c.Expired)
	}
	if time.Duration(c.Heartbeat) < time.Second {
		return fmt.Errorf("heartbeat = %s: must be at least 1s", c.Heartbeat)
	}
	for k := range c.Labels {
		if k == "" || strings.ContainsAny(k, "=,; ") {
			return fmt.Errorf("labels: invalid label name %q", k)
		}
	}
	names := map[string]bool{}
	if m := c.Cache.Memtable; m != 0 && (m < artifact.MiB || m > 256*artifact.MiB) {
		return fmt.Errorf("cache.memtable = %s: must lie in [1MiB, 256MiB]", m)
	}
	for i, o := range c.Origins {
		switch {
		case o.Name == "" || names[o.Name]:
			return fmt.Errorf("origins[%d]: name %q is empty or used twice", i, o.Name)
		case len(o.Upstreams) == 0:
			return fmt.Errorf("origins[%d] (%s): no upstreams", i, o.Name)
		case o.Path != "" && !strings.HasPrefix(o.Path, "/"):
			return fmt.Errorf("origins[%d] (%s): path %q must start with /", i, o.Name, o.Path)
		case o.Retries < 0:
			return fmt.Errorf("origins[%d] (%s): negative retries", i, o.Name)
		}
		if o.TargetedField != "" {
			if err := cache.CheckTargetedField(o.TargetedField); err != nil {
				return fmt.Errorf("origins[%d] (%s): %w", i, o.Name, err)
			}
		}
		names[o.Name] = true
		for _, u := range o.Upstreams {
			if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
				return fmt.Errorf("origins[%d] (%s): upstream %q is not an http(s) URL", i, o.Name, u)
			}
		}
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("log_format = %q: want text or json", c.LogFormat)
	}
	if _, err := artifact.ParseKeySet(c.Trust.Publishers); err != nil {
		return fmt.Errorf("trust.publishers: %w", err)
	}
	if _, err := artifact.ParseKeySet(c.Trust.Roots); err != nil {
		return fmt.Errorf("trust.roots: %w", err)
	}
	if len(c.Trust.Roots) > 0 && len(c.Trust.Publishers) > 0 {
		return errors.New("trust: set roots or publishers, not both: with roots, publishers come from the root-signed list")
	}
	for _, d := range c.AllowedDirs {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("allowed_dirs: %q is not an absolute path", d)
		}
	}
	if err := ternsync.CheckCompression(c.Hub.Compression); err != nil {
		return fmt.Errorf("hub.compression: %w", err)
	}
	if c.Hub.URL == "" && c.Hub.Creds != "" {
		return errors.New("hub.creds needs hub.url")
	}
	if c.Hub.LeafListen != "" {
		if _, _, err := net.SplitHostPort(c.Hub.LeafListen); err != nil {
			return fmt.Errorf("hub.leaf_listen = %q: %w", c.Hub.LeafListen, err)
		}
	}
	if err := c.Carbon.validate(); err != nil {
		return err
	}
	if err := c.GPU.validate(); err != nil {
		return err
	}
	if err := c.ACME.validate(); err != nil {
		return err
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if err := c.Compile.validate(c.MaxArtifact); err != nil {
		return err
	}
	return nil
}

// MaxArtifactCeiling is the largest max_artifact a configuration may set.
const MaxArtifactCeiling = 1 << 30

// DefaultGCPercent is the garbage collector target an agent runs with:
// four times Go's default, measured to lift function throughput by half
// on a 2-core machine (docs/BENCHMARKS.md) for a bounded amount of memory.
const DefaultGCPercent = 400

// tuneGC applies the config's collector settings unless the environment
// sets them, and returns the soft memory limit it set (0: none, or the
// environment's).
func tuneGC(c Config) int64 {
	if os.Getenv("GOGC") == "" {
		p := c.GCPercent
		if p == 0 {
			p = DefaultGCPercent
		}
		debug.SetGCPercent(p)
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := int64(c.MemoryLimit)
	if limit == 0 {
		limit = defaultMemoryLimit()
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	return limit
}

// ParseLevel parses a log level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log_level = %q: want debug, info, warn or error", s)
	}
	return l, nil
}
