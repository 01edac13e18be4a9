package cache

import (
	"net/http"
	"time"
)

// The RAM tier keeps the bodies of small entries in memory, under their
// own byte budget and LRU, so the hottest small objects are served
// without a storage read. Badger copies a value twice on every read; for
// small objects that copying, not the disk, dominates a hit.

// hit is match for the request path: when the matching variant is fresh
// at now and its body is in the RAM tier, it records the use and returns
// the body, and the caller has no read to release (the body is not read
// from storage, and the slice outlives any removal). Otherwise it returns
// what match returns and a nil body: the caller must release the item.
// One lock either way.
func (x *index) hit(primary, scheme string, h http.Header, now time.Time) (*item, *meta, []byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	best := x.matchLocked(primary, scheme, h)
	if best == nil {
		return nil, nil, nil
	}
	if best.mem != nil && best.meta.fresh(now) {
		x.touchLocked(best)
		x.memList.MoveToFront(best.memElem)
		return best, best.meta, best.mem
	}
	x.inUse[best.body]++
	return best, best.meta, nil
}

// use records a use of it for eviction and returns its in-memory body,
// or nil: one lock for both, since it is on every hit.
func (x *index) use(it *item) []byte {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.touchLocked(it)
	if it.memElem != nil {
		x.memList.MoveToFront(it.memElem)
	}
	return it.mem
}

// setMem keeps b as it's body in memory, if it is small enough, the tier
// is on, and it is still indexed; least recently used bodies make room.
func (x *index) setMem(it *item, b []byte) {
	if x.memMax <= 0 || int64(len(b)) > x.memObjMax || int64(len(b)) != it.size {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.items[it.key] != it || it.mem != nil {
		return
	}
	it.mem = b
	it.memElem = x.memList.PushFront(it)
	x.memBytes += int64(len(b))
	for x.memBytes > x.memMax {
		x.dropMemLocked(x.memList.Back().Value.(*item))
	}
}

func (x *index) dropMemLocked(it *item) {
	if it.memElem == nil {
		return
	}
	x.memList.Remove(it.memElem)
	x.memBytes -= int64(len(it.mem))
	if it.file != nil {
		x.memBytes -= int64(len(it.mem))
		it.file.close()
	}
	it.mem, it.memElem, it.file = nil, nil, nil
}

// file returns the sendfile copy of it's in-memory body mem, making it
// on first use, or nil when the body has left the RAM tier or no copy
// can be made. The copy counts against the tier's budget like the body.
func (x *index) file(it *item, mem []byte) *fileBody {
	x.mu.Lock()
	fb, in := it.file, it.memElem != nil
	x.mu.Unlock()
	if fb != nil || !in {
		return fb
	}
	// Made outside the lock, which every hit takes; racing makers each
	// make one, and all but the first close theirs.
	fb, err := newFileBody(mem)
	if err != nil {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if it.memElem == nil || it.file != nil {
		fb.close()
		return it.file
	}
	it.file = fb
	x.memBytes += int64(len(mem))
	for x.memBytes > x.memMax {
		x.dropMemLocked(x.memList.Back().Value.(*item))
	}
	return it.file // nil if the budget had no room for it
}
