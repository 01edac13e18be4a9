package cache

import (
	"container/list"
	"net/http"
	"slices"
	"sort"
	"strings"
	gosync "sync"
	"sync/atomic"

	"github.com/google/btree"
)

// protectedShare is the part of the byte budget the protected segment may
// fill; the rest is probation, where new entries wait to prove themselves.
const protectedShare = 0.8

// item is the index record of one stored entry.
type item struct {
	key  string // storage key
	body string
	size int64
	meta *meta // replaced, never modified, under index.mu

	elem      *list.Element
	protected bool

	mem     []byte        // the body, when the RAM tier holds it
	memElem *list.Element // in index.memList
	file    *fileBody     // mem's copy for sendfile, once sent over plain HTTP
}

// index is the in-memory view of what storage holds: entries by key, by
// primary key (for Vary and purge by URL) and by tag, plus a segmented LRU
// (SLRU) that decides what to evict when the byte budget is exceeded.
//
// SLRU keeps two LRU lists. A new entry enters probation; a hit on an
// entry in probation promotes it to protected, which is capped at 80% of
// the budget (its overflow is demoted back to probation's head).
// Eviction takes probation's tail first. So a one-off crawl of cold URLs
// cycles through probation and cannot push out the objects that are
// requested again and again, which plain LRU would lose; and unlike LFU
// there are no counters to age, so yesterday's hot objects do not linger.
//
// Recency is not persisted, to keep hits free of writes: on open every
// entry starts in probation, oldest response at the tail, and the first
// hits rebuild the protected segment.
type index struct {
	max       int64 // byte budget; 0 means unbounded
	memMax    int64 // RAM tier budget; 0 disables it
	memObjMax int64 // largest body the RAM tier holds

	// evictions counts entries removed for the budget or by shed.
	evictions atomic.Int64

	mu        gosync.Mutex // guards everything below
	items     map[string]*item
	byPrimary map[string]map[string]*item
	// primaries holds the keys of byPrimary in order, so that a purge by
	// prefix visits only the keys that start with it, in O(log n + k),
	// instead of scanning a host's keys, or every key, with the lock held.
	primaries      *btree.BTreeG[string]
	byTag          map[string]map[string]*item
	probation      list.List
	protectedList  list.List
	bytes          int64
	protectedBytes int64
	// A body being read must outlive its removal from the index (by
	// eviction, purge or replacement): its deletion waits for the last
	// reader.
	inUse  map[string]int    // body -> readers holding it
	doomed map[string]string // body -> key, to delete at the last release

	memList  list.List // RAM tier LRU of items with mem
	memBytes int64
}

// primariesDegree is the B-tree degree of index.primaries: nodes of up to
// 63 keys (about 1 KiB of string headers), so the tree stays four levels
// deep even with millions of keys.
const primariesDegree = 32

func newIndex(max, memMax, memObjMax int64) *index {
	return &index{
		max:       max,
		memMax:    memMax,
		memObjMax: memObjMax,
		items:     map[string]*item{},
		byPrimary: map[string]map[string]*item{},
		primaries: btree.NewOrderedG[string](primariesDegree),
		byTag:     map[string]map[string]*item{},
		inUse:     map[string]int{},
		doomed:    map[string]string{},
	}
}

// match returns the stored variant of primary that matches the request's
// scheme ("" for any) and headers (§4.1), or nil, and its meta. The
// caller must release a returned item's body.
func (x *index) match(primary, scheme string, h http.Header) (*item, *meta) {
	x.mu.Lock()
	defer x.mu.Unlock()
	best := x.matchLocked(primary, scheme, h)
	if best == nil {
		return nil, nil
	}
	x.inUse[best.body]++
	return best, best.meta
}

// matchLocked returns the variant of primary that matches scheme and h,
// or nil.
func (x *index) matchLocked(primary, scheme string, h http.Header) *item {
	var best *item
	for _, it := range x.byPrimary[primary] {
		m := it.meta
		if !m.serves(scheme) {
			continue
		}
		if len(m.Vary) > 0 && !slices.Equal(varyValues(h, m.Vary), m.VaryValues) {
			continue
		}
		// §4.1: with several matches, use the most recent.
		if best == nil || m.ResponseTime.After(best.meta.ResponseTime) {
			best = it
		}
	}
	return best
}

// acquire marks body as being read.
func (x *index) acquire(body string) {
	x.mu.Lock()
	x.inUse[body]++
	x.mu.Unlock()
}

// release undoes acquire (or match) and, if the body was removed from
// the index meanwhile and this was its last reader, returns the key to
// delete it under.
func (x *index) release(body string) (key string, del bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.inUse[body]--; x.inUse[body] > 0 {
		return "", false
	}
	delete(x.inUse, body)
	key, del = x.doomed[body]
	delete(x.doomed, body)
	return key, del
}

// discardLocked decides the fate of an item just removed from the index:
// true to delete it now, false when readers hold it (deleted on release).
func (x *index) discardLocked(it *item) bool {
	if x.inUse[it.body] > 0 {
		x.doomed[it.body] = it.key
		return false
	}
	return true
}

// discard decides the fate of an item that was never indexed, like
// discardLocked.
func (x *index) discard(it *item) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.discardLocked(it)
}

// touch records a hit for SLRU.
func (x *index) touch(it *item) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.touchLocked(it)
}

func (x *index) touchLocked(it *item) {
	if it.elem == nil { // removed meanwhile
		return
	}
	if it.protected {
		x.protectedList.MoveToFront(it.elem)
		return
	}
	x.probation.Remove(it.elem)
	it.protected = true
	it.elem = x.protectedList.PushFront(it)
	x.protectedBytes += it.size
	limit := int64(float64(x.max) * protectedShare)
	for x.max > 0 && x.protectedBytes > limit && x.protectedList.Len() > 1 {
		back := x.protectedList.Back().Value.(*item)
		x.protectedList.Remove(back.elem)
		x.protectedBytes -= back.size
		back.protected = false
		back.elem = x.probation.PushFront(back)
	}
}

// add indexes a committed entry, replacing any item under the same key,
// and returns the items to delete now: the replaced one and those evicted
// to stay within budget (which may include it, when it alone exceeds the
// budget), less those still being read.
func (x *index) add(it *item) (evicted []*item) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old := x.items[it.key]; old != nil {
		x.removeLocked(old)
		if x.discardLocked(old) {
			evicted = append(evicted, old)
		}
	}
	x.items[it.key] = it
	p := x.byPrimary[it.meta.Primary]
	if p == nil {
		p = map[string]*item{}
		x.byPrimary[it.meta.Primary] = p
		x.primaries.ReplaceOrInsert(it.meta.Primary)
	}
	p[it.key] = it
	for _, t := range it.meta.Tags {
		if x.byTag[t] == nil {
			x.byTag[t] = map[string]*item{}
		}
		x.byTag[t][it.key] = it
	}
	it.elem = x.probation.PushFront(it)
	x.bytes += it.size
	for x.max > 0 && x.bytes > x.max {
		victim := x.lruLocked()
		if victim == nil {
			break
		}
		x.removeLocked(victim)
		x.evictions.Add(1)
		if x.discardLocked(victim) {
			evicted = append(evicted, victim)
		}
	}
	return evicted
}

// lruLocked returns the entry to evict next, probation before
// protected, or nil when the index is empty.
func (x *index) lruLocked() *item {
	if e := x.probation.Back(); e != nil {
		return e.Value.(*item)
	}
	if e := x.protectedList.Back(); e != nil {
		return e.Value.(*item)
	}
	return nil
}

// shed removes least recently used entries, probation first, until n
// bytes are gone or none is left, and returns those to delete now.
func (x *index) shed(n int64) (evicted []*item, bytes int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for bytes < n {
		victim := x.lruLocked()
		if victim == nil {
			break
		}
		x.removeLocked(victim)
		x.evictions.Add(1)
		bytes += victim.size
		if x.discardLocked(victim) {
			evicted = append(evicted, victim)
		}
	}
	return evicted, bytes
}

// remove drops it from the index if it is still there, and reports
// whether to delete it now.
func (x *index) remove(it *item) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.items[it.key] != it {
		return false
	}
	x.removeLocked(it)
	return x.discardLocked(it)
}

func (x *index) removeLocked(it *item) {
	if x.items[it.key] != it {
		return
	}
	delete(x.items, it.key)
	if p := x.byPrimary[it.meta.Primary]; p != nil {
		delete(p, it.key)
		if len(p) == 0 {
			delete(x.byPrimary, it.meta.Primary)
			x.primaries.Delete(it.meta.Primary)
		}
	}
	for _, t := range it.meta.Tags {
		if s := x.byTag[t]; s != nil {
			delete(s, it.key)
			if len(s) == 0 {
				delete(x.byTag, t)
			}
		}
	}
	if it.protected {
		x.protectedList.Remove(it.elem)
		x.protectedBytes -= it.size
	} else {
		x.probation.Remove(it.elem)
	}
	it.elem = nil
	x.bytes -= it.size
	x.dropMemLocked(it)
}

// setMeta publishes m as it's metadata if it is still indexed.
func (x *index) setMeta(it *item, m *meta) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.items[it.key] != it {
		return false
	}
	// Tags and primary key never change on update, so the maps stay valid.
	it.meta = m
	return true
}

// variants returns the items of primary.
func (x *index) variants(primary string) []*item {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]*item, 0, len(x.byPrimary[primary]))
	for _, it := range x.byPrimary[primary] {
		out = append(out, it)
	}
	return out
}

// withPrefix returns the items whose primary key starts with prefix.
func (x *index) withPrefix(prefix string) []*item {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []*item
	x.primaries.AscendGreaterOrEqual(prefix, func(p string) bool {
		if !strings.HasPrefix(p, prefix) {
			return false // past the keys that start with prefix
		}
		for _, it := range x.byPrimary[p] {
			out = append(out, it)
		}
		return true
	})
	return out
}

// tagged returns the items carrying tag.
func (x *index) tagged(tag string) []*item {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]*item, 0, len(x.byTag[tag]))
	for _, it := range x.byTag[tag] {
		out = append(out, it)
	}
	return out
}

// stats returns the number of entries and their bytes.
func (x *index) stats() (entries int, bytes, memBytes int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.items), x.bytes, x.memBytes
}

// rebuild loads items read from storage at open, oldest response first
// so the newest end up at probation's head.
func (x *index) rebuild(items []*item) (evicted []*item) {
	sort.Slice(items, func(i, j int) bool { return items[i].meta.ResponseTime.Before(items[j].meta.ResponseTime) })
	for _, it := range items {
		evicted = append(evicted, x.add(it)...)
	}
	return evicted
}
