package cache

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	gosync "sync"
)

// ErrNotStorable reports that a response's own headers forbid storing it
// (no-store, private, Set-Cookie, Vary: *, or no freshness information).
var ErrNotStorable = errors.New("response not storable")

// nsPrefix starts namespaced primary keys. A NUL never appears in a host,
// so function entries can never be served for, or purged as, a URL.
const nsPrefix = "\x00fn/"

// Namespace is the cache as the functions of one app see it: responses
// looked up and stored under keys the function chooses, isolated from
// other apps and from the URL-keyed entries of origin routes. Entries
// share the cache's byte budget and eviction, and purge by tag reaches
// them. Its methods are safe for concurrent use.
type Namespace struct {
	c      *Cache
	prefix string
}

// Namespace returns the namespace of app. App names must be non-empty and
// must not contain "/", which would let one app reach into another's keys.
func (c *Cache) Namespace(app string) (*Namespace, error) {
	if app == "" || strings.Contains(app, "/") {
		return nil, fmt.Errorf("cache namespace %q: app name must be non-empty and without /", app)
	}
	return &Namespace{c: c, prefix: nsPrefix + app + "/"}, nil
}

// Lookup returns the fresh response stored under key, with Age and
// Cache-Status set; the caller must close its body. An absent or stale
// entry yields an error wrapping ErrNotFound.
func (n *Namespace) Lookup(key string) (*http.Response, error) {
	c := n.c
	now := c.now()
	it, m := c.idx.match(n.prefix+key, "", nil)
	if it == nil {
		return nil, fmt.Errorf("cache lookup %q: %w", key, ErrNotFound)
	}
	if !m.fresh(now) {
		c.release(it.body)
		return nil, fmt.Errorf("cache lookup %q: %w", key, ErrNotFound)
	}
	c.idx.touch(it)
	h := m.Header.Clone()
	h.Set("Age", strconv.FormatInt(int64(m.age(now).Seconds()), 10))
	h.Set("Cache-Status", fmt.Sprintf("%s; hit; ttl=%d", c.cfg.Name, ttl(m, now)))
	return &http.Response{
		Status:        strconv.Itoa(m.Status) + " " + http.StatusText(m.Status),
		StatusCode:    m.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: it.size,
		Body:          &releasingReader{entryReader: *c.reader(it, m)},
	}, nil
}

// releasingReader ends the read of its body on Close.
type releasingReader struct {
	entryReader
	once gosync.Once
}

func (r *releasingReader) Close() error {
	r.once.Do(func() {
		r.entryReader.Close()
		r.c.release(r.it.body)
	})
	return nil
}

// Store stores resp under key, reading and closing its body; freshness
// comes from resp's headers as for any response (Date, Cache-Control,
// Expires...). A response whose headers forbid storing yields
// ErrNotStorable and is not read.
func (n *Namespace) Store(key string, resp *http.Response) error {
	c := n.c
	req := &http.Request{Method: http.MethodGet, Header: http.Header{}}
	if ok, why := storable(req, directives{maxAge: -1, sMaxAge: -1}, resp, responseDirectives(resp.Header, targetFields), false); !ok {
		resp.Body.Close()
		return fmt.Errorf("cache store %q: %w (%s)", key, ErrNotStorable, why)
	}
	now := c.now()
	m := &meta{
		Primary:   n.prefix + key,
		Status:    resp.StatusCode,
		Header:    storedHeader(resp.Header),
		Tags:      tags(resp.Header),
		ChunkSize: ChunkSize,
	}
	m.freshness(resp.Header, targetFields, now, now, c.cfg.HeuristicMax)
	fl := newFill(c, nil, m.Primary, m, resp.ContentLength)
	fl.run(resp.Body)
	if fl.err != nil {
		return fmt.Errorf("cache store %q: %w", key, fl.err)
	}
	return nil
}

// Delete removes the entry under key. Deleting an absent key is not an
// error.
func (n *Namespace) Delete(key string) error {
	n.c.invalidate(n.prefix + key)
	return nil
}
