// Package cache is Tern's shared HTTP cache (RFC 9111) for origin routes:
// freshness, validation, Vary, stale-while-revalidate, stale-if-error, an
// operator policy to serve stale content while the origin is unreachable,
// request collapsing, streaming fills, Range from cache, purge by URL,
// prefix and tag, a byte budget with segmented-LRU eviction, and a RAM
// tier for small hot bodies. Entries live in a Storage (badger in production, see store.CacheStore), so they
// survive restarts.
//
// # Notes
//
// The cache is shared (a CDN), so it honours s-maxage and refuses
// private responses. It ignores a client's no-cache and max-age request
// directives, as CDNs do, so that clients cannot force origin traffic; it
// honours no-store and only-if-cached. http and https requests for the
// same host and target share entries, as in Varnish.
package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"
)

// ChunkSize is the size of the chunks bodies are stored in. At 1 MiB a
// chunk reaches badger's default value threshold, so full chunks go to the
// value log and are not rewritten by LSM compactions; it also bounds the
// memory one fill or one reader holds.
const ChunkSize = 1 << 20

// Default values of Config fields left zero.
const (
	DefaultHeuristicMax = 24 * time.Hour
	DefaultGCInterval   = 5 * time.Minute
	DefaultPassTTL      = 2 * time.Minute
	DefaultName         = "tern"

	DefaultMemoryBytes       = 64 << 20
	DefaultMemoryObjectBytes = 256 << 10
)

// Config configures a Cache. Only Storage is required.
type Config struct {
	// Storage holds the entries.
	Storage Storage
	// MaxBytes bounds the stored bodies; 0 means unbounded.
	MaxBytes int64
	// MemoryBytes is the RAM tier's budget: bodies of at most
	// MemoryObjectBytes are also kept in memory, least recently used
	// first out. 0 means DefaultMemoryBytes; negative disables the tier.
	MemoryBytes int64
	// MemoryObjectBytes is the largest body the RAM tier holds, at most
	// ChunkSize. 0 means DefaultMemoryObjectBytes.
	MemoryObjectBytes int64
	// MaxStale is the operator's offline policy: while the origin is
	// unreachable (a transport error, or 502, 503 or 504), serve entries
	// that are stale by at most MaxStale, even without stale-if-error.
	// Responses with must-revalidate are never served stale. 0 disables.
	MaxStale time.Duration
	// HeuristicMax caps heuristic freshness (10% of the time since
	// Last-Modified). Default DefaultHeuristicMax.
	HeuristicMax time.Duration
	// Name identifies this cache in Cache-Status. Default DefaultName.
	Name string
	// GCInterval is how often Run reclaims storage space, when the
	// storage supports it. Default DefaultGCInterval.
	GCInterval time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// NewTicker makes Run's ticker. Default wraps time.NewTicker.
	NewTicker func(time.Duration) (<-chan time.Time, func())
	// Logger receives warnings about storage failures. Default discards.
	Logger *slog.Logger
	// PassTTL is how long a URL whose response could not be stored
	// (private, no-store, Set-Cookie, Vary: *, no freshness) goes straight
	// to the origin, without request collapsing, before the cache tries
	// again. Default DefaultPassTTL; negative disables it.
	PassTTL time.Duration
}

// Cache is a shared HTTP cache. Its methods are safe for concurrent use.
type Cache struct {
	cfg    Config
	st     Storage
	idx    *index
	now    func() time.Time
	logger *slog.Logger

	mu      gosync.Mutex // guards flights, passes, fills and purges
	flights map[string]*flight
	passes  map[string]time.Time // hit-for-pass: primary key → until (pass.go)
	// fills are the fills in flight, which purges mark (purge.go).
	fills map[*fill]struct{}
	// commitSlots bounds the fills whose clients have been answered while
	// their commit is pending (fill.run).
	commitSlots chan struct{}

	bg gosync.WaitGroup // background revalidations, fills and deletes

	// deletes are the evicted entries waiting to leave storage, and
	// deleting says whether a goroutine is removing them (deleteLater).
	delMu      gosync.Mutex
	deletes    []*item
	delPending int   // queued or being deleted
	delBytes   int64 // their sizes
	deleting   bool

	sentFiles     atomic.Int64 // hits sent with sendfile
	sentFileBytes atomic.Int64

	// storeFailures counts bodies the storage could not take; failMu
	// guards when the last line about them was logged, and at which count.
	storeFailures atomic.Int64
	// purged counts entries a purge removed, purges the purge requests,
	// for Stats.
	purged, purges atomic.Int64
	failMu         gosync.Mutex
	failLogged     time.Time
	failLoggedAt   int64
}

// StoreFailLogInterval is the least time between two log lines about
// bodies the storage could not take; the line counts those since the last.
const StoreFailLogInterval = 10 * time.Second

// maxEarlyCommits is how many fills may have answered their clients while
// their commit is pending. Storage stalls of tens of milliseconds (a
// value-log file synced on rotation) fit in it at a thousand misses a
// second; a longer one makes further clients wait for their commit, as
// all did before, instead of holding a chunk buffer each in memory.
const maxEarlyCommits = 32

// New opens a cache over cfg.Storage, rebuilding its index from what the
// storage holds and evicting down to the budget.
func New(cfg Config) (*Cache, error) {
	if cfg.Storage == nil {
		return nil, errors.New("cache: no storage")
	}
	if cfg.MaxBytes < 0 || cfg.MaxStale < 0 || cfg.HeuristicMax < 0 || cfg.GCInterval < 0 {
		return nil, fmt.Errorf("cache: negative limit in config (max bytes %d, max stale %s, heuristic max %s, gc interval %s)",
			cfg.MaxBytes, cfg.MaxStale, cfg.HeuristicMax, cfg.GCInterval)
	}
	if cfg.MemoryBytes == 0 {
		cfg.MemoryBytes = DefaultMemoryBytes
	}
	if cfg.MemoryBytes < 0 {
		cfg.MemoryBytes = 0
	}
	if cfg.MemoryObjectBytes == 0 {
		cfg.MemoryObjectBytes = DefaultMemoryObjectBytes
	}
	if cfg.MemoryObjectBytes < 0 || cfg.MemoryObjectBytes > ChunkSize {
		return nil, fmt.Errorf("cache: memory object bytes %d out of range [0, %d]", cfg.MemoryObjectBytes, ChunkSize)
	}
	if cfg.HeuristicMax == 0 {
		cfg.HeuristicMax = DefaultHeuristicMax
	}
	if cfg.GCInterval == 0 {
		cfg.GCInterval = DefaultGCInterval
	}
	if cfg.PassTTL == 0 {
		cfg.PassTTL = DefaultPassTTL
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewTicker == nil {
		cfg.NewTicker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cache{
		cfg:     cfg,
		st:      cfg.Storage,
		idx:     newIndex(cfg.MaxBytes, cfg.MemoryBytes, cfg.MemoryObjectBytes),
		now:     cfg.Now,
		logger:  cfg.Logger,
		flights: map[string]*flight{},
		passes:  map[string]time.Time{},
		fills:   map[*fill]struct{}{},

		commitSlots: make(chan struct{}, maxEarlyCommits),
	}
	if s, ok := cfg.Storage.(sweeper); ok {
		if err := s.Sweep(); err != nil {
			return nil, fmt.Errorf("open cache: %w", err)
		}
	}
	var items []*item
	type unreadable struct {
		it  *item
		err error
	}
	var bad []unreadable
	err := cfg.Storage.Walk(func(e Entry) error {
		m, err := decodeMeta(e.Meta)
		if err == nil {
			err = m.check(e.Size)
		}
		if err != nil {
			// Unreadable: drop rather than fail the agent.
			bad = append(bad, unreadable{&item{key: e.Key, body: e.Body}, err})
			return nil
		}
		items = append(items, &item{key: e.Key, body: e.Body, size: e.Size, meta: m})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open cache: %w", err)
	}
	for _, b := range bad {
		c.logger.Warn("dropping unreadable cache entry", "key", b.it.key, "err", b.err)
		c.delete(b.it)
	}
	for _, v := range c.idx.rebuild(items) {
		c.delete(v)
	}
	return c, nil
}

// Run reclaims storage space every Config.GCInterval until ctx is done,
// then waits for background revalidations to finish. It returns nil when
// ctx is cancelled.
func (c *Cache) Run(ctx context.Context) error {
	defer c.bg.Wait()
	gc, ok := c.st.(collector)
	if !ok {
		<-ctx.Done()
		return nil
	}
	tick, stop := c.cfg.NewTicker(c.cfg.GCInterval)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			if err := gc.GC(); err != nil {
				c.logger.Warn("cache storage gc failed", "err", err)
			}
		}
	}
}

// Wait blocks until background revalidations, fills and deletes have
// finished; tests and shutdown use it before closing the storage.
func (c *Cache) Wait() { c.bg.Wait() }

// Stats describes the cache's contents and how its hits were sent.
type Stats struct {
	Entries  int   `json:"entries"`
	Bytes    int64 `json:"bytes"`
	MaxBytes int64 `json:"max_bytes"`
	// MemoryBytes is what the RAM tier holds: bodies, and the copies of
	// those sent with sendfile.
	MemoryBytes int64 `json:"memory_bytes"`
	// SendfileHits counts hits sent with sendfile(2) (plain HTTP/1.1:
	// bodies of 64 KiB and more in the RAM tier, and larger ones from the
	// chunk files of the storage), SendfileBytes the bytes it sent.
	SendfileHits  int64 `json:"sendfile_hits"`
	SendfileBytes int64 `json:"sendfile_bytes"`
	// StoreFailures counts responses the storage could not take (a full
	// disk): they were relayed from the origin to their clients and not
	// stored.
	StoreFailures int64 `json:"store_failures"`
	// Evictions counts entries removed to keep within the budget or the
	// disk's reserve; Purges the purge requests, Purged the entries (and
	// fetches) they removed or marked stale.
	Evictions int64 `json:"evictions"`
	Purges    int64 `json:"purges"`
	Purged    int64 `json:"purged"`
}

// Stats returns the number of entries and bytes stored.
func (c *Cache) Stats() Stats {
	n, b, mb := c.idx.stats()
	return Stats{Entries: n, Bytes: b, MaxBytes: c.cfg.MaxBytes, MemoryBytes: mb,
		SendfileHits: c.sentFiles.Load(), SendfileBytes: c.sentFileBytes.Load(),
		StoreFailures: c.storeFailures.Load(),
		Evictions:     c.idx.evictions.Load(), Purges: c.purges.Load(), Purged: c.purged.Load()}
}

// Shed evicts least recently used entries holding at least n bytes, or
// all of them, and deletes them from storage before it returns: the
// agent calls it when the disk runs short of its reserve. It returns the
// bytes evicted.
func (c *Cache) Shed(n int64) int64 {
	evicted, bytes := c.idx.shed(n)
	for _, it := range evicted {
		c.delete(it)
	}
	return bytes
}

// storeFailed counts a body the storage could not take, for err, and
// logs it unless a line went out less than StoreFailLogInterval ago: a
// full disk fails every miss, and one line per miss would flood the log.
func (c *Cache) storeFailed(err error) {
	n := c.storeFailures.Add(1)
	now := c.now()
	c.failMu.Lock()
	if !c.failLogged.IsZero() && now.Sub(c.failLogged) < StoreFailLogInterval {
		c.failMu.Unlock()
		return
	}
	since := n - c.failLoggedAt
	c.failLogged, c.failLoggedAt = now, n
	c.failMu.Unlock()
	c.logger.Warn("cache store failed; responses are relayed from the origin unstored",
		"err", err, "failures", since, "interval", StoreFailLogInterval.String())
}

// delete removes it from storage.
func (c *Cache) delete(it *item) {
	if err := c.st.Delete(it.key, it.body); err != nil {
		c.logger.Warn("cache delete failed", "key", it.key, "err", err)
	}
}

// drop removes it from the index and storage; from storage only once
// the last reader of its body is done.
func (c *Cache) drop(it *item) {
	if c.idx.remove(it) {
		c.delete(it)
	}
}

// Evicted entries waiting to leave storage are at most
// maxPendingDeletes, and their bodies at most a quarter of the cache's
// budget: the disk may hold that much more than the budget while it is
// slow to delete.
const (
	maxPendingDeletes  = 1 << 16
	pendingDeleteShare = 4
)

// deleteLater removes the entries a commit evicted (or replaced) from
// storage in the background, off the fill that made room for its entry. A
// delete can wait on the disk as long as a write does (unlinking a file
// whose pages are being written back waits for that write), and under a
// steady stream of misses the commits queued behind such deletes until
// clients waited too, hundreds of milliseconds at p99 (docs/CACHE.md).
// Past the bounds above the fill deletes its victims itself, which slows
// fills to the disk's pace rather than let the store outgrow its budget.
//
// Only evictions wait: a crash before their delete brings back entries
// that are still correct. Purges delete at once.
func (c *Cache) deleteLater(its []*item) {
	if len(its) == 0 {
		return
	}
	var size int64
	for _, it := range its {
		size += it.size
	}
	c.delMu.Lock()
	if c.delPending+len(its) > maxPendingDeletes ||
		c.cfg.MaxBytes > 0 && c.delBytes+size > c.cfg.MaxBytes/pendingDeleteShare {
		c.delMu.Unlock()
		for _, it := range its {
			c.delete(it)
		}
		return
	}
	c.deletes = append(c.deletes, its...)
	c.delPending += len(its)
	c.delBytes += size
	start := !c.deleting
	c.deleting = true
	c.delMu.Unlock()
	if start {
		c.bg.Add(1)
		go c.deleteQueued()
	}
}

// deleteQueued deletes what deleteLater queued until none is left.
func (c *Cache) deleteQueued() {
	defer c.bg.Done()
	for {
		c.delMu.Lock()
		q := c.deletes
		c.deletes = nil
		if len(q) == 0 {
			c.deleting = false
			c.delMu.Unlock()
			return
		}
		c.delMu.Unlock()
		for _, it := range q {
			c.delete(it)
			c.delMu.Lock()
			c.delPending--
			c.delBytes -= it.size
			c.delMu.Unlock()
		}
	}
}

// release ends a read of body, started by index.match or index.acquire.
func (c *Cache) release(body string) {
	if key, del := c.idx.release(body); del {
		c.delete(&item{key: key, body: body})
	}
}

// commit stores the entry of finished fill f, whose body has size bytes,
// and indexes it, evicting what the budget requires. Variants of the same
// primary key stored under a different Vary are obsolete and go too.
// small is the whole body when it fits one chunk; with inline, it is not
// in storage yet and goes there with the entry (the storage is a
// smallCommitter). An entry that a purge made since f began selects is
// dropped again at once, or marked stale if the purges were soft.
func (c *Cache) commit(f *fill, size int64, small []byte, inline bool) error {
	m := f.meta
	it := &item{key: f.key, body: f.body, size: size, meta: m}
	c.mu.Lock()
	mark := f.purge
	c.mu.Unlock()
	if mark == hardPurged {
		// No entry, so that it cannot replace one fetched since the
		// purge; the body only for the readers still on it, deleted when
		// the last is done.
		if inline {
			if err := c.st.WriteChunk(f.body, 0, small); err != nil {
				return fmt.Errorf("store purged body of %q for its readers: %w", m.Primary, err)
			}
		}
		if c.idx.discard(it) {
			c.delete(it)
		}
		return nil
	}
	e := Entry{Key: f.key, Body: f.body, Size: size, Meta: m.encode()}
	var err error
	if inline {
		err = c.st.(smallCommitter).CommitSmall(e, small)
	} else {
		err = c.st.Commit(e)
	}
	if err != nil {
		return fmt.Errorf("commit %q: %w", m.Primary, err)
	}
	for _, v := range c.idx.variants(m.Primary) {
		if v.key != f.key && !equalStrings(v.meta.Vary, m.Vary) {
			c.drop(v)
		}
	}
	// Indexing and reading the purge mark are one step under c.mu, as
	// marking is: either the purge's index scan, which follows its
	// marking, finds the entry, or the entry finds the mark.
	c.mu.Lock()
	evicted := c.idx.add(it)
	mark = f.purge
	c.mu.Unlock()
	c.deleteLater(evicted)
	if mark == softPurged {
		nm := *m
		nm.Invalid = true
		if err := c.updateMeta(it, &nm); err != nil {
			c.logger.Warn("soft purge of a fill failed; purging hard", "url", m.Primary, "err", err)
			mark = hardPurged
		}
	}
	if mark == hardPurged {
		c.drop(it)
		return nil
	}
	if small != nil {
		c.idx.setMem(it, bytes.Clone(small))
	}
	return nil
}

// updateMeta publishes m for it, in storage and in the index.
func (c *Cache) updateMeta(it *item, m *meta) error {
	if err := c.st.UpdateMeta(it.key, it.body, m.encode()); err != nil {
		return fmt.Errorf("update %q: %w", m.Primary, err)
	}
	c.idx.setMeta(it, m)
	return nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// storageKey is the key of one variant: the primary key, the scheme
// (empty for entries that any scheme may use), then the request's values
// of the Vary fields.
func storageKey(primary, scheme string, vary, values []string) string {
	if scheme == "" && len(vary) == 0 {
		return primary
	}
	var b strings.Builder
	b.WriteString(primary)
	if scheme != "" {
		// ':' cannot occur in a field name, so this never reads as a
		// Vary value.
		b.WriteString("\x00:scheme=")
		b.WriteString(scheme)
	}
	for i, n := range vary {
		b.WriteByte(0)
		b.WriteString(n)
		b.WriteByte('=')
		b.WriteString(values[i])
	}
	return b.String()
}

// primaryKey is host + request target: the URI without scheme. Purges
// name entries by it, so one purge covers both schemes; the scheme tells
// the variants apart (see schemeOf).
func primaryKey(r *http.Request) string {
	return normalHost(r.Host, schemeOf(r)) + r.URL.RequestURI()
}

// normalHost is host in lower case and without the scheme's default
// port (RFC 9110 §4.2.3), so that "Example.com:443" and "example.com"
// name one entry and one purge removes it.
func normalHost(host, scheme string) string {
	host = strings.ToLower(host)
	if scheme == "https" {
		return strings.TrimSuffix(host, ":443")
	}
	return strings.TrimSuffix(host, ":80")
}

// schemeOf is the scheme of the URI r targets. It is part of the cache
// key (§2): the origin learns it from X-Forwarded-Proto and may answer
// differently, typically with a redirect to https for http, which must
// never be served to an https client.
func schemeOf(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

func newBodyName() string { return rand.Text() }
