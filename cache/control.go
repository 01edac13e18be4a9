package cache

import (
	"net/http"
	"strings"
)

// maxDelta caps delta-seconds values: RFC 9111 §1.2.2 says a value too
// large to represent is to be taken as 2^31, which also keeps arithmetic
// on durations from overflowing.
const maxDelta = 1 << 31

// directives are the parsed Cache-Control directives of one message.
// Delta-seconds fields are -1 when the directive is absent.
type directives struct {
	noStore, noCache, private, public                 bool
	mustRevalidate, proxyRevalidate, immutable        bool
	onlyIfCached, mustUnderstand                      bool
	maxAge, sMaxAge, staleWhileRevalidate, staleIfErr int64
	maxStale, minFresh                                int64
	// noCacheFields and privateFields are the field lists of qualified
	// no-cache="…" and private="…" (§5.2.2.4, §5.2.2.7), as sent: a shared
	// cache stores the response without those fields.
	noCacheFields, privateFields string
	// targeted is set when the directives come from a targeted field
	// (RFC 9213), which makes Expires void.
	targeted bool
}

// parseCacheControl parses every Cache-Control field line of h. Unknown
// directives are ignored (§5.2.3). When a directive repeats, the first one
// counts; an invalid delta-seconds value counts as 0, making the response
// stale, as §4.2.1 and §1.2.2 advise. Qualified no-cache and private
// (with a field list) only withhold the fields they name.
func parseCacheControl(h http.Header) directives {
	d := directives{maxAge: -1, sMaxAge: -1, staleWhileRevalidate: -1, staleIfErr: -1, maxStale: -1, minFresh: -1}
	if len(h["Cache-Control"]) == 0 { // Values does the same lookup: the key is canonical
		return d // most requests: no directives, nothing to allocate
	}
	seen := map[string]bool{}
	for _, line := range h.Values("Cache-Control") {
		for len(line) > 0 {
			var name, value string
			var ok bool
			name, value, line, ok = nextDirective(line)
			if !ok || name == "" || seen[name] {
				continue
			}
			seen[name] = true
			switch name {
			case "no-store":
				d.noStore = true
			case "no-cache":
				if value == "" {
					d.noCache = true
				} else {
					d.noCacheFields = value
				}
			case "private":
				if value == "" {
					d.private = true
				} else {
					d.privateFields = value
				}
			case "public":
				d.public = true
			case "must-revalidate":
				d.mustRevalidate = true
			case "proxy-revalidate":
				d.proxyRevalidate = true
			case "immutable":
				d.immutable = true
			case "only-if-cached":
				d.onlyIfCached = true
			case "must-understand":
				d.mustUnderstand = true
			case "max-age":
				d.maxAge = parseDelta(value)
			case "s-maxage":
				d.sMaxAge = parseDelta(value)
			case "stale-while-revalidate":
				d.staleWhileRevalidate = parseDelta(value)
			case "stale-if-error":
				d.staleIfErr = parseDelta(value)
			case "max-stale":
				// A max-stale without a value accepts any staleness.
				if value == "" {
					d.maxStale = maxDelta
				} else {
					d.maxStale = parseDelta(value)
				}
			case "min-fresh":
				d.minFresh = parseDelta(value)
			}
		}
	}
	return d
}

// nextDirective splits the first directive off s: a token, optionally
// "=" and a token or quoted string, up to the next comma outside quotes.
// ok is false for an empty or malformed element, which is skipped.
func nextDirective(s string) (name, value, rest string, ok bool) {
	s = strings.TrimLeft(s, " \t")
	i := 0
	for i < len(s) && s[i] != ',' && s[i] != '=' {
		i++
	}
	name = strings.ToLower(strings.TrimRight(s[:i], " \t"))
	ok = isToken(name)
	if i == len(s) {
		return name, "", "", ok
	}
	if s[i] == ',' {
		return name, "", s[i+1:], ok
	}
	// s[i] == '='
	s = strings.TrimLeft(s[i+1:], " \t")
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		j := 1
		closed := false
		for ; j < len(s); j++ {
			c := s[j]
			if c == '\\' && j+1 < len(s) {
				j++
				b.WriteByte(s[j])
				continue
			}
			if c == '"' {
				closed = true
				j++
				break
			}
			b.WriteByte(c)
		}
		value = b.String()
		s = s[j:]
		ok = ok && closed
	} else {
		j := 0
		for j < len(s) && s[j] != ',' {
			j++
		}
		value = strings.TrimRight(s[:j], " \t")
		s = s[j:]
	}
	// Anything between the value and the next comma is malformed.
	k := strings.IndexByte(s, ',')
	if k < 0 {
		if strings.TrimSpace(s) != "" {
			ok = false
		}
		return name, value, "", ok
	}
	if strings.TrimSpace(s[:k]) != "" {
		ok = false
	}
	return name, value, s[k+1:], ok
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// parseDelta parses delta-seconds: digits only, capped at maxDelta.
// Anything else is invalid and yields 0.
func parseDelta(v string) int64 {
	if v == "" {
		return 0
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int64(c-'0')
		if n >= maxDelta {
			return maxDelta
		}
	}
	return n
}
