package cache

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"
)

// meta is the stored metadata of one response, with what RFC 9111 needs
// computed once when the response is stored or revalidated, so serving a
// hit does no header parsing. A *meta is never modified once published;
// updates replace it.
type meta struct {
	Primary    string      `json:"p"`            // host + request target, or a namespaced key
	Status     int         `json:"s"`            // response status
	Header     http.Header `json:"h"`            // end-to-end response headers, without Age
	Vary       []string    `json:"v,omitempty"`  // canonical names from Vary
	VaryValues []string    `json:"vv,omitempty"` // request values for Vary, in order
	Tags       []string    `json:"t,omitempty"`  // Surrogate-Key and Cache-Tag values
	ChunkSize  int         `json:"c"`            // chunk size the body was written with
	// Scheme is the scheme of the request the response answered: a
	// variant serves only that scheme. Empty for entries stored by
	// functions and by versions that did not record it, which serve both.
	Scheme string `json:"sc,omitempty"`
	// LastModified is Last-Modified parsed, zero when absent or invalid,
	// kept so hits need not parse dates.
	LastModified time.Time `json:"lm,omitzero"`

	ResponseTime time.Time     `json:"rt"`  // when the response (or its last 304) arrived
	InitialAge   time.Duration `json:"ia"`  // corrected_initial_age, §4.2.3
	Lifetime     time.Duration `json:"lt"`  // freshness lifetime, §4.2.1
	Heuristic    bool          `json:"hu"`  // Lifetime is heuristic, §4.2.2
	SWR          time.Duration `json:"swr"` // stale-while-revalidate, -1 when absent
	SIE          time.Duration `json:"sie"` // stale-if-error, -1 when absent
	// MustRevalidate forbids serving stale: must-revalidate or
	// proxy-revalidate.
	MustRevalidate bool `json:"mr"`
	// SMaxAge is set when s-maxage gave the lifetime. It implies
	// proxy-revalidate (§5.2.2.10), which forbids the offline policy;
	// an explicit stale-while-revalidate or stale-if-error from the same
	// origin still applies, as the more specific permission.
	SMaxAge bool `json:"sm,omitempty"`
	// NoCache requires validation before every reuse.
	NoCache bool `json:"nc"`
	// Credentialed marks a response to a request with Cookie or
	// Authorization that the origin did not mark shareable (public,
	// s-maxage): never heuristically fresh, never served under the
	// offline policy (HandlerConfig.ShareCredentialed).
	Credentialed bool `json:"cr,omitempty"`
	// Invalid marks a soft-purged entry: stale whatever its lifetime, but
	// still usable as a validator and, within policy, as stale content.
	Invalid bool `json:"inv,omitempty"`
}

func (m *meta) encode() []byte {
	b, err := json.Marshal(m)
	if err != nil {
		// Marshal of these field types cannot fail.
		panic(fmt.Sprintf("encode cache meta: %v", err))
	}
	return b
}

func decodeMeta(b []byte) (*meta, error) {
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode cache meta: %w", err)
	}
	if m.Header == nil {
		m.Header = http.Header{}
	}
	return &m, nil
}

// check reports why a record read back from storage, with the body size
// stored beside it, cannot be served: the cache writes none of these, so
// they come from corruption or an incompatible version.
func (m *meta) check(size int64) error {
	switch {
	case m.Status < 100 || m.Status > 999:
		return fmt.Errorf("cache meta: status %d is not an HTTP status", m.Status)
	case m.ChunkSize <= 0:
		return fmt.Errorf("cache meta: chunk size %d is not positive", m.ChunkSize)
	case size < 0:
		return fmt.Errorf("cache meta: body size %d is negative", size)
	case len(m.VaryValues) != len(m.Vary):
		return fmt.Errorf("cache meta: %d values for %d Vary fields", len(m.VaryValues), len(m.Vary))
	}
	return nil
}

// serves reports whether the entry may answer a request for scheme: one
// stored without a scheme answers both, and scheme "" (a lookup by a
// function's key) matches any entry.
func (m *meta) serves(scheme string) bool {
	return scheme == "" || m.Scheme == "" || m.Scheme == scheme
}

// age is the entry's current_age at now (§4.2.3).
func (m *meta) age(now time.Time) time.Duration {
	resident := now.Sub(m.ResponseTime)
	if resident < 0 {
		resident = 0
	}
	return m.InitialAge + resident
}

// staleness is how long past its freshness lifetime the entry is at now;
// negative means fresh (§4.2: fresh while lifetime > current age). A
// soft-purged entry is stale by at least 1s.
func (m *meta) staleness(now time.Time) time.Duration {
	s := m.age(now) - m.Lifetime
	if m.Invalid && s < 0 {
		return time.Second
	}
	return s
}

// fresh reports whether the entry may be served without contacting the
// origin.
func (m *meta) fresh(now time.Time) bool {
	return !m.Invalid && !m.NoCache && m.staleness(now) < 0
}

// heuristicStatus lists the status codes that §4.2.2 lets a cache store
// and reuse without explicit freshness ("heuristically cacheable",
// RFC 9110 §15.1).
var heuristicStatus = map[int]bool{
	200: true, 203: true, 204: true, 206: true, 300: true, 301: true, 308: true,
	404: true, 405: true, 410: true, 414: true, 501: true,
}

// credentialedPrivate reports whether req carries credentials (Cookie or
// Authorization) and the response's directives cc do not explicitly allow
// shared caches to reuse the answer (public, s-maxage).
func credentialedPrivate(req *http.Request, cc directives) bool {
	return (req.Header.Get("Cookie") != "" || req.Header.Get("Authorization") != "") && !cc.public && cc.sMaxAge < 0
}

// storable decides whether a response to a GET may be stored by a shared
// cache (§3, §3.5) and returns the reason when it may not. Any final
// status may be stored with explicit freshness; see storableStatus.
// strict adds the rule of HandlerConfig.ShareCredentialed's default: a
// response to a credentialed request that is not explicitly shareable
// needs explicit freshness.
func storable(req *http.Request, reqCC directives, resp *http.Response, cc directives, strict bool) (bool, string) {
	understood, ok := storableStatus(resp.StatusCode, cc)
	switch {
	case !ok:
		return false, "status " + strconv.Itoa(resp.StatusCode)
	case reqCC.noStore:
		return false, "no-store"
	case cc.noStore && !(cc.mustUnderstand && understood):
		// §5.2.2.3: must-understand from a cache that understands the
		// status overrides no-store, which is there for those that do not.
		return false, "no-store"
	case cc.private:
		return false, "private"
	case req.Header.Get("Authorization") != "" && !cc.mustRevalidate && !cc.public && cc.sMaxAge < 0:
		// §3.5: a shared cache stores a response to an authenticated
		// request only when the origin explicitly allows it.
		return false, "authorization"
	}
	for _, v := range resp.Header.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.TrimSpace(f) == "*" {
				return false, "vary *" // §4.1: never matches
			}
		}
	}
	explicit := cc.maxAge >= 0 || cc.sMaxAge >= 0 || len(resp.Header["Expires"]) > 0 && !cc.targeted
	if !explicit && strict && credentialedPrivate(req, cc) {
		// Not an RFC rule: heuristic freshness for a page that
		// answered a cookie is how one user's account page reaches
		// the next.
		return false, "credentials without explicit freshness"
	}
	switch {
	case explicit:
		return true, ""
	case heuristicStatus[resp.StatusCode]:
		return true, ""
	case resp.StatusCode >= 400:
		// Named by its status, not "no explicit freshness": an error
		// during an outage must not mark the URL hit-for-pass.
		return false, "status " + strconv.Itoa(resp.StatusCode)
	}
	return false, "no explicit freshness"
}

// freshness fills in m's age and lifetime fields from the response
// headers h, received at responseTime for a request sent at requestTime.
func (m *meta) freshness(h http.Header, fields []string, requestTime, responseTime time.Time, heuristicMax time.Duration) {
	cc := responseDirectives(h, fields)
	date, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		date = responseTime
	}
	// §4.2.3
	apparent := max(responseTime.Sub(date), 0)
	ageSecs, ageOK := ageValue(h)
	corrected := time.Duration(ageSecs)*time.Second + responseTime.Sub(requestTime)
	m.ResponseTime = responseTime
	m.InitialAge = max(apparent, corrected)
	m.LastModified = time.Time{}
	if lm, err := http.ParseTime(h.Get("Last-Modified")); err == nil {
		m.LastModified = lm
	}

	m.Heuristic = false
	switch {
	case cc.sMaxAge >= 0:
		m.Lifetime = time.Duration(cc.sMaxAge) * time.Second
	case cc.maxAge >= 0:
		m.Lifetime = time.Duration(cc.maxAge) * time.Second
	case len(h["Expires"]) > 0 && !cc.targeted:
		// An invalid Expires (such as "0") means already expired.
		if exp, _, valid := expiresAt(h); valid {
			m.Lifetime = max(exp.Sub(date), 0)
		} else {
			m.Lifetime = 0
		}
	default:
		m.Heuristic = true
		m.Lifetime = 0
		if lm, err := http.ParseTime(h.Get("Last-Modified")); err == nil && lm.Before(date) && heuristicStatus[m.Status] {
			m.Lifetime = min(date.Sub(lm)/10, heuristicMax)
		}
	}
	if !ageOK {
		m.Lifetime = 0 // an Age this cache cannot read: stale
	}
	m.SWR, m.SIE = -1, -1
	if cc.staleWhileRevalidate >= 0 {
		m.SWR = time.Duration(cc.staleWhileRevalidate) * time.Second
	}
	if cc.staleIfErr >= 0 {
		m.SIE = time.Duration(cc.staleIfErr) * time.Second
	}
	m.MustRevalidate = cc.mustRevalidate || cc.proxyRevalidate
	m.SMaxAge = cc.sMaxAge >= 0
	m.NoCache = cc.noCache
}

// hopByHop are connection-level fields (RFC 9110 §7.6.1), never stored or
// forwarded. Age is recomputed on every response, and the tag fields are
// for this cache's purge, not for clients.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// storedHeader returns the headers of resp worth storing: end-to-end
// fields minus Age, the purge tags, and the fields a qualified private or
// no-cache withholds from a shared cache.
func storedHeader(h http.Header) http.Header {
	out := h.Clone()
	removeHopByHop(out)
	out.Del("Age")
	out.Del("Content-Length") // set from the stored body's size
	out.Del("Surrogate-Key")
	out.Del("Cache-Tag")
	out.Del("Surrogate-Control")
	for k := range withheldFields(h) {
		out.Del(k)
	}
	return out
}

func removeHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, f := range hopByHop {
		h.Del(f)
	}
}

// tags collects purge tags: Surrogate-Key is space separated (Fastly),
// Cache-Tag comma separated (Cloudflare, Akamai).
func tags(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Surrogate-Key") {
		out = append(out, strings.Fields(v)...)
	}
	for _, v := range h.Values("Cache-Tag") {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// varyNames returns the canonical field names listed in Vary, sorted.
func varyNames(h http.Header) []string {
	var names []string
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				names = append(names, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// varyValues returns the request's values of the named fields,
// normalized by joining lines and dropping optional whitespace around
// commas (§4.1 allows such normalization).
func varyValues(req http.Header, names []string) []string {
	vals := make([]string, len(names))
	for i, n := range names {
		parts := req.Values(n)
		var elems []string
		for _, p := range parts {
			for _, e := range strings.Split(p, ",") {
				elems = append(elems, strings.TrimSpace(e))
			}
		}
		vals[i] = strings.Join(elems, ",")
	}
	return vals
}

// updateHeaders applies the header fields of a 304 to a stored response
// (§3.2): every field in the 304 replaces the stored one, except those
// that describe the stored body.
func updateHeaders(stored, fresh http.Header) http.Header {
	out := stored.Clone()
	up := storedHeader(fresh)
	for _, k := range []string{"Content-Length", "Content-Encoding", "Content-Range", "Content-Type"} {
		up.Del(k)
	}
	for k, v := range up {
		out[k] = v
	}
	return out
}
