package wasmhost

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// envVar is one environment variable handed to a guest.
type envVar struct {
	key, value string
}

// Values of the constant CGI meta-variables. SERVER_SOFTWARE stays WAGI's
// so that guests that branch on it keep working unchanged.
const (
	gatewayInterface = "CGI/1.1"
	serverSoftware   = "WAGI/1"
)

// cgiVars are the meta-variables cgiEnv always sets. The manifest may not
// set them (or any HTTP_ name), so a manifest can never shadow what the
// request says.
var cgiVars = map[string]bool{
	"AUTH_TYPE":         true,
	"CONTENT_LENGTH":    true,
	"CONTENT_TYPE":      true,
	"GATEWAY_INTERFACE": true,
	"PATH_INFO":         true,
	"PATH_TRANSLATED":   true,
	"QUERY_STRING":      true,
	"REMOTE_ADDR":       true,
	"REMOTE_HOST":       true,
	"REMOTE_USER":       true,
	"REQUEST_METHOD":    true,
	"SCRIPT_NAME":       true,
	"SERVER_NAME":       true,
	"SERVER_PORT":       true,
	"SERVER_PROTOCOL":   true,
	"SERVER_SOFTWARE":   true,
	"X_FULL_URL":        true,
	"X_MATCHED_ROUTE":   true,
	"X_RAW_PATH_INFO":   true,
}

// cgiEnv appends to dst the WAGI environment for request r served on
// route, whose body (already read) is contentLength bytes long. extra are
// the manifest's variables; they come first, as in WAGI.
//
// It follows WAGI's build_headers, with these deliberate differences, each
// for the reason given:
//   - CONTENT_TYPE carries the request's Content-Type (WAGI looks up a
//     header that never exists and always sends "", against RFC 3875 4.1.3).
//   - SERVER_PORT defaults to 443 for TLS requests rather than always 80.
//   - Repeated header fields are joined with ", " ("; " for Cookie) rather
//     than keeping only the last (RFC 9110 5.3, RFC 6265 5.4).
//   - Header fields whose names contain '_' are dropped, as Apache and
//     nginx do: "X_Forwarded_For" would otherwise smuggle in a second
//     HTTP_X_FORWARDED_FOR beside the one a proxy set.
//   - The Proxy header is dropped (httpoxy: a guest's HTTP client would
//     read HTTP_PROXY as its proxy), and so is Proxy-Authorization, beside
//     WAGI's Authorization and Connection (RFC 3875 4.1.18).
//   - NUL, which a guest's environment cannot hold, becomes U+FFFD, and so
//     does invalid UTF-8 in the decoded PATH_INFO (as WAGI's lossy decode).
func cgiEnv(dst []envVar, r *http.Request, route string, contentLength int64, extra []envVar) []envVar {
	dst = append(dst, extra...)

	tls := r.TLS != nil
	scheme := "http"
	if tls {
		scheme = "https"
	}
	host, port := serverHostPort(r.Host, tls)
	matched, prefix := splitRoute(route)
	rawInfo, info := pathInfo(r.URL, prefix)
	scriptName := prefix
	if scriptName == "" {
		scriptName = "/"
	}

	dst = append(dst,
		envVar{"AUTH_TYPE", ""},
		envVar{"CONTENT_LENGTH", strconv.FormatInt(contentLength, 10)},
		envVar{"CONTENT_TYPE", r.Header.Get("Content-Type")},
		envVar{"GATEWAY_INTERFACE", gatewayInterface},
		envVar{"PATH_INFO", info},
		envVar{"PATH_TRANSLATED", info},
		envVar{"QUERY_STRING", r.URL.RawQuery},
		envVar{"REMOTE_ADDR", remoteIP(r.RemoteAddr)},
		envVar{"REMOTE_HOST", remoteIP(r.RemoteAddr)},
		envVar{"REMOTE_USER", ""},
		envVar{"REQUEST_METHOD", r.Method},
		envVar{"SCRIPT_NAME", scriptName},
		envVar{"SERVER_NAME", host},
		envVar{"SERVER_PORT", port},
		envVar{"SERVER_PROTOCOL", r.Proto},
		envVar{"SERVER_SOFTWARE", serverSoftware},
		envVar{"X_FULL_URL", scheme + "://" + net.JoinHostPort(host, port) + r.URL.RequestURI()},
		envVar{"X_MATCHED_ROUTE", matched},
		envVar{"X_RAW_PATH_INFO", rawInfo},
	)
	if r.Host != "" {
		// net/http moves Host out of r.Header; WAGI passes it on.
		dst = append(dst, envVar{"HTTP_HOST", r.Host})
	}
	for name, values := range r.Header {
		if len(values) == 0 || dropHeader(name) {
			continue
		}
		value := values[0]
		if len(values) > 1 {
			sep := ", "
			if name == "Cookie" {
				sep = "; "
			}
			value = strings.Join(values, sep)
		}
		if strings.IndexByte(value, 0) >= 0 {
			// net/http refuses NUL in fields, but not every server in
			// front of this one need be net/http.
			value = strings.ReplaceAll(value, "\x00", "\uFFFD")
		}
		dst = append(dst, envVar{headerEnvName(name), value})
	}
	return dst
}

// cgiArgs appends to dst the guest's argv as WAGI builds it: the request
// path as sent (still escaped), then each '&'-separated item of the raw
// query string, undecoded, empty items included.
func cgiArgs(dst []string, r *http.Request) []string {
	dst = append(dst, r.URL.EscapedPath())
	if q := r.URL.RawQuery; q != "" {
		for {
			item, rest, found := strings.Cut(q, "&")
			dst = append(dst, item)
			if !found {
				break
			}
			q = rest
		}
	}
	return dst
}

// splitRoute returns the route as matched (X_MATCHED_ROUTE) and the path
// prefix it stands for. A WAGI wildcard "/x/..." and a plain prefix "/x"
// or "/x/" all stand for the prefix "/x"; the root route is the empty
// prefix.
func splitRoute(route string) (matched, prefix string) {
	if route == "" {
		route = "/"
	}
	prefix = strings.TrimSuffix(route, "/...")
	prefix = strings.TrimSuffix(prefix, "/")
	return route, prefix
}

// pathInfo returns the part of u's path after prefix, raw (as escaped on
// the wire: X_RAW_PATH_INFO) and decoded (PATH_INFO). A path outside the
// prefix has no path info, as in WAGI.
func pathInfo(u *url.URL, prefix string) (raw, decoded string) {
	escaped := u.EscapedPath()
	if rest, ok := cutPathPrefix(escaped, prefix); ok {
		d, err := url.PathUnescape(rest)
		if err != nil {
			d = rest
		}
		return rest, sanitizeEnvValue(d)
	}
	// The router matched on the decoded path and the prefix has characters
	// the escaped path encodes: cut the decoded path and re-escape the rest.
	if rest, ok := cutPathPrefix(u.Path, prefix); ok {
		return (&url.URL{Path: rest}).EscapedPath(), sanitizeEnvValue(rest)
	}
	return "", ""
}

// cutPathPrefix cuts prefix from path at a segment boundary: "/foo" is a
// prefix of "/foo" and "/foo/bar" but not of "/foobar".
func cutPathPrefix(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return "", false
	}
	return rest, true
}

// sanitizeEnvValue replaces NUL and invalid UTF-8, which a decoded path
// may hold but an environment variable may not, with U+FFFD.
func sanitizeEnvValue(s string) string {
	if !strings.Contains(s, "\x00") && utf8.ValidString(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// serverHostPort splits the Host header into SERVER_NAME and SERVER_PORT,
// defaulting the port by scheme and the name to localhost, as WAGI does.
func serverHostPort(hostHeader string, tls bool) (host, port string) {
	port = "80"
	if tls {
		port = "443"
	}
	if hostHeader == "" {
		return "localhost", port
	}
	if h, p, err := net.SplitHostPort(hostHeader); err == nil {
		if p == "" {
			p = port
		}
		if h == "" {
			h = "localhost"
		}
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostHeader, "["), "]"), port
}

// remoteIP returns the IP of a RemoteAddr "ip:port", or addr unchanged if
// it has no port.
func remoteIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// dropHeader reports whether the canonical header name must not reach
// the guest; see cgiEnv for why each one is dropped.
func dropHeader(name string) bool {
	switch name {
	case "Authorization", "Proxy-Authorization", "Connection", "Proxy":
		return true
	}
	return strings.IndexByte(name, '_') >= 0
}

// headerEnvName turns a header name into its CGI meta-variable name:
// HTTP_ followed by the name upper-cased with '-' as '_' (RFC 3875 4.1.18).
func headerEnvName(name string) string {
	b := make([]byte, 0, len("HTTP_")+len(name))
	b = append(b, "HTTP_"...)
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-':
			c = '_'
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}
