package cache

// The RAM tier keeps the bodies of small entries in memory, under their
// own byte budget and LRU, so the hottest small objects are served
// without a storage read. Badger copies a value twice on every read; for
// small objects that copying, not the disk, dominates a hit.

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
	it.mem, it.memElem = nil, nil
}
