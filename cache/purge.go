package cache

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// MaxPurgeBody bounds the JSON body the admin handler reads.
const MaxPurgeBody = 1 << 20

// PurgeRequest selects entries to purge. Its JSON form is what the admin
// handler accepts and what a fleet-wide purge carries to every site.
type PurgeRequest struct {
	// URLs purges every variant stored for each URL ("https://host/path?q";
	// the scheme is optional and ignored).
	URLs []string `json:"urls,omitempty"`
	// Prefixes purges every entry whose host and path start with one of
	// these ("example.com/static/"; a scheme, if given, is ignored).
	Prefixes []string `json:"prefixes,omitempty"`
	// Tags purges every entry whose Surrogate-Key or Cache-Tag response
	// header named one of these.
	Tags []string `json:"tags,omitempty"`
	// Soft marks entries stale instead of deleting them: they are
	// revalidated on next use (cheap when unchanged: a 304), and remain
	// available to stale-if-error and the offline policy.
	Soft bool `json:"soft,omitempty"`
}

// PurgeResult reports how many entries a purge matched.
type PurgeResult struct {
	Purged int `json:"purged"`
}

// ErrBadPurge reports a malformed purge request.
var ErrBadPurge = errors.New("bad purge request")

// Purge removes (or, when soft, marks stale) the selected entries, and
// the selected bodies still being fetched: fetched before the purge, they
// are not kept (or kept stale). It counts both. Requests from its return
// on never join a fetch it selects. Purging what is not stored is not an
// error; a malformed URL or an empty prefix is, wrapping ErrBadPurge, and
// then nothing is purged.
func (c *Cache) Purge(req PurgeRequest) (PurgeResult, error) {
	set := map[*item]bool{}
	var keys []string
	for _, u := range req.URLs {
		pk, err := primaryKeyOf(u)
		if err != nil {
			return PurgeResult{}, fmt.Errorf("%w: %w", ErrBadPurge, err)
		}
		keys = append(keys, pk)
	}
	var prefixes []string
	for _, p := range req.Prefixes {
		if i := strings.Index(p, "://"); i >= 0 {
			p = p[i+3:]
		}
		if p == "" {
			return PurgeResult{}, fmt.Errorf("%w: empty prefix would purge everything", ErrBadPurge)
		}
		prefixes = append(prefixes, strings.ToLower(p[:hostEnd(p)])+p[hostEnd(p):])
	}
	inFlight := c.markInFlight(&purgeMatch{keys: keys, prefixes: prefixes, tags: req.Tags, soft: req.Soft})
	for _, f := range inFlight {
		if f != nil && f.arrivedInFull() {
			// Only its commit is pending, which applies the mark: wait,
			// so that what the purge left (a stale entry) is there now.
			_ = f.wait(context.Background())
		}
	}
	for _, k := range keys {
		for _, it := range c.idx.variants(k) {
			set[it] = true
		}
	}
	for _, p := range prefixes {
		for _, it := range c.idx.withPrefix(p) {
			set[it] = true
		}
	}
	for _, t := range req.Tags {
		for _, it := range c.idx.tagged(t) {
			set[it] = true
		}
	}
	n := 0
	for it := range set {
		delete(inFlight, it.key) // committed since: counted once
	}
	for it := range set {
		if req.Soft {
			c.idx.mu.Lock()
			m := it.meta
			c.idx.mu.Unlock()
			if m.Invalid {
				n++
				continue
			}
			nm := *m
			nm.Invalid = true
			if err := c.updateMeta(it, &nm); err != nil {
				c.logger.Warn("soft purge failed; purging hard", "url", m.Primary, "err", err)
				c.drop(it)
			}
		} else {
			c.drop(it)
		}
		n++
	}
	c.purges.Add(1)
	c.purged.Add(int64(n + len(inFlight)))
	return PurgeResult{Purged: n + len(inFlight)}, nil
}

// purgeMatch is what a purge selects, to match the work in flight.
type purgeMatch struct {
	keys     []string // primary keys
	prefixes []string // of primary keys
	tags     []string
	soft     bool
}

// matches reports whether the purge selects an entry with m.
func (p *purgeMatch) matches(m *meta) bool {
	for _, k := range p.keys {
		if m.Primary == k {
			return true
		}
	}
	for _, pre := range p.prefixes {
		if strings.HasPrefix(m.Primary, pre) {
			return true
		}
	}
	for _, t := range p.tags {
		for _, mt := range m.Tags {
			if t == mt {
				return true
			}
		}
	}
	return false
}

// purgeMark is what purges did to a fill or flight in progress: none,
// soft (keep it stale) or hard (do not keep it). A harder mark wins.
type purgeMark uint8

const (
	unpurged purgeMark = iota
	softPurged
	hardPurged
)

// markInFlight applies a purge to the work in progress, under the lock
// that commit takes to index a fill. It returns the fills it selects by
// entry key, and the misses it selects whose response has not come yet
// (nil, under a key no entry can have). A fill that a purge selects was
// fetched before it: when it finishes it is not kept, or with a soft
// purge is kept stale. Flights the purge may select are detached, so that
// requests from now on fetch anew instead of joining them; a flight whose
// response has not come yet is detached when its URL matches, or when the
// purge names tags (which only the response will tell).
func (c *Cache) markInFlight(p *purgeMatch) map[string]*fill {
	mark := hardPurged
	if p.soft {
		mark = softPurged
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	matched := map[string]*fill{}
	for f := range c.fills {
		if p.matches(f.meta) {
			f.purge = max(f.purge, mark)
			matched[f.key] = f
		}
	}
	for key, fl := range c.flights {
		var hit bool
		select {
		case <-fl.ready:
			hit = fl.kind == outFill && p.matches(fl.fill.meta) ||
				fl.kind != outFill && p.matches(&meta{Primary: fl.primary, Tags: fl.tags})
		default:
			hit = p.matches(&meta{Primary: fl.primary})
			if hit && key[0] == 'm' {
				matched["\x00"+key] = nil // a miss's fetch it selects: counted
			}
			hit = hit || len(p.tags) > 0
		}
		if hit {
			fl.purge = max(fl.purge, mark)
			delete(c.flights, key)
		}
	}
	return matched
}

// startFill records f, started by flight fl (nil for none), as in
// flight; it inherits what purges did to fl.
func (c *Cache) startFill(f *fill, fl *flight) {
	c.mu.Lock()
	if fl != nil {
		f.purge = fl.purge
	}
	c.fills[f] = struct{}{}
	c.mu.Unlock()
}

// endFill records that f is no longer in flight.
func (c *Cache) endFill(f *fill) {
	c.mu.Lock()
	delete(c.fills, f)
	c.mu.Unlock()
}

// hostEnd is the length of the host part of "host/path".
func hostEnd(p string) int {
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return i
	}
	return len(p)
}

// AdminHandler returns the operator API, to be mounted on the agent's
// admin listener: POST with a JSON PurgeRequest purges and answers a JSON
// PurgeResult; GET answers JSON Stats. Every request must carry
// "Authorization: Bearer <token>". An empty token is refused, so a
// misconfigured agent cannot expose an open purge endpoint.
func (c *Cache) AdminHandler(token string) (http.Handler, error) {
	if token == "" {
		return nil, errors.New("cache admin: empty bearer token")
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tern-cache"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, c.Stats())
		case http.MethodPost:
			var req PurgeRequest
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxPurgeBody))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				http.Error(w, fmt.Sprintf("%v: %v", ErrBadPurge, err), http.StatusBadRequest)
				return
			}
			res, err := c.Purge(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			c.logger.Info("cache purge", "urls", len(req.URLs), "prefixes", len(req.Prefixes), "tags", len(req.Tags), "soft", req.Soft, "purged", res.Purged)
			writeJSON(w, http.StatusOK, res)
		default:
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	}), nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
