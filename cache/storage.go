package cache

import (
	"errors"
	"fmt"
	"os"
	"sort"
	gosync "sync"
)

// ErrNotFound reports that storage holds no entry, chunk or body under the
// asked name.
var ErrNotFound = errors.New("not found")

// Entry is one committed cache entry as storage sees it: an opaque
// metadata record and a reference to a body stored in chunks.
type Entry struct {
	// Key names the entry. The cache derives it from the request; storage
	// treats it as an opaque string.
	Key string
	// Body names the chunks of the body. Each fill writes a fresh body, so
	// readers of the previous one are never torn by a concurrent refill.
	Body string
	// Size is the body's length in bytes.
	Size int64
	// Meta is the cache's metadata record (status, headers, times).
	Meta []byte
}

// Storage keeps cache entries and their bodies. The cache writes a body
// chunk by chunk under a fresh body name, then commits an Entry that
// refers to it, so a large body is never held in memory and readers see
// either the old entry or the new one.
//
// All methods must be safe for concurrent use. Methods that read a named
// entry, chunk or body that does not exist return an error wrapping
// ErrNotFound; deleting something absent is not an error. Slices passed in
// may be reused by the caller after the method returns.
type Storage interface {
	// Walk calls fn for every committed entry, in no particular order,
	// and stops at the first error fn returns. The cache calls it once,
	// on start, to rebuild its in-memory index.
	Walk(fn func(Entry) error) error
	// WriteChunk stores chunk idx of body. Chunks of a body that is
	// never committed are removed with DeleteBody.
	WriteChunk(body string, idx int, p []byte) error
	// ReadChunk appends chunk idx of body to buf[:0] and returns it.
	ReadChunk(body string, idx int, buf []byte) ([]byte, error)
	// Commit makes e visible under e.Key, replacing any previous entry
	// there. The previous entry's body stays until deleted: readers may
	// still be streaming it, and the cache deletes it when they are done.
	Commit(e Entry) error
	// UpdateMeta replaces the metadata of the entry under key if that
	// entry still refers to body; otherwise it returns ErrNotFound, so an
	// update never lands on a newer fill.
	UpdateMeta(key, body string, meta []byte) error
	// Delete removes the entry under key if it still refers to body, and
	// the chunks of body in any case; so a delayed delete never removes a
	// newer entry committed under the same key.
	Delete(key, body string) error
	// DeleteBody removes every chunk of body.
	DeleteBody(body string) error
}

// Storage may also implement these; the cache uses them when present.
type (
	// sweeper removes chunks no entry refers to; called once before use.
	sweeper interface{ Sweep() error }
	// collector reclaims disk space; called every Config.GCInterval.
	collector interface{ GC() error }
	// smallCommitter stores a body of at most one chunk together with
	// its entry, in one write: the same result as WriteChunk(e.Body, 0, p)
	// (skipped when p is empty) then Commit(e). For a store that syncs
	// every write to disk, that halves the syncs of a small miss.
	smallCommitter interface {
		CommitSmall(e Entry, p []byte) error
	}
	// chunkFiler opens chunk idx of body when the storage keeps it as a
	// file, so that hits over plain HTTP can send it with sendfile(2),
	// and returns nil and no error when it keeps it some other way (or
	// not at all: ReadChunk then says so).
	chunkFiler interface {
		ChunkFile(body string, idx int) (*os.File, error)
	}
)

// MemStorage is a Storage in memory, for tests and for caches that need
// not survive a restart. The zero value is ready to use.
type MemStorage struct {
	mu      gosync.Mutex
	entries map[string]Entry
	chunks  map[string]map[int][]byte
}

var _ Storage = (*MemStorage)(nil)

func (m *MemStorage) init() {
	if m.entries == nil {
		m.entries = map[string]Entry{}
		m.chunks = map[string]map[int][]byte{}
	}
}

// Walk calls fn for every entry, in key order.
func (m *MemStorage) Walk(fn func(Entry) error) error {
	m.mu.Lock()
	m.init()
	es := make([]Entry, 0, len(m.entries))
	for _, e := range m.entries {
		es = append(es, e)
	}
	m.mu.Unlock()
	sort.Slice(es, func(i, j int) bool { return es[i].Key < es[j].Key })
	for _, e := range es {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// WriteChunk stores a copy of p.
func (m *MemStorage) WriteChunk(body string, idx int, p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	if m.chunks[body] == nil {
		m.chunks[body] = map[int][]byte{}
	}
	m.chunks[body][idx] = append([]byte(nil), p...)
	return nil
}

// ReadChunk appends chunk idx of body to buf[:0].
func (m *MemStorage) ReadChunk(body string, idx int, buf []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	c, ok := m.chunks[body][idx]
	if !ok {
		return nil, fmt.Errorf("read chunk %s/%d: %w", body, idx, ErrNotFound)
	}
	return append(buf[:0], c...), nil
}

// Commit makes e visible.
func (m *MemStorage) Commit(e Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	e.Meta = append([]byte(nil), e.Meta...)
	m.entries[e.Key] = e
	return nil
}

// UpdateMeta replaces the metadata of key if it still refers to body.
func (m *MemStorage) UpdateMeta(key, body string, meta []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	e, ok := m.entries[key]
	if !ok || e.Body != body {
		return fmt.Errorf("update %q: %w", key, ErrNotFound)
	}
	e.Meta = append([]byte(nil), meta...)
	m.entries[key] = e
	return nil
}

// Delete removes key if it refers to body, and body.
func (m *MemStorage) Delete(key, body string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	if e, ok := m.entries[key]; ok && e.Body == body {
		delete(m.entries, key)
	}
	delete(m.chunks, body)
	return nil
}

// DeleteBody removes the chunks of body.
func (m *MemStorage) DeleteBody(body string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	delete(m.chunks, body)
	return nil
}

// Bodies returns the names of the bodies held, sorted; tests use it to
// check that nothing leaks.
func (m *MemStorage) Bodies() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var names []string
	for b := range m.chunks {
		names = append(names, b)
	}
	sort.Strings(names)
	return names
}
