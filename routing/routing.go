// Package routing maps a request's host and path to what serves it. A Table
// is immutable once built; a Router holds the current Table and swaps it
// atomically, so a deploy never blocks or tears a request in flight.
package routing

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
)

// ErrConflict reports that two apps claim the same host and path.
var ErrConflict = errors.New("route conflict")

// Route is one host/path claim and the handler behind it.
type Route struct {
	// Host is an exact host name, a wildcard "*.example.com" that matches
	// any name below example.com, or "" for any host.
	Host string
	// Path is a path prefix; it matches itself and anything below it on a
	// segment boundary ("/api" matches "/api" and "/api/x", not "/apix").
	Path string
	// App names the owner of the route, for conflicts, logs and metrics.
	App string
	// Handler serves requests that match.
	Handler http.Handler

	// RedirectHTTPS answers a request that arrived over plain HTTP with a
	// permanent redirect (308, which keeps the method and body) to the
	// same URL over HTTPS.
	RedirectHTTPS bool
	// Scheme, when "https" or "http", serves the route over that scheme
	// only; a request over the other gets 403. Unlike RedirectHTTPS it
	// never sends the client elsewhere, for APIs whose clients would
	// otherwise have sent a credential in the clear before following a
	// redirect. Empty serves both.
	Scheme string
	// Headers are set on every response of the route before its handler
	// runs (Strict-Transport-Security, Cache-Control, CORS…); the handler
	// may still replace them.
	Headers http.Header
	// EarlyData lets requests with safe methods (GET, HEAD, OPTIONS) be
	// served from TLS early data (0-RTT). Early data can be replayed by
	// anyone who saw it, so it is refused by default and always for other
	// methods: such requests get 425 Too Early and the client retries
	// after the handshake (RFC 8470). It only matters when the listener
	// accepts 0-RTT at all.
	EarlyData bool
}

// Schemes a Route may be restricted to.
const (
	SchemeHTTP  = "http"
	SchemeHTTPS = "https"
)

// Table is an immutable set of routes. The zero value matches nothing.
type Table struct {
	exact    map[string][]Route // by host, longest path first
	wildcard map[string][]Route // by suffix after "*.", longest path first
	any      []Route            // host "", longest path first
}

// NewTable builds a table. Two routes with the same host and path are a
// conflict unless they belong to the same app; the error names both apps.
func NewTable(routes []Route) (*Table, error) {
	t := &Table{exact: map[string][]Route{}, wildcard: map[string][]Route{}}
	seen := map[[2]string]string{}
	for _, r := range routes {
		r.Host = strings.ToLower(r.Host)
		if r.Path == "" {
			r.Path = "/"
		}
		if !strings.HasPrefix(r.Path, "/") {
			return nil, fmt.Errorf("app %s: route path %q must start with /", r.App, r.Path)
		}
		if len(r.Path) > 1 {
			r.Path = strings.TrimSuffix(r.Path, "/")
		}
		var err error
		if r, err = r.checkOptions(); err != nil {
			return nil, err
		}
		k := [2]string{r.Host, r.Path}
		if other, ok := seen[k]; ok && other != r.App {
			return nil, fmt.Errorf("%w: apps %s and %s both claim host %q path %q", ErrConflict, other, r.App, r.Host, r.Path)
		}
		seen[k] = r.App
		switch {
		case r.Host == "":
			t.any = append(t.any, r)
		case strings.HasPrefix(r.Host, "*."):
			s := r.Host[2:]
			t.wildcard[s] = append(t.wildcard[s], r)
		default:
			t.exact[r.Host] = append(t.exact[r.Host], r)
		}
	}
	byLen := func(rs []Route) {
		sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].Path) > len(rs[j].Path) })
	}
	byLen(t.any)
	for _, rs := range t.exact {
		byLen(rs)
	}
	for _, rs := range t.wildcard {
		byLen(rs)
	}
	return t, nil
}

// Match returns the route for host and path. An exact host beats a
// wildcard, the nearest wildcard beats a farther one, and either beats a
// route for any host; within the chosen host, the longest path wins. host
// may carry a port, which is ignored.
func (t *Table) Match(host, path string) (Route, bool) {
	if t == nil {
		return Route{}, false
	}
	host = normalizeHost(host)
	if r, ok := matchPath(t.exact[host], path); ok {
		return r, true
	}
	for h := host; ; {
		i := strings.IndexByte(h, '.')
		if i < 0 {
			break
		}
		h = h[i+1:]
		if r, ok := matchPath(t.wildcard[h], path); ok {
			return r, true
		}
	}
	return matchPath(t.any, path)
}

// Routes returns the table's routes, in no particular order.
func (t *Table) Routes() []Route {
	if t == nil {
		return nil
	}
	out := append([]Route(nil), t.any...)
	for _, rs := range t.exact {
		out = append(out, rs...)
	}
	for _, rs := range t.wildcard {
		out = append(out, rs...)
	}
	return out
}

// ClaimsHost reports whether an exact or wildcard route claims host (with
// any path): the hosts an agent may obtain a certificate for. Routes for
// any host claim none, so that a name pointed at the agent by someone else
// never makes it ask a CA for anything.
func (t *Table) ClaimsHost(host string) bool {
	if t == nil {
		return false
	}
	host = normalizeHost(host)
	if len(t.exact[host]) > 0 {
		return true
	}
	for h := host; ; {
		i := strings.IndexByte(h, '.')
		if i < 0 {
			return false
		}
		h = h[i+1:]
		if len(t.wildcard[h]) > 0 {
			return true
		}
	}
}

func matchPath(rs []Route, path string) (Route, bool) {
	for _, r := range rs {
		if HasPathPrefix(path, r.Path) {
			return r, true
		}
	}
	return Route{}, false
}

// HasPathPrefix reports whether path is prefix or lies below it on a segment
// boundary.
func HasPathPrefix(path, prefix string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

func normalizeHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// Router serves requests through the current Table. It is safe for
// concurrent use; Swap never blocks requests.
type Router struct {
	table atomic.Pointer[Table]
	// NotFound serves requests that match no route; nil means 404.
	NotFound http.Handler
	// HTTPSPort is the port HTTPS redirects point to; 0 means 443. Set it
	// before serving.
	HTTPSPort int
}

// Swap installs t as the current table and returns the previous one.
func (r *Router) Swap(t *Table) *Table { return r.table.Swap(t) }

// Table returns the current table (nil before the first Swap).
func (r *Router) Table() *Table { return r.table.Load() }

// Match returns the route a request would take, once its path is
// cleaned of dot segments; a path that cannot be cleaned matches nothing.
func (r *Router) Match(req *http.Request) (Route, bool) {
	u, err := withCleanPath(req.URL)
	if err != nil {
		return Route{}, false
	}
	return r.table.Load().Match(req.Host, u.Path)
}

// ClaimsHost reports whether the current table claims host; see
// Table.ClaimsHost.
func (r *Router) ClaimsHost(host string) bool { return r.table.Load().ClaimsHost(host) }

// ServeHTTP dispatches req to its route's handler, applying the route's
// scheme, redirect, early-data and header options first.
//
// Dot segments ("/a/../b", also as "%2e%2e") are removed from the path
// before routing and the handler gets the clean path, so that a route for
// a prefix never passes on a path that an upstream would resolve outside
// it; a path that would still hold one once its encoded slashes were
// decoded gets 400.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	u, err := withCleanPath(req.URL)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if u != req.URL {
		req = req.WithContext(req.Context()) // a copy, not to change the caller's
		req.URL = u
		req.RequestURI = u.RequestURI()
	}
	rt, ok := r.table.Load().Match(req.Host, req.URL.Path)
	if !ok {
		if r.NotFound != nil {
			r.NotFound.ServeHTTP(w, req)
			return
		}
		http.Error(w, "no route for "+req.Host+req.URL.Path, http.StatusNotFound)
		return
	}
	if !rt.admit(w, req, r.HTTPSPort) {
		return
	}
	rt.Handler.ServeHTTP(w, req)
}
