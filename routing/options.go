package routing

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// checkOptions validates a route's per-route options and returns the route
// with its headers copied under canonical names, so that the table owns
// them and they match however the manifest spelled them. Errors name the
// app and the route.
func (r Route) checkOptions() (Route, error) {
	switch r.Scheme {
	case "", SchemeHTTP, SchemeHTTPS:
	default:
		return r, fmt.Errorf("app %s: route %s%s: scheme %q: want %q, %q or empty", r.App, r.Host, r.Path, r.Scheme, SchemeHTTP, SchemeHTTPS)
	}
	if r.RedirectHTTPS && r.Scheme == SchemeHTTP {
		return r, fmt.Errorf("app %s: route %s%s: redirect_https contradicts scheme %q", r.App, r.Host, r.Path, r.Scheme)
	}
	if len(r.Headers) == 0 {
		r.Headers = nil
		return r, nil
	}
	h := make(http.Header, len(r.Headers))
	for k, vs := range r.Headers {
		if !validToken(k) {
			return r, fmt.Errorf("app %s: route %s%s: header name %q is not a token", r.App, r.Host, r.Path, k)
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n\x00") {
				return r, fmt.Errorf("app %s: route %s%s: header %s: value contains CR, LF or NUL", r.App, r.Host, r.Path, k)
			}
			h.Add(k, v)
		}
	}
	r.Headers = h
	return r, nil
}

// validToken reports whether s is an RFC 9110 token, as header names must
// be.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// admit applies the route's options to req before its handler runs. It
// reports false when it has answered the request itself.
func (r Route) admit(w http.ResponseWriter, req *http.Request, httpsPort int) bool {
	secure := req.TLS != nil
	if !secure && r.RedirectHTTPS {
		http.Redirect(w, req, httpsURL(req, httpsPort), http.StatusPermanentRedirect)
		return false
	}
	if r.Scheme == SchemeHTTPS && !secure || r.Scheme == SchemeHTTP && secure {
		http.Error(w, "this route is served over "+r.Scheme+" only", http.StatusForbidden)
		return false
	}
	if secure && !req.TLS.HandshakeComplete && !(r.EarlyData && safeMethod(req.Method)) {
		// RFC 8470: the client retries once the handshake completes.
		http.Error(w, "request not accepted in early data", http.StatusTooEarly)
		return false
	}
	h := w.Header()
	for k, vs := range r.Headers {
		// Clipped, so that a handler appending to the header copies it
		// rather than writing into the route's shared slice.
		h[k] = slices.Clip(vs)
	}
	return true
}

// safeMethod reports whether m is safe in the sense of RFC 9110 section
// 9.2.1 (no state changes), which is what makes replay harmless.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// httpsURL is req's URL over HTTPS on port (443 when 0 or 443).
func httpsURL(req *http.Request, port int) string {
	host := req.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // an IPv6 literal
	}
	if port != 0 && port != 443 {
		host += ":" + strconv.Itoa(port)
	}
	return "https://" + host + req.URL.RequestURI()
}
