package artifact

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// ManifestFile is the file name of an app manifest inside an app directory.
const ManifestFile = "tern.toml"

// Limit defaults and bounds. [Manifest.WithDefaults] fills the defaults and
// [Manifest.Validate] enforces the bounds, so an agent never has to guess.
const (
	DefaultMemory      = 64 * MiB
	DefaultTimeout     = Duration(10 * time.Second)
	DefaultMaxResponse = 8 * MiB
	DefaultMaxRequest  = 8 * MiB

	// MinMemory is one WebAssembly page: a module cannot run with less.
	MinMemory      = 64 * KiB
	MaxMemory      = 4 * GiB // the wasm32 address space
	MaxTimeout     = Duration(15 * time.Minute)
	MaxMaxResponse = 1 * GiB
	MaxMaxRequest  = 1 * GiB

	// MaxManifestSize bounds a tern.toml, which is read before anything else
	// about an app is known.
	MaxManifestSize = 256 * KiB
)

// Manifest is an app's tern.toml: what it is called, which wasm module it
// runs (or which upstream servers it fronts), which requests reach it, its
// resource limits and what it may use.
type Manifest struct {
	Name    string `toml:"name" json:"name"`       // ^[a-z0-9][a-z0-9-]{0,62}$
	Version string `toml:"version" json:"version"` // Semantic Versioning 2.0.0
	// Wasm is a slash-separated path inside the manifest's directory. An
	// app has either a module or an Origin, never both.
	Wasm string `toml:"wasm" json:"wasm"`
	// Origin, when present, makes the app a CDN origin: its routes are
	// served by the agent's cache in front of upstream servers, and the
	// release carries no module.
	Origin       *Origin      `toml:"origin" json:"origin,omitempty"`
	Routes       []Route      `toml:"routes" json:"routes"` // at least one
	Limits       Limits       `toml:"limits" json:"limits"`
	Capabilities Capabilities `toml:"capabilities" json:"capabilities"`
	// Deferrable, when present, makes non-safe requests jobs that run when
	// the grid is cleanest before their deadline.
	Deferrable *Deferrable `toml:"deferrable" json:"deferrable,omitempty"`
}

// Route selects the requests an app serves.
type Route struct {
	// Host is an exact host name or a wildcard "*.example.com" matching any
	// subdomain; empty matches every host. ParseManifest lower-cases it.
	Host string `toml:"host" json:"host,omitempty"`
	// Path is a path prefix starting with "/"; empty means "/".
	Path string `toml:"path" json:"path,omitempty"`
	// RedirectHTTPS answers plain-HTTP requests with a redirect to HTTPS.
	RedirectHTTPS bool `toml:"redirect_https" json:"redirect_https,omitempty"`
	// Scheme, when "https" or "http", refuses requests over the other one.
	Scheme string `toml:"scheme" json:"scheme,omitempty"`
	// Headers are added to every response of the route
	// (e.g. Strict-Transport-Security).
	Headers map[string]string `toml:"headers" json:"headers,omitempty"`
	// EarlyData serves TLS 0-RTT requests on this route, for safe methods
	// only; off by default because early data can be replayed.
	EarlyData bool `toml:"early_data" json:"early_data,omitempty"`
}

// Limits bounds the resources of one request; zero values mean the defaults.
type Limits struct {
	Memory      Size     `toml:"memory" json:"memory,omitempty"`             // default DefaultMemory, at most MaxMemory
	Timeout     Duration `toml:"timeout" json:"timeout,omitempty"`           // default DefaultTimeout, at most MaxTimeout
	MaxResponse Size     `toml:"max_response" json:"max_response,omitempty"` // default DefaultMaxResponse
	MaxRequest  Size     `toml:"max_request" json:"max_request,omitempty"`   // default DefaultMaxRequest
}

// Capabilities lists what an app may use beyond computing on its request.
// Everything is denied unless listed.
type Capabilities struct {
	// Env holds variables set in the guest's environment.
	Env map[string]string `toml:"env" json:"env,omitempty"`
	// OutboundHosts lists the hosts ("example.com", "*.example.com",
	// "example.com:8443") the app may send requests to.
	OutboundHosts []string `toml:"outbound_hosts" json:"outbound_hosts,omitempty"`
	// KV lists the key-value store names the app may use.
	KV []string `toml:"kv" json:"kv,omitempty"`
	// Dirs maps guest paths to agent host paths mounted read-only. The agent
	// decides whether it honours a host path; the manifest only asks.
	Dirs map[string]string `toml:"dirs" json:"dirs,omitempty"`
	// Clock gives the guest real clocks; without it, clocks are fake so that
	// guests cannot time side channels.
	Clock bool `toml:"clock" json:"clock,omitempty"`
	// AIModels lists the models the app may call through the tern_ai host
	// module ("det-llm", "llama2-chat"); every other model is denied.
	AIModels []string `toml:"ai_models" json:"ai_models,omitempty"`
	// GPUWeight is the app's fair share of the site's accelerators
	// relative to other apps, between MinGPUWeight and MaxGPUWeight; zero
	// means DefaultGPUWeight. It needs AIModels.
	GPUWeight float64 `toml:"gpu_weight" json:"gpu_weight,omitempty"`
	// Cache lets the app look up, store and delete responses in the
	// agent's HTTP cache through the tern_cache host module, under keys
	// of its own that no other app and no URL can reach.
	Cache bool `toml:"cache" json:"cache,omitempty"`
}

// Bounds of the AI capability. Model names are what model servers call
// their models ("llama3:8b", "meta-llama/Llama-2-7b-chat-hf"), so they
// allow '.', ':' and '/', but nothing that needs quoting in logs, metric
// labels or URLs. Weights are bounded so that no app can take the whole
// site by its manifest alone: at the extremes one app gets 1000 times
// another's share.
const (
	MaxAIModels      = 32    // models one app may list
	maxAIModelLen    = 128   // bytes in a model name
	DefaultGPUWeight = 1.0   // the weight of an app that sets none
	MinGPUWeight     = 0.1   // the smallest weight a manifest may set
	MaxGPUWeight     = 100.0 // the largest weight a manifest may set
)

// ParseManifest decodes a tern.toml strictly and validates it. A key that
// does not exist in [Manifest] is an error naming it, because a misspelt
// limit silently falling back to its default is worse than a failed deploy.
// Route hosts and outbound hosts are lower-cased. Errors wrap [ErrMalformed],
// or [ErrSize] when data is larger than [MaxManifestSize].
func ParseManifest(data []byte) (Manifest, error) {
	if len(data) > int(MaxManifestSize) {
		return Manifest{}, fmt.Errorf("manifest of %d bytes exceeds the limit %s: %w", len(data), MaxManifestSize, ErrSize)
	}
	var m Manifest
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&m)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w manifest: %s", ErrMalformed, tomlMessage(err))
	}
	if keys := unknownKeys(md.Undecoded()); len(keys) == 1 {
		return Manifest{}, fmt.Errorf("%w manifest: unknown key %s", ErrMalformed, keys[0])
	} else if len(keys) > 1 {
		return Manifest{}, fmt.Errorf("%w manifest: unknown keys %s", ErrMalformed, strings.Join(keys, ", "))
	}
	for i := range m.Routes {
		m.Routes[i].Host = strings.ToLower(m.Routes[i].Host)
	}
	for i, h := range m.Capabilities.OutboundHosts {
		m.Capabilities.OutboundHosts[i] = strings.ToLower(h)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// unknownKeys returns the quoted undecoded keys, leaving out those inside a
// table that is itself unknown, so that one misspelt table is one error.
func unknownKeys(undecoded []toml.Key) []string {
	var out []string
	var parent toml.Key
	seen := map[string]bool{} // keys repeat once per element of an array of tables
	for _, k := range undecoded {
		if parent != nil && len(k) > len(parent) && slicesEqual(k[:len(parent)], parent) {
			continue
		}
		parent = k
		if name := k.String(); !seen[name] {
			seen[name] = true
			out = append(out, fmt.Sprintf("%q", name))
		}
	}
	return out
}

func slicesEqual(a, b toml.Key) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// tomlMessage turns a decoder error into "line N: key: problem" without the
// library's prefix, so messages read the same as validation errors.
func tomlMessage(err error) string {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		if pe.LastKey != "" {
			return fmt.Sprintf("line %d: %s: %s", pe.Position.Line, pe.LastKey, pe.Message)
		}
		return fmt.Sprintf("line %d: %s", pe.Position.Line, pe.Message)
	}
	msg := strings.TrimPrefix(err.Error(), "toml: ")
	if m := typeErrRE.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("line %s: %s: %s", m[1], m[2], m[3])
	}
	return msg
}

// typeErrRE matches the decoder's type errors, which are not ParseErrors.
var typeErrRE = regexp.MustCompile(`^line (\d+) \(last key "(.*)"\): (.*)$`)

// LoadManifest reads and parses a manifest. path names a tern.toml or a
// directory containing one; dir is the directory the manifest's wasm path is
// relative to.
func LoadManifest(path string) (m Manifest, dir string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Manifest{}, "", fmt.Errorf("load manifest: %w", err)
	}
	if fi.IsDir() {
		path = filepath.Join(path, ManifestFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return Manifest{}, "", fmt.Errorf("load manifest: %w", err)
	}
	defer f.Close()
	// Read one byte past the limit so that ParseManifest reports the size.
	data, err := io.ReadAll(io.LimitReader(f, int64(MaxManifestSize)+1))
	if err != nil {
		return Manifest{}, "", fmt.Errorf("load manifest %s: %w", path, err)
	}
	m, err = ParseManifest(data)
	if err != nil {
		return Manifest{}, "", fmt.Errorf("load manifest %s: %w", path, err)
	}
	return m, filepath.Dir(path), nil
}

// WithDefaults returns a copy of m with zero limits set to their defaults
// (an origin app, which runs no function, keeps none), empty route paths
// set to "/" and route hosts lower-cased. Slices and maps that it changes
// are copied, so m is left as it was.
func (m Manifest) WithDefaults() Manifest {
	if m.Origin != nil {
		m.Routes = defaultRoutes(m.Routes)
		return m
	}
	if m.Limits.Memory == 0 {
		m.Limits.Memory = DefaultMemory
	}
	if m.Limits.Timeout == 0 {
		m.Limits.Timeout = DefaultTimeout
	}
	if m.Limits.MaxResponse == 0 {
		m.Limits.MaxResponse = DefaultMaxResponse
	}
	if m.Limits.MaxRequest == 0 {
		m.Limits.MaxRequest = DefaultMaxRequest
	}
	m.Routes = defaultRoutes(m.Routes)
	return m
}

// defaultRoutes returns a copy of routes with empty paths set to "/" and
// hosts lower-cased.
func defaultRoutes(in []Route) []Route {
	if in == nil {
		return nil
	}
	routes := make([]Route, len(in))
	for i, r := range in {
		if r.Path == "" {
			r.Path = "/"
		}
		r.Host = strings.ToLower(r.Host)
		routes[i] = r
	}
	return routes
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	envRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	kvNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	// aiModelRE is the model name charset; see MaxAIModels.
	aiModelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$`)
)

// maxVersionLen keeps versions printable in logs and status output.
const maxVersionLen = 128

// Validate checks every field and reports all problems at once, each naming
// the field and what is wrong with it, so a publisher fixes a manifest in one
// pass. Zero limits are valid: they mean the defaults. The error wraps
// [ErrMalformed].
func (m Manifest) Validate() error {
	var p problems
	switch {
	case m.Name == "":
		p.add("name: required")
	case !nameRE.MatchString(m.Name):
		p.add("name %q: must be 1 to 63 lower-case letters, digits or hyphens, starting with a letter or digit", m.Name)
	}
	switch {
	case m.Version == "":
		p.add("version: required")
	case len(m.Version) > maxVersionLen:
		p.add("version: longer than %d bytes", maxVersionLen)
	default:
		if err := checkSemver(m.Version); err != nil {
			p.add("version %q: not a semantic version: %v", m.Version, err)
		}
	}
	switch {
	case m.Origin != nil:
		m.Origin.validate(m, &p)
	case m.Wasm == "":
		p.add("wasm: required unless the app has an [origin] table")
	default:
		if err := checkLocalPath(m.Wasm); err != nil {
			p.add("wasm %q: %v", m.Wasm, err)
		}
	}
	m.validateRoutes(&p)
	if m.Origin == nil {
		m.Limits.validate(&p)
		m.Capabilities.validate(&p)
		m.Deferrable.validate(m, &p)
	}
	return p.err("manifest")
}

func (m Manifest) validateRoutes(p *problems) {
	if len(m.Routes) == 0 {
		p.add("routes: at least one route is required")
		return
	}
	type place struct{ host, path string }
	seen := make(map[place]int, len(m.Routes))
	for i, r := range m.Routes {
		if r.Host != "" {
			if err := checkHost(strings.ToLower(r.Host)); err != nil {
				p.add("routes[%d].host %q: %v", i, r.Host, err)
			}
		}
		if r.Path != "" {
			if err := checkRoutePath(r.Path); err != nil {
				p.add("routes[%d].path %q: %v", i, r.Path, err)
			}
		}
		if r.Scheme != "" && r.Scheme != "https" && r.Scheme != "http" {
			p.add("routes[%d].scheme %q: want https or http", i, r.Scheme)
		}
		for name, v := range r.Headers {
			if !validHeaderName(name) || strings.ContainsAny(v, "\r\n\x00") {
				p.add("routes[%d].headers %q: not a valid header", i, name)
			}
		}
		key := place{strings.ToLower(r.Host), r.Path}
		if key.path == "" {
			key.path = "/"
		}
		if j, dup := seen[key]; dup {
			p.add("routes[%d]: duplicates routes[%d]", i, j)
		} else {
			seen[key] = i
		}
	}
}

// validHeaderName reports whether s is an HTTP field name (RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c > 0x7e || c <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", c) {
			return false
		}
	}
	return true
}

func (l Limits) validate(p *problems) {
	checkSize := func(field string, v, minimum, maximum Size) {
		switch {
		case v == 0:
		case v < minimum:
			p.add("limits.%s %s: below the minimum %s", field, v, minimum)
		case v > maximum:
			p.add("limits.%s %s: exceeds the maximum %s", field, v, maximum)
		}
	}
	checkSize("memory", l.Memory, MinMemory, MaxMemory)
	switch {
	case l.Timeout < 0:
		p.add("limits.timeout %s: must be positive", l.Timeout)
	case l.Timeout > MaxTimeout:
		p.add("limits.timeout %s: exceeds the maximum %s", l.Timeout, MaxTimeout)
	}
	checkSize("max_response", l.MaxResponse, 1, MaxMaxResponse)
	checkSize("max_request", l.MaxRequest, 1, MaxMaxRequest)
}

func (c Capabilities) validate(p *problems) {
	for _, name := range sortedKeys(c.Env) {
		if !envRE.MatchString(name) {
			p.add("capabilities.env %q: invalid variable name (want letters, digits and underscores, not starting with a digit)", name)
		}
		if v := c.Env[name]; strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) {
			p.add("capabilities.env %q: value must be valid UTF-8 without NUL bytes", name)
		}
	}
	seenHost := map[string]bool{}
	for i, h := range c.OutboundHosts {
		if err := checkHostPort(strings.ToLower(h)); err != nil {
			p.add("capabilities.outbound_hosts[%d] %q: %v", i, h, err)
		} else if seenHost[strings.ToLower(h)] {
			p.add("capabilities.outbound_hosts[%d] %q: listed twice", i, h)
		}
		seenHost[strings.ToLower(h)] = true
	}
	seenKV := map[string]bool{}
	for i, name := range c.KV {
		if !kvNameRE.MatchString(name) {
			p.add("capabilities.kv[%d] %q: invalid store name (want 1 to 64 letters, digits, '-' or '_')", i, name)
		} else if seenKV[name] {
			p.add("capabilities.kv[%d] %q: listed twice", i, name)
		}
		seenKV[name] = true
	}
	c.validateAI(p)
	for _, guest := range sortedKeys(c.Dirs) {
		if err := checkGuestPath(guest); err != nil {
			p.add("capabilities.dirs %q: guest path %v", guest, err)
		}
		if host := c.Dirs[guest]; host == "" {
			p.add("capabilities.dirs %q: host path required", guest)
		} else if err := checkHostDir(host); err != nil {
			p.add("capabilities.dirs %q: host path %q %v", guest, host, err)
		}
	}
}

// validateAI checks ai_models and gpu_weight.
func (c Capabilities) validateAI(p *problems) {
	if len(c.AIModels) > MaxAIModels {
		p.add("capabilities.ai_models: %d models, at most %d", len(c.AIModels), MaxAIModels)
	}
	seen := map[string]bool{}
	for i, name := range c.AIModels {
		if !aiModelRE.MatchString(name) {
			p.add("capabilities.ai_models[%d] %q: invalid model name (want 1 to %d letters, digits, '.', ':', '/', '-' or '_', starting with a letter or digit)", i, name, maxAIModelLen)
		} else if seen[name] {
			p.add("capabilities.ai_models[%d] %q: listed twice", i, name)
		}
		seen[name] = true
	}
	w := c.GPUWeight
	switch {
	case w == 0:
	case math.IsNaN(w) || w < MinGPUWeight || w > MaxGPUWeight:
		p.add("capabilities.gpu_weight %g: outside [%g, %g]", w, MinGPUWeight, MaxGPUWeight)
	case len(c.AIModels) == 0:
		p.add("capabilities.gpu_weight %g: needs ai_models", w)
	}
}

// problems collects validation failures so that Validate reports them all.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// err returns nil or one error listing every problem, wrapping ErrMalformed.
func (p problems) err(what string) error {
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("%w %s: %s", ErrMalformed, what, strings.Join(p, "; "))
}
