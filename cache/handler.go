package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tern-edge/tern/internal/reqid"
)

// ErrUpstream is the error a handler reports, in its 502 body, when the
// upstream round trip fails and nothing stale may be served; its cause
// goes to the log, not the body.
var ErrUpstream = errors.New("upstream unavailable")

// Handler returns an http.Handler that serves GET and HEAD requests from
// the cache and fetches misses and revalidations through upstream (an
// origin.Origin in production). Other methods pass through to upstream;
// unsafe ones invalidate what they target (§4.4).
//
// Upstream receives requests with URL holding only the path and query and
// Host holding the client's host, as an http.Server hands them to a
// handler; it must fill in the rest. Its errors mean "unreachable" for the
// offline policy.
func (c *Cache) Handler(upstream http.RoundTripper) http.Handler {
	return c.HandlerWith(upstream, HandlerConfig{})
}

// HandlerConfig holds the per-origin choices of a cache handler.
type HandlerConfig struct {
	// ShareCredentialed stores and serves responses to requests with
	// Cookie or Authorization as RFC 9111 alone allows. By default such a
	// response is shared only when the origin says so: without public or
	// s-maxage it is stored only with explicit freshness (max-age or
	// Expires, never heuristic) and never served stale under
	// Config.MaxStale, since a CDN must not hand one user's page to the
	// next because the origin forgot its headers.
	ShareCredentialed bool
	// Name is the origin's name in log lines.
	Name string
	// TargetedField names the field that targets this cache alone (RFC
	// 9213 §2.2), obeyed ahead of CDN-Cache-Control; empty means
	// TernCacheControl. An operator whose origins already address a
	// field to their CDN names it here.
	TargetedField string
}

// HandlerWith is Handler with per-origin choices.
func (c *Cache) HandlerWith(upstream http.RoundTripper, cfg HandlerConfig) http.Handler {
	return &handler{c: c, up: upstream, strict: !cfg.ShareCredentialed, name: cfg.Name, targets: targets(cfg.TargetedField)}
}

type handler struct {
	c  *Cache
	up http.RoundTripper
	// strict applies the credentialed-request rules of HandlerConfig.
	strict bool
	name   string // the origin's, for log lines
	// targets are the targeted fields obeyed, in precedence order.
	targets []string
}

type outcome int

const (
	outFill    outcome = iota // a storable response; its body is being stored
	outUpdated                // 304: the stale entry was refreshed
	outPass                   // not storable; the response goes to the leader only
	outError                  // the round trip failed
)

// flight is one origin request that any number of client requests wait
// on: a miss (keyed by primary key) or a revalidation (keyed by entry).
type flight struct {
	ready chan struct{} // closed once the fields below are set
	// refs counts the fetch and the requests awaiting the flight, under
	// Cache.mu; the last to leave releases the fill's body.
	refs int
	// waiting counts the clients awaiting the flight's response, under
	// Cache.mu. When the last leaves before the response arrives, a
	// flight started for a client is abandoned: cancel ends its origin
	// request, and later clients start a flight of their own.
	waiting   int
	abandoned bool
	cancel    context.CancelFunc // nil for background revalidations

	kind   outcome
	status int            // origin status, 0 on error
	fill   *fill          // outFill
	item   *item          // outUpdated
	meta   *meta          // outUpdated
	resp   *http.Response // outPass, owned by the leader
	reason string         // outPass: why it was not stored
	err    error          // outError

	// Set when it starts: what purges match it by before its response.
	primary string
	tags    []string  // of the entry being revalidated
	purge   purgeMark // under Cache.mu, passed on to its fill
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		h.serveGet(w, r)
	case http.MethodHead:
		h.serveHead(w, r)
	case http.MethodOptions, http.MethodTrace, "CONNECT":
		h.pass(w, r, "fwd=method")
	default:
		h.serveUnsafe(w, r)
	}
}

func (h *handler) serveGet(w http.ResponseWriter, r *http.Request) {
	c := h.c
	reqCC := parseCacheControl(r.Header)
	if reqCC.noStore {
		h.pass(w, r, "fwd=request")
		return
	}
	pk := primaryKey(r)
	now := c.now()
	it, m, mem := c.idx.hit(pk, schemeOf(r), r.Header, now)
	if it != nil && mem == nil {
		defer c.release(it.body)
	}
	if it != nil && m.fresh(now) {
		if !h.serveEntry(w, r, it, m, mem, now, "hit; ttl="+strconv.FormatInt(ttl(m, now), 10)) {
			h.refetch(w, r)
		}
		return
	}
	if reqCC.onlyIfCached {
		h.error(w, http.StatusGatewayTimeout, "only-if-cached: no fresh response stored", "fwd=miss")
		return
	}
	if it == nil {
		if c.passing(pk) {
			h.hitForPass(w, r, pk)
			return
		}
		if r.Context().Err() != nil {
			return // reset before it got here: fetch nothing for nobody
		}
		fwd := "fwd=uri-miss"
		if len(c.idx.variants(pk)) > 0 {
			fwd = "fwd=vary-miss"
		}
		f, leader := h.join(missKey(r), r, nil, nil, true)
		h.await(w, r, f, leader, nil, nil, fwd)
		return
	}
	stale := m.staleness(now)
	if !m.MustRevalidate && !m.NoCache && m.SWR >= 0 && stale <= m.SWR {
		// Serve now, refresh behind the client (RFC 5861 §3).
		h.join("v"+it.key, r, it, m, false)
		if !h.serveEntry(w, r, it, m, nil, now, fmt.Sprintf("hit; ttl=%d; detail=stale-while-revalidate", ttl(m, now))) {
			h.refetch(w, r)
		}
		return
	}
	f, leader := h.join("v"+it.key, r, it, m, true)
	h.await(w, r, f, leader, it, m, "fwd=stale")
}

// refetch answers r from the origin, as a miss, after serveEntry found
// its entry's body damaged and dropped the entry.
func (h *handler) refetch(w http.ResponseWriter, r *http.Request) {
	f, leader := h.join(missKey(r), r, nil, nil, true)
	h.await(w, r, f, leader, nil, nil, "fwd=miss; detail=damaged")
}

// await waits for f and answers the client from its outcome.
func (h *handler) await(w http.ResponseWriter, r *http.Request, f *flight, leader bool, it *item, m *meta, fwd string) {
	defer h.leave(f)
	select {
	case <-f.ready:
	case <-r.Context().Done():
		h.abandon(f)
		if leader {
			go func() { // the pass response, if any, is the leader's to close
				<-f.ready
				if f.resp != nil {
					f.resp.Body.Close()
				}
			}()
		}
		return
	}
	c := h.c
	status := fwd
	if f.status != 0 {
		status += "; fwd-status=" + strconv.Itoa(f.status)
	}
	if !leader {
		status += "; collapsed"
	}
	switch f.kind {
	case outFill:
		fl := f.fill
		if !leader && fl.arrivedInFull() {
			// Only the commit is pending: wait for it (normally well under
			// a millisecond) and answer from the entry if it is fresh, as
			// for a request that came just after. The client that caused
			// the fill, and those that joined while its body streamed in,
			// do not wait on storage (up to maxEarlyCommits fills).
			if fl.wait(r.Context()) != nil {
				return
			}
			now := c.now()
			it, m, mem := c.idx.hit(primaryKey(r), schemeOf(r), r.Header, now)
			if it != nil && mem == nil {
				defer c.release(it.body)
			}
			// A damaged entry is dropped and the fill answers instead.
			if it != nil && m.fresh(now) && h.serveEntry(w, r, it, m, mem, now, "hit; ttl="+strconv.FormatInt(ttl(m, now), 10)) {
				return
			}
		}
		if !servesScheme(fl.meta, r) {
			h.pass(w, r, fwd+"; detail=scheme-mismatch")
			return
		}
		if len(fl.meta.Vary) > 0 && !equalStrings(varyValues(r.Header, fl.meta.Vary), fl.meta.VaryValues) {
			h.pass(w, r, fwd+"; detail=vary-mismatch")
			return
		}
		part, ok := partOfFill(r, fl)
		if !ok {
			h.pass(w, r, fwd+"; detail=range-during-fill")
			return
		}
		var start int64
		if !part.whole && !part.unsatisfiable {
			start = part.start
		}
		rd, ok := fl.newReader(r.Context(), start)
		if !ok {
			h.pass(w, r, fwd+"; detail=store-failed")
			return
		}
		defer rd.Close()
		h.serveFill(w, r, fl, rd, part, leader, status+"; stored")
	case outUpdated:
		if !servesScheme(f.meta, r) {
			h.pass(w, r, status+"; detail=scheme-mismatch")
			return
		}
		now := c.now()
		if !h.serveEntry(w, r, f.item, f.meta, nil, now, fmt.Sprintf("%s; ttl=%d", status, ttl(f.meta, now))) {
			h.pass(w, r, status+"; detail=damaged")
		}
	case outError:
		if it != nil {
			if why := h.staleAllowed(m, true); why != "" {
				h.serveStale(w, r, it, m, why, status)
				return
			}
		}
		code := http.StatusBadGateway
		if it != nil {
			code = http.StatusGatewayTimeout // §5.2.2.2: revalidation required, origin unreachable
		}
		h.fail(w, r, code, fmt.Errorf("%w: %w", ErrUpstream, f.err), status)
	case outPass:
		var resp *http.Response
		if leader {
			resp = f.resp
		}
		if it != nil && f.status >= 500 {
			unreachable := f.status == http.StatusBadGateway || f.status == http.StatusServiceUnavailable || f.status == http.StatusGatewayTimeout
			if why := h.staleAllowed(m, unreachable); why != "" {
				if resp != nil {
					resp.Body.Close()
				}
				h.serveStale(w, r, it, m, why, status)
				return
			}
		}
		if resp == nil {
			h.pass(w, r, fwd)
			return
		}
		if f.reason != "" {
			status += "; detail=" + strings.ReplaceAll(f.reason, " ", "-")
		}
		h.writeResponse(w, r, resp, status)
	}
}

// staleAllowed says why a stale entry may be served when the origin
// failed, or "" if it may not.
func (h *handler) staleAllowed(m *meta, unreachable bool) string {
	if m.MustRevalidate || m.NoCache {
		return ""
	}
	stale := m.staleness(h.c.now())
	if m.SIE >= 0 && stale <= m.SIE {
		return "stale-if-error"
	}
	if unreachable && !m.SMaxAge && !m.Credentialed && h.c.cfg.MaxStale > 0 && stale <= h.c.cfg.MaxStale {
		return "offline"
	}
	return ""
}

func (h *handler) serveStale(w http.ResponseWriter, r *http.Request, it *item, m *meta, why, status string) {
	now := h.c.now()
	if !h.serveEntry(w, r, it, m, nil, now, fmt.Sprintf("hit; ttl=%d; %s; detail=%s", ttl(m, now), strings.TrimPrefix(status, "fwd=stale; "), why)) {
		h.fail(w, r, http.StatusBadGateway, errors.New("stored response damaged and origin failing"), status)
	}
}

// ttl is the remaining freshness in whole seconds (negative when stale).
func ttl(m *meta, now time.Time) int64 {
	return int64((m.Lifetime - m.age(now)) / time.Second)
}

// servesScheme reports whether an entry (or fill) with meta m may answer
// r. Only a flight on an entry stored before schemes were recorded can
// hand a client a response for the other scheme: its revalidation is
// shared by requests of both.
func servesScheme(m *meta, r *http.Request) bool { return m.serves(schemeOf(r)) }

// missKey is the flight key of a miss for r: "m", the scheme and the
// primary key, so that an http and an https miss never share a response.
func missKey(r *http.Request) string {
	return "m" + schemeOf(r) + " " + primaryKey(r)
}

// join returns the flight under key, starting it if there is none; the
// starter is the leader. A foreground caller awaits the flight (and must
// leave it); a flight started in the foreground hands a non-storable
// response to its leader, one started in the background discards it.
func (h *handler) join(key string, r *http.Request, it *item, m *meta, foreground bool) (*flight, bool) {
	c := h.c
	c.mu.Lock()
	if f := c.flights[key]; f != nil && !f.abandoned {
		if foreground {
			f.refs++
			f.waiting++
		}
		c.mu.Unlock()
		return f, false
	}
	f := &flight{ready: make(chan struct{}), refs: 1, primary: primaryKey(r)} // a miss
	if m != nil {
		f.primary, f.tags = m.Primary, m.Tags // a revalidation of m's entry
	}
	out := upstreamRequest(r, m)
	if foreground {
		f.refs++
		f.waiting++
		var ctx context.Context
		ctx, f.cancel = context.WithCancel(out.Context())
		out = out.WithContext(ctx)
	}
	c.flights[key] = f
	c.mu.Unlock()
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		h.fetch(key, f, out, it, m, foreground)
	}()
	return f, true
}

// abandon notes that a client awaiting f went away. When it was the last
// and f has no response yet, f's origin request is cancelled: a client
// that resets its request (HTTP/2 rapid reset) must not leave an origin
// fetch and a stored entry behind.
func (h *handler) abandon(f *flight) {
	c := h.c
	c.mu.Lock()
	f.waiting--
	last := f.waiting == 0 && f.cancel != nil
	select {
	case <-f.ready:
		last = false
	default:
	}
	if last {
		f.abandoned = true
	}
	c.mu.Unlock()
	if last {
		f.cancel()
	}
}

// endFlight removes f from the flights, unless a purge detached it.
func (h *handler) endFlight(key string, f *flight) {
	h.c.mu.Lock()
	if h.c.flights[key] == f {
		delete(h.c.flights, key)
	}
	h.c.mu.Unlock()
}

// leave drops one reference to f.
func (h *handler) leave(f *flight) {
	c := h.c
	c.mu.Lock()
	f.refs--
	last := f.refs == 0
	c.mu.Unlock()
	if last && f.fill != nil {
		c.release(f.fill.body)
	}
}

// fetch runs a flight: one origin round trip, then a 304 update, a fill,
// or a pass. A fill stays joinable until committed, so requests that
// arrive while a large body streams in share it too.
func (h *handler) fetch(key string, f *flight, out *http.Request, it *item, m *meta, foreground bool) {
	c := h.c
	defer h.leave(f)
	defer h.endFlight(key, f)
	requestTime := c.now()
	resp, err := h.up.RoundTrip(out)
	responseTime := c.now()
	if err != nil {
		f.kind, f.err = outError, err
		close(f.ready)
		return
	}
	f.status = resp.StatusCode
	switch {
	case m != nil && resp.StatusCode == http.StatusNotModified:
		resp.Body.Close()
		nm := *m
		nm.Header = updateHeaders(m.Header, resp.Header)
		hh := nm.Header
		if a := resp.Header.Get("Age"); a != "" {
			hh = hh.Clone()
			hh.Set("Age", a)
		}
		nm.freshness(hh, h.targets, requestTime, responseTime, c.cfg.HeuristicMax)
		if nm.Credentialed && nm.Heuristic {
			nm.Lifetime = 0
		}
		nm.Invalid = false
		if nm.Scheme == "" {
			// An entry from before schemes were recorded: now known good
			// for this one.
			nm.Scheme = schemeOf(out)
		}
		if err := c.updateMeta(it, &nm); err != nil {
			c.logger.Warn("cache revalidation update failed", "url", m.Primary, "err", err)
		}
		f.kind, f.item, f.meta = outUpdated, it, &nm
		close(f.ready)
		return
	case m != nil && resp.StatusCode >= 500:
		// Keep the stale entry; the waiters decide whether to serve it.
		f.kind, f.resp, f.reason = outPass, resp, "origin error"
	default:
		cc := responseDirectives(resp.Header, h.targets)
		ok, why := storable(out, parseCacheControl(out.Header), resp, cc, h.strict)
		pk := primaryKey(out)
		if !ok {
			c.markPass(pk, why)
			f.kind, f.resp, f.reason = outPass, resp, why
			break
		}
		c.unmarkPass(pk)
		nm := &meta{
			Primary:   pk,
			Scheme:    schemeOf(out),
			Status:    resp.StatusCode,
			Header:    storedHeader(resp.Header),
			Vary:      varyNames(resp.Header),
			Tags:      tags(resp.Header),
			ChunkSize: ChunkSize,
		}
		nm.VaryValues = varyValues(out.Header, nm.Vary)
		nm.Credentialed = h.strict && credentialedPrivate(out, cc)
		nm.freshness(resp.Header, h.targets, requestTime, responseTime, c.cfg.HeuristicMax)
		fl := newFill(c, f, storageKey(pk, nm.Scheme, nm.Vary, nm.VaryValues), nm, resp.ContentLength)
		fl.withheld = withheldFields(resp.Header)
		fl.detach = func() { h.endFlight(key, f) }
		c.idx.acquire(fl.body) // released when the last reader leaves
		f.kind, f.fill = outFill, fl
		close(f.ready)
		fl.run(resp.Body)
		return
	}
	if !foreground {
		f.resp.Body.Close()
		f.resp = nil
	}
	close(f.ready)
}

// upstreamRequest is the request a fill or revalidation sends: detached
// from the client, whose departure must not abort a fill others share;
// without the client's range and preconditions, since the cache wants the
// whole representation; and conditional on the stale entry's validators.
func upstreamRequest(r *http.Request, m *meta) *http.Request {
	out := r.Clone(context.WithoutCancel(r.Context()))
	out.RequestURI = ""
	out.Body = http.NoBody
	out.ContentLength = 0
	for _, k := range []string{"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"} {
		out.Header.Del(k)
	}
	removeHopByHop(out.Header)
	if m != nil {
		if etag := m.Header.Get("Etag"); etag != "" {
			out.Header.Set("If-None-Match", etag)
		}
		if lm := m.Header.Get("Last-Modified"); lm != "" {
			out.Header.Set("If-Modified-Since", lm)
		}
	}
	return out
}

// serveEntry answers from a committed entry, with ranges and
// preconditions for 200 responses, and records the use for eviction. mem
// is the body from the RAM tier when the caller already has it (and has
// recorded the use), else nil. It reports false, having written nothing,
// when the body turns out damaged before anything went out (the entry is
// dropped then), so that the caller can answer some other way.
func (h *handler) serveEntry(w http.ResponseWriter, r *http.Request, it *item, m *meta, mem []byte, now time.Time, status string) bool {
	if mem == nil {
		mem = h.c.idx.use(it)
	}
	whole := m.Status == http.StatusOK && !conditional(r)
	// Chunk 0 of a whole body from storage, as a file to send or read into
	// memory: opened or read before the headers, so that a damaged body
	// can still be fetched anew.
	var first []byte
	var firstFile *os.File
	var err error
	switch {
	case mem == nil && it.size <= h.c.cfg.MemoryObjectBytes && h.c.cfg.MemoryBytes > 0:
		// Small: read it whole, and keep it for the next hit.
		er := h.c.reader(it, m)
		mem, err = io.ReadAll(er)
		er.Close()
		if err == nil {
			h.c.idx.setMem(it, mem)
		}
	case mem == nil && whole && r.Method != http.MethodHead && it.size > 0:
		if canSendFile(w, r) {
			firstFile, err = h.c.openStored(it, int64(m.ChunkSize), 0)
		}
		if firstFile != nil {
			defer firstFile.Close()
		} else if err == nil {
			bp := bufPool.Get().(*[]byte)
			defer bufPool.Put(bp)
			first, err = h.c.readStored(it, int64(m.ChunkSize), 0, (*bp)[:0])
		}
	}
	if errors.Is(err, errDamaged) {
		return false
	}
	if err != nil {
		h.fail(w, r, http.StatusBadGateway, fmt.Errorf("cache read %s: %w", m.Primary, err), status)
		return true
	}
	hdr := w.Header()
	for k, v := range m.Header {
		hdr[k] = v
	}
	removeTargeted(hdr, h.targets)
	// Canonical keys assigned directly: this is the hit path.
	hdr["Age"] = []string{strconv.FormatInt(int64(m.age(now)/time.Second), 10)}
	hdr["Cache-Status"] = []string{h.c.cfg.Name + "; " + status}
	if whole {
		h.writeWhole(w, r, it, m, mem, first, firstFile)
		return true
	}
	var rd io.ReadSeeker
	if mem != nil {
		rd = bytes.NewReader(mem)
	} else {
		er := h.c.reader(it, m)
		defer er.Close()
		rd = er
	}
	if m.Status != http.StatusOK {
		if m.Status != http.StatusNoContent {
			hdr.Set("Content-Length", strconv.FormatInt(it.size, 10))
		}
		w.WriteHeader(m.Status)
		if r.Method != http.MethodHead {
			_, _ = io.Copy(w, rd)
		}
		return true
	}
	if _, ok := hdr["Content-Type"]; !ok {
		hdr["Content-Type"] = nil // stops ServeContent from sniffing
	}
	http.ServeContent(w, r, "", m.LastModified, rd)
	return true
}

// sendFileMin is the smallest body sent with sendfile. Below it one
// write of the headers and the body together costs less than a write of
// the headers, a seek and a sendfile.
const sendFileMin = 64 << 10

// sendFile sends the RAM-tier body mem of it with sendfile(2), from its
// memfd copy, and reports whether it did. Only plain HTTP/1.1 can: TLS
// and HTTP/2 and 3 frame the bytes in the process. The headers are set;
// the first sendFileHead bytes go out with them from memory, in one write
// (net/http's ReadFrom would otherwise read them from the file first, to
// sniff a content type), and the rest from the file.
func (h *handler) sendFile(w http.ResponseWriter, r *http.Request, it *item, mem []byte) bool {
	if len(mem) < sendFileMin || !canSendFile(w, r) {
		return false
	}
	fb := h.c.idx.file(it, mem)
	if fb == nil {
		return false
	}
	f := fb.open(sendFileHead)
	if f == nil {
		return false
	}
	defer fb.put(f)
	n, err := w.Write(mem[:sendFileHead])
	if err == nil {
		// Without a flush (a wrapper that cannot) ReadFrom sniffs the
		// next bytes from the file, which still come in order.
		_ = http.NewResponseController(w).Flush()
		var m int64
		m, _ = io.Copy(w, &io.LimitedReader{R: f, N: int64(len(mem) - sendFileHead)})
		n += int(m)
	}
	h.c.sentFiles.Add(1)
	h.c.sentFileBytes.Add(int64(n))
	return true
}

// canSendFile reports whether the response to r can be sent with
// sendfile(2): plain HTTP/1.1 (TLS and HTTP/2 and 3 frame the bytes in the
// process), through a writer that passes files on to the connection (a
// wrapper without ReadFrom would copy them through a buffer instead).
func canSendFile(w http.ResponseWriter, r *http.Request) bool {
	_, ok := w.(io.ReaderFrom)
	return ok && r.TLS == nil && r.ProtoMajor == 1
}

// sendFileHead is what sendFile writes from memory with the headers: as
// much as net/http's ReadFrom sniffs, so that it sniffs nothing.
const sendFileHead = 512

// conditional reports whether r has a range or a precondition, which
// http.ServeContent evaluates; the other requests get the whole body.
// The server hands handlers canonical header keys.
func conditional(r *http.Request) bool {
	hd := r.Header
	return len(hd["Range"]) > 0 || len(hd["If-None-Match"]) > 0 || len(hd["If-Modified-Since"]) > 0 ||
		len(hd["If-Match"]) > 0 || len(hd["If-Unmodified-Since"]) > 0
}

var acceptRanges = []string{"bytes"}

// writeWhole sends a stored 200 in full, with the headers ServeContent
// would add (Accept-Ranges, Content-Length), in as few writes as
// net/http allows: a body from the RAM tier goes to the response writer
// in one Write (with the headers, in one syscall, when it fits the
// server's buffer) or with sendfile, a stored one chunk by chunk, with
// sendfile for the chunks the storage keeps as files when the connection
// allows it. ServeContent instead copies through a 32 KiB buffer after
// flushing the first 512 bytes with the headers, which costs two syscalls
// for a 1 KB body and six for 100 KB. first or firstFile is chunk 0 of a
// stored body, already read or opened.
func (h *handler) writeWhole(w http.ResponseWriter, r *http.Request, it *item, m *meta, mem, first []byte, firstFile *os.File) {
	hdr := w.Header()
	hdr["Accept-Ranges"] = acceptRanges
	hdr["Content-Length"] = []string{strconv.FormatInt(it.size, 10)}
	if _, ok := hdr["Content-Type"]; !ok {
		hdr["Content-Type"] = nil // no sniffing: the origin sent none
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if mem != nil {
		if !h.sendFile(w, r, it, mem) {
			_, _ = w.Write(mem)
		}
		return
	}
	files := firstFile != nil
	if files {
		h.c.sentFiles.Add(1)
	}
	b := first
	for idx, off := 0, int64(0); off < it.size; idx++ {
		f := firstFile
		var err error
		if idx > 0 {
			f = nil
			if files {
				f, err = h.c.openStored(it, int64(m.ChunkSize), idx)
			}
			if f == nil && err == nil {
				// Read into the buffer of the chunk before, written by now.
				b, err = h.c.readStored(it, int64(m.ChunkSize), idx, b[:0])
			}
			if err != nil {
				// Headers are out: cut the connection so the client sees
				// a truncated body, not a complete-looking short one.
				h.c.logger.Warn("cache read failed", "url", m.Primary, "chunk", idx, "err", err)
				panic(http.ErrAbortHandler)
			}
		}
		if f != nil {
			n, err := io.Copy(w, f) // sendfile(2), via the connection's ReadFrom
			if idx > 0 {
				f.Close()
			}
			h.c.sentFileBytes.Add(n)
			if err != nil {
				return // the client left
			}
			off += n
			continue
		}
		if _, err := w.Write(b); err != nil {
			return // the client left
		}
		off += int64(len(b))
	}
}

// serveFill streams a body, or the part of it asked for, while it is
// being stored; a range waits for its chunks to land. The leader, whose
// request fetched it, also gets the fields that were not stored.
func (h *handler) serveFill(w http.ResponseWriter, r *http.Request, fl *fill, rd *fillReader, part fillPart, leader bool, status string) {
	hdr := w.Header()
	for k, v := range fl.meta.Header {
		hdr[k] = v
	}
	removeTargeted(hdr, h.targets)
	if leader {
		for k, v := range fl.withheld {
			hdr[k] = v
		}
	}
	hdr.Set("Age", strconv.FormatInt(int64(fl.meta.age(h.c.now())/time.Second), 10))
	hdr.Set("Cache-Status", h.c.cfg.Name+"; "+status)
	if part.unsatisfiable {
		hdr.Set("Content-Range", "bytes */"+strconv.FormatInt(fl.length, 10))
		http.Error(w, "range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
		return
	}
	code, n := fl.meta.Status, fl.length
	if !part.whole {
		code, n = http.StatusPartialContent, part.end-part.start+1
		hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", part.start, part.end, fl.length))
	}
	if n >= 0 {
		hdr.Set("Content-Length", strconv.FormatInt(n, 10))
	}
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	var err error
	if part.whole {
		_, err = io.Copy(w, rd)
	} else {
		// The range may lie in chunks not stored yet: send the headers now
		// so the client knows its answer is on the way.
		_ = http.NewResponseController(w).Flush()
		_, err = io.CopyN(w, rd, n)
	}
	if err != nil && r.Context().Err() == nil {
		// The fill failed midway: cut the connection so the client sees
		// a truncated body rather than a complete-looking short one.
		panic(http.ErrAbortHandler)
	}
}

// serveHead answers HEAD from a fresh GET entry, and passes it through
// otherwise: fetching a whole body to answer HEAD would waste the origin's
// bandwidth.
func (h *handler) serveHead(w http.ResponseWriter, r *http.Request) {
	now := h.c.now()
	it, m, mem := h.c.idx.hit(primaryKey(r), schemeOf(r), r.Header, now)
	if it != nil && mem == nil {
		defer h.c.release(it.body)
	}
	if it != nil && m.fresh(now) && h.serveEntry(w, r, it, m, mem, now, "hit; ttl="+strconv.FormatInt(ttl(m, now), 10)) {
		return
	}
	h.pass(w, r, "fwd=method")
}

// serveUnsafe forwards an unsafe request and, when it succeeds,
// invalidates the target URI and the same-origin Location and
// Content-Location URIs (§4.4).
func (h *handler) serveUnsafe(w http.ResponseWriter, r *http.Request) {
	resp, err := h.roundTrip(r)
	if err != nil {
		h.upstreamError(w, r, err, "fwd=method")
		return
	}
	if resp.StatusCode < 400 {
		h.c.invalidate(primaryKey(r))
		for _, f := range []string{"Location", "Content-Location"} {
			if v := resp.Header.Get(f); v != "" {
				if u, err := r.URL.Parse(v); err == nil && (u.Host == "" || strings.EqualFold(u.Host, r.Host)) {
					h.c.invalidate(normalHost(r.Host, schemeOf(r)) + u.RequestURI())
				}
			}
		}
	}
	h.writeResponse(w, r, resp, "fwd=method")
}

// pass forwards r without involving the cache.
func (h *handler) pass(w http.ResponseWriter, r *http.Request, status string) {
	resp, err := h.roundTrip(r)
	if err != nil {
		h.upstreamError(w, r, err, status)
		return
	}
	h.writeResponse(w, r, resp, status)
}

func (h *handler) roundTrip(r *http.Request) (*http.Response, error) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	if r.ContentLength == 0 {
		out.Body = http.NoBody
	}
	removeHopByHop(out.Header)
	resp, err := h.up.RoundTrip(out)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err)
	}
	return resp, nil
}

func (h *handler) writeResponse(w http.ResponseWriter, r *http.Request, resp *http.Response, status string) {
	defer resp.Body.Close()
	hdr := w.Header()
	for k, v := range resp.Header {
		hdr[k] = v
	}
	removeHopByHop(hdr)
	removeTargeted(hdr, h.targets)
	hdr.Del("Surrogate-Key")
	hdr.Del("Cache-Tag")
	if resp.ContentLength >= 0 {
		hdr.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	hdr.Set("Cache-Status", h.c.cfg.Name+"; "+status)
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, resp.Body); err != nil && r.Context().Err() == nil {
		panic(http.ErrAbortHandler)
	}
}

// fail answers a request the cache could not serve with code and only
// "upstream unavailable" and the request's id: the cause names upstream
// addresses and dial errors a client must not see, so it goes to the log
// line that carries the same id.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, code int, cause error, status string) {
	w.Header().Set("Cache-Status", h.c.cfg.Name+"; "+status)
	id := reqid.Error(w, r, code, "upstream unavailable")
	h.c.logger.LogAttrs(r.Context(), slog.LevelWarn, "origin failed",
		slog.String("origin", h.name), slog.String("request_id", id), slog.Int("status", code),
		slog.String("host", r.Host), slog.String("path", r.URL.Path), slog.String("err", cause.Error()))
}

func (h *handler) error(w http.ResponseWriter, code int, msg, status string) {
	w.Header().Set("Cache-Status", h.c.cfg.Name+"; "+status)
	http.Error(w, msg, code)
}

// invalidate removes every variant stored under primary.
func (c *Cache) invalidate(primary string) int {
	c.unmarkPass(primary)
	vs := c.idx.variants(primary)
	for _, it := range vs {
		c.drop(it)
	}
	return len(vs)
}

// primaryKeyOf is the primary key of an absolute or host-relative URL.
func primaryKeyOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("parse url %q: %w", raw, err)
	}
	if u.Host == "" {
		// "example.com/path" without a scheme parses as a path.
		u, err = url.Parse("http://" + raw)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("url %q: no host", raw)
		}
	}
	return normalHost(u.Host, u.Scheme) + u.RequestURI(), nil
}
