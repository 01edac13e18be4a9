package artifact

import (
	"net/url"
	"strings"
	"time"
)

// Origin makes an app a CDN origin instead of a function: its routes are
// served by the agent's HTTP cache in front of these upstream servers. The
// fields mirror an agent's [[origins]] config table, less the CA file,
// which names a path on the agent and so cannot be published: https
// upstreams are verified against the agent's system roots.
type Origin struct {
	// Upstreams are base URLs ("http://10.0.0.1:8080", "https://o.example/base")
	// in priority order: requests go to the first healthy one.
	Upstreams []string `toml:"upstreams" json:"upstreams"`
	// HostHeader is "preserve" (the default: the client's Host), "rewrite"
	// (each upstream's own host) or a host name to send.
	HostHeader string `toml:"host_header" json:"host_header,omitempty"`
	// ConnectTimeout bounds dialing and the TLS handshake; Timeout bounds
	// the wait for response headers. Zero means the agent's defaults.
	ConnectTimeout Duration `toml:"connect_timeout" json:"connect_timeout,omitempty"`
	Timeout        Duration `toml:"timeout" json:"timeout,omitempty"`
	// Retries is how many further upstreams an idempotent request tries
	// after a connection failure or a 502, 503 or 504.
	Retries int `toml:"retries" json:"retries,omitempty"`
	// HealthPath, when set, is requested from every upstream each
	// HealthInterval (zero: the agent's default); an upstream that fails
	// it is skipped until it passes again.
	HealthPath     string   `toml:"health_path" json:"health_path,omitempty"`
	HealthInterval Duration `toml:"health_interval" json:"health_interval,omitempty"`
	// ShareCredentialed lets the agents' caches reuse responses to
	// requests with Cookie or Authorization as RFC 9111 alone allows. By
	// default such a response is stored only with explicit freshness and
	// never served stale, unless it is marked public or s-maxage, so an
	// origin that forgets Cache-Control on a personal page does not hand
	// it to the next client.
	ShareCredentialed bool `toml:"share_credentialed" json:"share_credentialed,omitempty"`
}

// Bounds of the [Origin] table. They keep one publisher's manifest from
// pinning an agent's connections or probing it into the ground.
const (
	MaxOriginUpstreams      = 16
	MaxOriginRetries        = 10
	MaxOriginConnectTimeout = Duration(time.Minute)
	MaxOriginTimeout        = MaxTimeout
	MinOriginHealthInterval = Duration(time.Second)
	MaxOriginHealthInterval = Duration(time.Hour)
	maxUpstreamURL          = 2048 // bytes in one upstream URL
)

// validate checks the origin table and that nothing of a function's sits
// beside it: an origin app runs no code, so limits, capabilities and
// deferral would be silently ignored, which strict parsing exists to avoid.
func (o *Origin) validate(m Manifest, p *problems) {
	if m.Wasm != "" {
		p.add("wasm %q: an app has a wasm module or an [origin] table, not both", m.Wasm)
	}
	if m.Limits != (Limits{}) {
		p.add("limits: an origin app runs no function; remove the table")
	}
	if !m.Capabilities.empty() {
		p.add("capabilities: an origin app runs no function; remove the table")
	}
	if m.Deferrable != nil {
		p.add("deferrable: an origin app runs no function; remove the table")
	}
	switch n := len(o.Upstreams); {
	case n == 0:
		p.add("origin.upstreams: at least one upstream is required")
	case n > MaxOriginUpstreams:
		p.add("origin.upstreams: %d upstreams, at most %d", n, MaxOriginUpstreams)
	}
	seen := map[string]int{}
	for i, raw := range o.Upstreams {
		if err := checkUpstream(raw); err != "" {
			p.add("origin.upstreams[%d] %q: %s", i, raw, err)
		} else if j, dup := seen[raw]; dup {
			p.add("origin.upstreams[%d] %q: duplicates upstreams[%d]", i, raw, j)
		} else {
			seen[raw] = i
		}
	}
	switch h := o.HostHeader; h {
	case "", "preserve", "rewrite":
	default:
		if err := checkHostPort(strings.ToLower(h)); err != nil || strings.HasPrefix(h, "*.") {
			p.add(`origin.host_header %q: want "preserve", "rewrite" or a host name`, h)
		}
	}
	checkDur := func(field string, d, maximum Duration) {
		switch {
		case d < 0:
			p.add("origin.%s %s: must not be negative", field, d)
		case d > maximum:
			p.add("origin.%s %s: exceeds the maximum %s", field, d, maximum)
		}
	}
	checkDur("connect_timeout", o.ConnectTimeout, MaxOriginConnectTimeout)
	checkDur("timeout", o.Timeout, MaxOriginTimeout)
	if o.Retries < 0 || o.Retries > MaxOriginRetries {
		p.add("origin.retries %d: outside [0, %d]", o.Retries, MaxOriginRetries)
	}
	if o.HealthPath != "" {
		if err := checkRoutePath(o.HealthPath); err != nil {
			p.add("origin.health_path %q: %v", o.HealthPath, err)
		}
	}
	switch d := o.HealthInterval; {
	case d == 0:
	case o.HealthPath == "":
		p.add("origin.health_interval %s: needs health_path", d)
	case d < MinOriginHealthInterval || d > MaxOriginHealthInterval:
		p.add("origin.health_interval %s: outside [%s, %s]", d, MinOriginHealthInterval, MaxOriginHealthInterval)
	}
}

// checkUpstream checks one upstream base URL; it returns what is wrong,
// or "" when nothing is.
func checkUpstream(raw string) string {
	if len(raw) > maxUpstreamURL {
		return "longer than 2048 bytes"
	}
	if hasControl(raw) || strings.ContainsAny(raw, " \\") {
		return "contains a space, a backslash, a control character or invalid UTF-8"
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "want http(s)://host[:port][/path]"
	}
	switch {
	case u.User != nil:
		return "must not carry credentials"
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not have a query or fragment"
	}
	if err := checkHostPort(strings.ToLower(u.Host)); err != nil {
		return "host: " + err.Error()
	}
	return ""
}

// empty reports whether c grants nothing.
func (c Capabilities) empty() bool {
	return len(c.Env) == 0 && len(c.OutboundHosts) == 0 && len(c.KV) == 0 && len(c.Dirs) == 0 &&
		!c.Clock && len(c.AIModels) == 0 && c.GPUWeight == 0 && !c.Cache
}
