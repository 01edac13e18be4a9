package cache

import (
	"errors"
	"fmt"
	"net/http"
)

// Hit-for-pass: a URL whose response could not be stored is remembered
// for a while, and requests for it go straight to the origin instead of
// waiting on one another. Without it, request collapsing would serialize
// an uncacheable URL's clients behind one origin request at a time: each
// burst would join one leader, find its response unshareable, and only
// then send its own requests. Varnish's built-in VCL does the same
// ("hit-for-miss", 120 s).

// maxPasses bounds how many URLs are remembered as uncacheable; beyond it
// new ones are not remembered (they collapse as before).
const maxPasses = 10_000

// passReasons are the refusals of storable that describe the resource
// rather than one response or one request: a status (a 503 during an
// outage must not let every client through) or an Authorization header
// says nothing about the next request.
var passReasons = map[string]bool{
	"no-store": true, "private": true, "vary *": true, "no explicit freshness": true,
}

// markPass remembers primary as uncacheable until PassTTL from now, if
// reason is one that describes the resource.
func (c *Cache) markPass(primary, reason string) {
	if c.cfg.PassTTL <= 0 || !passReasons[reason] {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.passes[primary]; !ok && len(c.passes) >= maxPasses {
		for k, until := range c.passes {
			if !now.Before(until) {
				delete(c.passes, k)
			}
		}
		if len(c.passes) >= maxPasses {
			return
		}
	}
	c.passes[primary] = now.Add(c.cfg.PassTTL)
}

// passing reports whether requests for primary go straight to the origin.
func (c *Cache) passing(primary string) bool {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.passes[primary]
	if ok && !now.Before(until) {
		delete(c.passes, primary)
		ok = false
	}
	return ok
}

// unmarkPass forgets primary: its origin sent a storable response, or it
// was purged.
func (c *Cache) unmarkPass(primary string) {
	c.mu.Lock()
	delete(c.passes, primary)
	c.mu.Unlock()
}

// hitForPass forwards a request for a URL remembered as uncacheable. If
// the origin now answers with a storable response, the URL is forgotten,
// so that the next request fills the cache.
func (h *handler) hitForPass(w http.ResponseWriter, r *http.Request, primary string) {
	status := "fwd=uri-miss; detail=hit-for-pass"
	resp, err := h.roundTrip(r)
	if err != nil {
		h.upstreamError(w, r, err, status)
		return
	}
	if ok, _ := storable(r, parseCacheControl(r.Header), resp, responseDirectives(resp.Header, h.targets), h.strict); ok {
		h.c.unmarkPass(primary)
	}
	h.writeResponse(w, r, resp, status)
}

// statusError is an error that says which status answers it, such as the
// front door's error for a request body that could not be read.
type statusError interface{ HTTPStatus() int }

// bodyReadErr is a request body that remembers why it failed; the front
// door's bodies do.
type bodyReadErr interface{ ReadErr() error }

// upstreamError answers a forwarded request that failed: 502, unless the
// client's own request body is what failed, which its error's status
// answers (400, 408, 413) instead of blaming the origin. The body is
// asked as well as the error: a failed body also cancels the request, so
// the transport may report only the cancellation.
func (h *handler) upstreamError(w http.ResponseWriter, r *http.Request, err error, status string) {
	if b, ok := r.Body.(bodyReadErr); ok && b.ReadErr() != nil {
		err = b.ReadErr()
	}
	var se statusError
	if errors.As(err, &se) && se.HTTPStatus() >= 400 && se.HTTPStatus() < 500 {
		h.error(w, se.HTTPStatus(), err.Error(), status)
		return
	}
	h.fail(w, r, http.StatusBadGateway, fmt.Errorf("%w: %w", ErrUpstream, err), status)
}
