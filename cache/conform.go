package cache

import (
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// Strict field parsing for freshness (RFC 9111 §4.2, §5.1, §5.3; RFC 9110
// §5.6.7). Lenient date parsing turns malformed values into lifetimes an
// origin never sent, so anything outside the grammar counts as stale.

// The three date formats RFC 9110 §5.6.7 lets a recipient accept, as
// shapes: 'd' a digit, 'a' a letter, anything else itself. The weekday
// of rfc850 varies in length and is checked apart.
const (
	imfShape     = "aaa, dd aaa dddd dd:dd:dd GMT" // Sun, 06 Nov 1994 08:49:37 GMT
	rfc850Shape  = "dd-aaa-dd dd:dd:dd GMT"        // after "Sunday, "
	asctimeShape = "aaa aaa _d dd:dd:dd dddd"      // Sun Nov  6 08:49:37 1994
)

// parseHTTPDate parses an HTTP-date strictly: one of the three formats
// exactly, with single spaces and two-digit fields. time.Parse alone
// accepts one-digit hours and runs of spaces.
func parseHTTPDate(v string) (time.Time, bool) {
	var layout string
	switch {
	case matchShape(v, imfShape):
		layout = http.TimeFormat
	case matchShape(v, asctimeShape):
		layout = time.ANSIC
	default:
		i := 0
		for i < len(v) && isAlpha(v[i]) {
			i++
		}
		if i < 6 || len(v) < i+2 || v[i:i+2] != ", " || !matchShape(v[i+2:], rfc850Shape) {
			return time.Time{}, false
		}
		layout = time.RFC850
	}
	t, err := time.Parse(layout, v)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// matchShape reports whether v has exactly the shape s: 'd' is a digit,
// 'a' a letter, '_' a space or a digit, any other byte itself.
func matchShape(v, s string) bool {
	if len(v) != len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := v[i]
		switch s[i] {
		case 'd':
			if c < '0' || c > '9' {
				return false
			}
		case 'a':
			if !isAlpha(c) {
				return false
			}
		case '_':
			if c != ' ' && (c < '0' || c > '9') {
				return false
			}
		default:
			if c != s[i] {
				return false
			}
		}
	}
	return true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// expiresAt returns the time Expires gives. ok is false when the field
// is absent; valid is false when it is present but not exactly one
// HTTP-date on one line, which §5.3 says means already expired.
func expiresAt(h http.Header) (t time.Time, ok, valid bool) {
	vs := h["Expires"]
	if len(vs) == 0 {
		return time.Time{}, false, false
	}
	if len(vs) > 1 {
		return time.Time{}, true, false
	}
	t, valid = parseHTTPDate(vs[0])
	return t, true, valid
}

// ageValue returns the Age field in seconds. valid is false when Age is
// present but not a single non-negative integer on one line (a list such
// as "old, 0", a sign, a fraction): such a response is taken as stale.
func ageValue(h http.Header) (secs int64, valid bool) {
	vs := h["Age"]
	if len(vs) == 0 {
		return 0, true
	}
	if len(vs) > 1 || vs[0] == "" {
		return 0, false
	}
	for i := 0; i < len(vs[0]); i++ {
		if c := vs[0][i]; c < '0' || c > '9' {
			return 0, false
		}
	}
	return parseDelta(vs[0]), true
}

// understoodStatus is what this cache implements the semantics of, for
// must-understand (§5.2.2.3): the final statuses of RFC 9110 that a GET
// can answer with a stored body. 206 and 304 are absent: fills fetch
// whole bodies and a 304 only refreshes an entry.
var understoodStatus = map[int]bool{
	200: true, 203: true, 204: true, 300: true, 301: true, 302: true, 303: true,
	307: true, 308: true, 400: true, 403: true, 404: true, 405: true, 410: true,
	414: true, 500: true, 501: true, 502: true, 503: true, 504: true,
}

// storableStatus reports whether a response with status may be stored at
// all (§3), and whether this cache understands the status. An interim
// (1xx) response never is (§3: the status must be final); 206 and 304
// never are here; any other status in 200–999 is, unless must-understand
// asks for a cache that understands it.
func storableStatus(status int, cc directives) (understood, ok bool) {
	understood = understoodStatus[status]
	switch {
	case status < 200 || status > 999:
		return understood, false
	case status == http.StatusPartialContent || status == http.StatusNotModified:
		return understood, false
	case cc.mustUnderstand && !understood:
		return understood, false
	}
	return understood, true
}

// withheldFields returns the fields of the response header h that its
// Cache-Control names in a qualified private="…" (§5.2.2.7: a shared
// cache must not store them) or no-cache="…" (§5.2.2.4: not to be reused
// without revalidation, so not kept for reuse at all), nil when none.
// The rest of the response is stored; the withheld fields go only to the
// client whose request fetched it, so a Set-Cookie named there never
// reaches another client from the cache.
func withheldFields(h http.Header) http.Header {
	cc := parseCacheControl(h)
	if cc.privateFields == "" && cc.noCacheFields == "" {
		return nil
	}
	var out http.Header
	for _, list := range []string{cc.privateFields, cc.noCacheFields} {
		for _, f := range strings.Split(list, ",") {
			f = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(f))
			if v := h[f]; len(v) > 0 {
				if out == nil {
					out = http.Header{}
				}
				out[f] = v
			}
		}
	}
	return out
}
