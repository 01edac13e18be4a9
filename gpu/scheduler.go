package gpu

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"
)

// SchedulerConfig configures a [Scheduler]. Zero fields take the defaults
// named on each.
type SchedulerConfig struct {
	// MaxQueueWait is the longest a request waits for a lease before
	// [ErrQueueTimeout]; a sooner context deadline ends the wait first.
	// Default 10s.
	MaxQueueWait time.Duration
	// MaxAppQueue is how many requests one app may have waiting; default 64.
	MaxAppQueue int
	// MaxQueue is how many requests may wait in all; default 1024.
	MaxQueue int
	// StickySlack is how far (in weighted GPU-seconds) an app may be
	// ahead of the fairest choice and still be served first because its
	// model is already loaded on the free device. Default 2s; negative
	// turns stickiness off.
	StickySlack time.Duration
	// Now is the clock; nil means time.Now. Timeouts use the runtime's
	// timers, so tests run the scheduler under testing/synctest.
	Now func() time.Time
}

// Pool is one device the scheduler hands out and the models it serves.
type Pool struct {
	Device Device
	Models []string // models the device's backend serves
	Slots  int      // concurrent leases; default 1
	// Resident is how many models the backend keeps loaded at once, for
	// the stickiness preference; default 1.
	Resident int
}

// Scheduler hands out leases on devices: each app queues its requests in
// order, and the next free slot goes to the waiting app that has used the
// least GPU time for its weight (start-time fair queueing), preferring a
// device where the model is already loaded. A granted lease is never
// revoked. Safe for concurrent use.
type Scheduler struct {
	cfg SchedulerConfig

	// mu guards everything below. No callback or channel receive happens
	// while it is held; grants are sent on buffered channels.
	mu      sync.Mutex
	devices []*schedDevice
	byModel map[string][]*schedDevice
	apps    map[string]*appState
	ready   appHeap // apps with at least one waiter, least vtime first
	queued  int
	vnow    float64 // system virtual time: start tag of the latest grant
	hold    float64 // EWMA of lease length in seconds, for Retry-After
	waits   waitRing
	closed  bool
	done    chan struct{} // closed by Close, to wake every waiter
}

type schedDevice struct {
	dev       Device
	models    map[string]bool
	slots     int
	free      int
	available bool
	resident  []string // most recently used first, at most cap entries
	residentN int
}

func (d *schedDevice) isResident(model string) bool {
	return slices.Contains(d.resident, model)
}

func (d *schedDevice) touch(model string) (swapped bool) {
	if i := slices.Index(d.resident, model); i >= 0 {
		copy(d.resident[1:i+1], d.resident[:i])
		d.resident[0] = model
		return false
	}
	if len(d.resident) < d.residentN {
		d.resident = append(d.resident, "")
	}
	copy(d.resident[1:], d.resident)
	d.resident[0] = model
	return true
}

type appState struct {
	name    string
	weight  float64
	vtime   float64 // weighted GPU-seconds, charged in advance by estimate
	est     float64 // EWMA of this app's lease length, seconds
	held    int
	n       int // waiters
	head    *waiter
	tail    *waiter
	heapIdx int // index in Scheduler.ready, -1 when absent
}

type waiter struct {
	app        *appState
	model      string
	enqueued   time.Time
	ch         chan *Lease // buffered 1; receives the grant
	lease      *Lease      // set under mu when granted
	prev, next *waiter
}

// NewScheduler returns a scheduler over pools. Device UUIDs must be
// distinct and each pool must serve at least one model.
func NewScheduler(cfg SchedulerConfig, pools []Pool) (*Scheduler, error) {
	if cfg.MaxQueueWait <= 0 {
		cfg.MaxQueueWait = 10 * time.Second
	}
	if cfg.MaxAppQueue <= 0 {
		cfg.MaxAppQueue = 64
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 1024
	}
	if cfg.StickySlack == 0 {
		cfg.StickySlack = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Scheduler{cfg: cfg, byModel: map[string][]*schedDevice{}, apps: map[string]*appState{}, hold: 1, done: make(chan struct{})}
	seen := map[string]bool{}
	for _, p := range pools {
		if seen[p.Device.UUID] {
			return nil, fmt.Errorf("scheduler: device %s listed twice", p.Device.UUID)
		}
		seen[p.Device.UUID] = true
		if len(p.Models) == 0 {
			return nil, fmt.Errorf("scheduler: device %s serves no models", p.Device.UUID)
		}
		d := &schedDevice{dev: p.Device, models: map[string]bool{}, slots: max(p.Slots, 1), available: true, residentN: max(p.Resident, 1)}
		d.free = d.slots
		for _, m := range p.Models {
			if !d.models[m] {
				d.models[m] = true
				s.byModel[m] = append(s.byModel[m], d)
			}
		}
		s.devices = append(s.devices, d)
	}
	return s, nil
}

// SetWeight sets app's share: an app with weight 2 gets twice the GPU
// time of an app with weight 1 when both are busy. Weights below 0.01
// are raised to 0.01; the default is 1.
func (s *Scheduler) SetWeight(app string, weight float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.app(app).weight = max(weight, 0.01)
}

// app returns app's state, creating it; s.mu is held.
func (s *Scheduler) app(name string) *appState {
	a := s.apps[name]
	if a == nil {
		a = &appState{name: name, weight: 1, heapIdx: -1, est: 0.1}
		s.apps[name] = a
	}
	return a
}

// SetAvailable marks a device usable or not (lost, being rediscovered).
// Leases already granted on it stay valid; no new ones are granted until
// it is available again.
func (s *Scheduler) SetAvailable(uuid string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.devices {
		if d.dev.UUID == uuid {
			d.available = ok
		}
	}
	if ok {
		s.dispatch()
	}
}

// Serves reports whether any device serves model.
func (s *Scheduler) Serves(model string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byModel[model]) > 0
}

// Acquire waits for a lease on a device that serves model, in app's fair
// turn. It returns at once with a [*BusyError] wrapping [ErrQueueFull]
// when a queue is at its limit, with one wrapping [ErrQueueTimeout] after
// MaxQueueWait, [ErrModelNotSupported] when no device serves model,
// [ErrNoDevice] when every device serving it is lost, and
// ctx's error (wrapped) when ctx ends first; in every error case the
// request has left the queue. The caller must Release the lease.
func (s *Scheduler) Acquire(ctx context.Context, app, model string) (*Lease, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("gpu lease for %s: %w", app, ErrClosed)
	}
	if len(s.byModel[model]) == 0 {
		s.mu.Unlock()
		return nil, fmt.Errorf("gpu lease for %s: model %q: %w", app, model, ErrModelNotSupported)
	}
	if !slices.ContainsFunc(s.byModel[model], func(d *schedDevice) bool { return d.available }) {
		s.mu.Unlock()
		return nil, fmt.Errorf("gpu lease for %s: model %q: %w: every device serving it is lost", app, model, ErrNoDevice)
	}
	a := s.app(app)
	if a.n >= s.cfg.MaxAppQueue {
		err := s.busy(ErrQueueFull, a, model, fmt.Sprintf("app queue depth %d", s.cfg.MaxAppQueue))
		s.mu.Unlock()
		return nil, err
	}
	if s.queued >= s.cfg.MaxQueue {
		err := s.busy(ErrQueueFull, a, model, fmt.Sprintf("site queue depth %d", s.cfg.MaxQueue))
		s.mu.Unlock()
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("gpu lease for %s: %w", app, err)
	}
	now := s.cfg.Now()
	if a.n == 0 && a.held == 0 {
		// An app back from idle starts at the current virtual time, so
		// that time spent idle is not banked as credit.
		a.vtime = max(a.vtime, s.vnow)
	}
	w := &waiter{app: a, model: model, enqueued: now, ch: make(chan *Lease, 1)}
	s.push(w)
	s.dispatch()
	if w.lease != nil {
		s.mu.Unlock()
		return <-w.ch, nil
	}
	s.mu.Unlock()

	timer := time.NewTimer(s.cfg.MaxQueueWait)
	defer timer.Stop()
	var cause error
	select {
	case l := <-w.ch:
		return l, nil
	case <-ctx.Done():
		cause = ctx.Err()
	case <-timer.C:
	case <-s.done:
		cause = ErrClosed
	}

	s.mu.Lock()
	if w.lease != nil {
		// Granted while the timer or ctx fired: a timeout still takes the
		// lease, a cancelled caller gives it back.
		s.mu.Unlock()
		l := <-w.ch
		if cause == nil {
			return l, nil
		}
		l.Release()
		return nil, fmt.Errorf("gpu lease for %s: %w", app, cause)
	}
	s.remove(w)
	var err error
	if cause != nil {
		err = fmt.Errorf("gpu lease for %s: %w", app, cause)
	} else {
		err = s.busy(ErrQueueTimeout, a, model, fmt.Sprintf("max queue wait %s", s.cfg.MaxQueueWait))
	}
	s.mu.Unlock()
	return nil, err
}

// busy builds a BusyError with a Retry-After from the queue ahead and the
// typical lease length; s.mu is held.
func (s *Scheduler) busy(kind error, a *appState, model, limit string) *BusyError {
	slots := 0
	for _, d := range s.byModel[model] {
		if d.available {
			slots += d.slots
		}
	}
	secs := float64(s.queued+1) * s.hold / float64(max(slots, 1))
	retry := time.Duration(math.Ceil(min(max(secs, 1), s.cfg.MaxQueueWait.Seconds()))) * time.Second
	return &BusyError{Err: kind, App: a.name, Model: model, Depth: s.queued, Limit: limit, RetryAfter: retry}
}

// push appends w to its app's queue; s.mu is held.
func (s *Scheduler) push(w *waiter) {
	a := w.app
	if a.tail == nil {
		a.head, a.tail = w, w
	} else {
		w.prev = a.tail
		a.tail.next = w
		a.tail = w
	}
	a.n++
	s.queued++
	if a.heapIdx < 0 {
		heap.Push(&s.ready, a)
	}
}

// remove takes w out of its app's queue; s.mu is held.
func (s *Scheduler) remove(w *waiter) {
	a := w.app
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		a.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		a.tail = w.prev
	}
	w.prev, w.next = nil, nil
	a.n--
	s.queued--
	if a.n == 0 && a.heapIdx >= 0 {
		heap.Remove(&s.ready, a.heapIdx)
	}
}

// dispatch grants free slots to waiters in fair order; s.mu is held.
func (s *Scheduler) dispatch() {
	for !s.closed && len(s.ready) > 0 && s.anyFree() {
		a, d := s.next()
		if a == nil {
			return
		}
		s.grant(a.head, d)
	}
}

// anyFree reports whether any available device has a free slot, so that
// a request queued behind busy devices costs no scan of the apps; s.mu is
// held.
func (s *Scheduler) anyFree() bool {
	for _, d := range s.devices {
		if d.free > 0 && d.available {
			return true
		}
	}
	return false
}

// next picks the app to serve and its device, or nil when no waiter can
// run on a free device; s.mu is held.
func (s *Scheduler) next() (*appState, *schedDevice) {
	a := s.ready[0]
	d, warm := s.freeDevice(a.head.model)
	if d == nil {
		// The fairest app's model has no free device; serve the fairest
		// app whose model has one rather than leave a slot idle.
		a = nil
		for _, b := range s.ready {
			if bd, bwarm := s.freeDevice(b.head.model); bd != nil && (a == nil || b.vtime < a.vtime) {
				a, d, warm = b, bd, bwarm
			}
		}
		if a == nil {
			return nil, nil
		}
	}
	if warm || s.cfg.StickySlack < 0 {
		return a, d
	}
	// Serving a would load a model; an app within the slack whose model
	// is already loaded on a free device goes first.
	limit := a.vtime + s.cfg.StickySlack.Seconds()
	if b, bd := s.stickyWithin(0, limit, a, 16); b != nil {
		return b, bd
	}
	return a, d
}

// stickyWithin walks the heap from node i over apps with vtime ≤ limit,
// visiting at most budget of them, for one whose model is warm on a free
// device; s.mu is held.
func (s *Scheduler) stickyWithin(i int, limit float64, skip *appState, budget int) (*appState, *schedDevice) {
	stack := []int{i}
	for len(stack) > 0 && budget > 0 {
		i = stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if i >= len(s.ready) || s.ready[i].vtime > limit {
			continue
		}
		budget--
		if b := s.ready[i]; b != skip {
			if d, warm := s.freeDevice(b.head.model); d != nil && warm {
				return b, d
			}
		}
		stack = append(stack, 2*i+1, 2*i+2)
	}
	return nil, nil
}

// freeDevice returns a free, available device serving model, preferring
// one where it is loaded; s.mu is held.
func (s *Scheduler) freeDevice(model string) (d *schedDevice, warm bool) {
	for _, c := range s.byModel[model] {
		if c.free == 0 || !c.available {
			continue
		}
		if c.isResident(model) {
			return c, true
		}
		if d == nil {
			d = c
		}
	}
	return d, false
}

// grant gives w a slot on d; s.mu is held.
func (s *Scheduler) grant(w *waiter, d *schedDevice) {
	a := w.app
	s.remove(w)
	now := s.cfg.Now()
	s.vnow = max(s.vnow, a.vtime)
	// Charge the expected length now and correct it at release, so that
	// an app cannot take every free slot at once before its first
	// release is counted.
	charged := a.est / a.weight
	a.vtime += charged
	if a.heapIdx >= 0 {
		heap.Fix(&s.ready, a.heapIdx)
	}
	a.held++
	d.free--
	l := &Lease{s: s, app: a, dev: d, model: w.model, enqueued: w.enqueued, granted: now, charged: charged}
	l.swap = d.touch(w.model)
	s.waits.add(now.Sub(w.enqueued))
	w.lease = l
	w.ch <- l
}

// Close fails every waiting request with [ErrClosed] and refuses new
// ones. Leases already granted stay valid until released.
func (s *Scheduler) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
}

// SchedulerStats is a snapshot of the scheduler's load.
type SchedulerStats struct {
	Slots, FreeSlots int           // over available devices
	Queued           int           // requests waiting
	WaitP95          time.Duration // over the last 1024 grants
	Models           []string      // served by an available device, sorted
}

// Stats returns a snapshot of the scheduler's load.
func (s *Scheduler) Stats() SchedulerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SchedulerStats{Queued: s.queued, WaitP95: s.waits.p95()}
	for m, ds := range s.byModel {
		for _, d := range ds {
			if d.available {
				st.Models = append(st.Models, m)
				break
			}
		}
	}
	sort.Strings(st.Models)
	for _, d := range s.devices {
		if d.available {
			st.Slots += d.slots
			st.FreeSlots += d.free
		}
	}
	return st
}

// AppShare returns app's weighted virtual time in GPU-seconds, the
// quantity the scheduler equalizes between busy apps.
func (s *Scheduler) AppShare(app string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.apps[app]; a != nil {
		return a.vtime
	}
	return 0
}

// Lease is the right to run one call on one device. It is not safe for
// concurrent use; Release may be called more than once.
type Lease struct {
	s        *Scheduler
	app      *appState
	dev      *schedDevice
	model    string
	enqueued time.Time
	granted  time.Time
	charged  float64
	swap     bool
	usage    *Usage // set by the first Release
}

// Device returns the leased device.
func (l *Lease) Device() Device { return l.dev.dev }

// App returns the app holding the lease.
func (l *Lease) App() string { return l.app.name }

// Model returns the model the lease was granted for.
func (l *Lease) Model() string { return l.model }

// Granted returns when the lease was granted.
func (l *Lease) Granted() time.Time { return l.granted }

// Swap reports whether the model was not loaded on the device at grant,
// so the backend had to load it.
func (l *Lease) Swap() bool { return l.swap }

// Usage is what one lease cost.
type Usage struct {
	App, Model, Device string
	Wait               time.Duration // from Acquire to grant
	Held               time.Duration // from grant to Release
	Swap               bool          // the model had to be loaded
	Released           time.Time
	// EnergyJ is the device energy attributed to the lease; set by the
	// Service once the energy meter has settled the lease, 0 otherwise.
	EnergyJ      float64
	EnergySource string // "nvml_counter", "power_integral" or "none"
}

// Release returns the slot and charges the app for the time held. Later
// calls return the same Usage and change nothing.
func (l *Lease) Release() Usage {
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.usage != nil {
		return *l.usage
	}
	now := s.cfg.Now()
	held := max(now.Sub(l.granted), 0)
	a := l.app
	secs := held.Seconds()
	a.vtime += secs/a.weight - l.charged
	a.est += (secs - a.est) / 8
	s.hold += (secs - s.hold) / 16
	if a.heapIdx >= 0 {
		heap.Fix(&s.ready, a.heapIdx)
	}
	a.held--
	l.dev.free++
	l.usage = &Usage{
		App: a.name, Model: l.model, Device: l.dev.dev.UUID,
		Wait: l.granted.Sub(l.enqueued), Held: held, Swap: l.swap, Released: now,
	}
	s.dispatch()
	return *l.usage
}

// appHeap orders apps with waiters by vtime, then name for determinism.
type appHeap []*appState

func (h appHeap) Len() int { return len(h) }
func (h appHeap) Less(i, j int) bool {
	if h[i].vtime != h[j].vtime {
		return h[i].vtime < h[j].vtime
	}
	return h[i].name < h[j].name
}
func (h appHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *appHeap) Push(x any) {
	a := x.(*appState)
	a.heapIdx = len(*h)
	*h = append(*h, a)
}
func (h *appHeap) Pop() any {
	old := *h
	a := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	a.heapIdx = -1
	return a
}

// waitRing keeps the latest queue waits for a p95.
type waitRing struct {
	buf [1024]time.Duration
	n   int
}

func (r *waitRing) add(d time.Duration) {
	r.buf[r.n%len(r.buf)] = d
	r.n++
}

func (r *waitRing) p95() time.Duration {
	n := min(r.n, len(r.buf))
	if n == 0 {
		return 0
	}
	c := slices.Clone(r.buf[:n])
	slices.Sort(c)
	return c[(n*95+99)/100-1]
}
