package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	gosync "sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tern-edge/tern/artifact"
)

// Installer receives releases that passed every check the watcher makes.
// Its methods are called concurrently for different apps, never for one
// app at once.
type Installer interface {
	// Installed returns the sequence and digest of app's installed
	// release; sequence 0 means none.
	Installed(app string) (sequence uint64, digest string)
	// Install compiles, persists and routes rel; on error nothing changes
	// and the previous release keeps serving. wasm is nil for a release
	// without a module (an origin app); otherwise its digest has been
	// checked against rel.Digest. Install must not keep wasm after it
	// returns: the watcher reuses the buffer for the next download. ctx
	// is cancelled when a newer release of the app supersedes rel.
	Install(ctx context.Context, rel artifact.Release, envelope, wasm []byte) error
}

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	Client *Client
	// Trusted returns the publisher keys releases must be signed by, or
	// why no release can be trusted now (an expired publisher list).
	Trusted   func() (artifact.KeySet, error)
	Installer Installer
	// Site and Labels identify the agent to staged rollouts' selectors.
	Site   string
	Labels map[string]string
	// MaxArtifactBytes caps a module's size; larger releases are refused
	// before any byte is downloaded.
	MaxArtifactBytes int64
	Logger           *slog.Logger
	Registerer       prometheus.Registerer
	// Now is the clock for expiry checks; nil means time.Now.
	Now func() time.Time
	// Refused, when set, is called after each refusal, so that the agent
	// reports it at once (a publisher's deploy waits for it) instead of
	// at its next heartbeat. It must not block.
	Refused func()
	// HubLinked, when set, reports whether the hub is reachable now. A
	// leaf node's watch catches up with the local mirror even with the
	// hub down, and the log must not claim the agent is in sync then.
	HubLinked func() bool
}

// Watcher follows the hub's releases and installs the ones it accepts.
type Watcher struct {
	cfg      WatcherConfig
	logger   *slog.Logger
	accepted prometheus.Counter
	refused  *prometheus.CounterVec
	synced   chan struct{}
	syncOnce gosync.Once
	rescan   chan struct{}

	mu       gosync.Mutex
	refusals []Refusal    // newest first, at most maxRefusals; guarded by mu
	modules  *moduleStore // the hub's module store once found; guarded by mu
}

// maxRefusals bounds the refusals a watcher remembers for heartbeats.
const maxRefusals = 10

// Refusals returns the most recent refused releases, newest first.
func (w *Watcher) Refusals() []Refusal {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Refusal(nil), w.refusals...)
}

// NewWatcher returns a Watcher; Run starts it.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	if cfg.Client == nil || cfg.Installer == nil || cfg.Trusted == nil {
		return nil, errors.New("watcher: client, installer and trusted keys are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	artifacts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tern_artifacts_total",
		Help: "Releases seen from the hub, by result (accepted, refused) and refusal reason.",
	}, []string{"result", "reason"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(artifacts); err != nil {
			return nil, fmt.Errorf("watcher metrics: %w", err)
		}
	}
	return &Watcher{
		cfg:      cfg,
		logger:   cfg.Logger,
		accepted: artifacts.WithLabelValues("accepted", ""),
		refused:  artifacts.MustCurryWith(prometheus.Labels{"result": "refused"}),
		synced:   make(chan struct{}),
		rescan:   make(chan struct{}, 1),
	}, nil
}

// Rescan makes the watcher look at every current release again, as when
// it first connected: releases refused because no key trusted them may
// pass now that the publisher list changed.
func (w *Watcher) Rescan() {
	select {
	case w.rescan <- struct{}{}:
	default:
	}
}

// errRescan ends a watch so that Run starts a new one at once.
var errRescan = errors.New("rescan")

// Synced is closed once the watcher has processed every release the hub
// held when it first connected.
func (w *Watcher) Synced() <-chan struct{} { return w.synced }

// Run watches the hub until ctx is done. While the hub is unreachable it
// keeps retrying, with a jittered backoff that starts again from its
// shortest delay once a watch has caught up; the agent serves what it
// has meanwhile.
func (w *Watcher) Run(ctx context.Context) error {
	// Installs outlive a watch: a reconnect or rescan replays the hub's
	// releases, and those already installing go on undisturbed.
	q := newInstalls(w.handle)
	defer q.wait()
	b := backoff{min: watchRetryMin, max: watchRetryMax}
	for {
		err := w.watch(ctx, q, b.reset)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errRescan) {
			continue
		}
		d := b.next()
		w.logger.Warn("hub watch interrupted; retrying", "err", err, "in", d.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
}

// Bounds of the delay between watches of the release bucket.
const (
	watchRetryMin = 250 * time.Millisecond
	watchRetryMax = 30 * time.Second
)

// directFor is how long a leaf agent follows the hub's release bucket
// directly after its hub link comes up. The leaf node's mirror of the
// bucket notices by itself that its source went away only when it has
// heard nothing for nats-server's source health interval, checked as
// often (10 s each): a deploy right after a hub restart would wait up to
// 20 s for it. The direct watch covers that window and then stops, so
// that an idle hub does not carry a consumer per agent.
const directFor = 25 * time.Second

func (w *Watcher) watch(ctx context.Context, q *installs, caughtUp func()) error {
	// The module store is looked up afresh on each watch, as the hub may
	// have changed across a reconnect.
	w.mu.Lock()
	w.modules = nil
	w.mu.Unlock()
	kv, err := w.cfg.Client.js.KeyValue(ctx, AppsBucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", AppsBucket, err)
	}
	// Staged rollouts decide, per app, whether this agent runs the
	// rollout's release or the app's current one. Their current state is
	// read before the releases, so the first decision is already right.
	rolls := map[string]Rollout{}
	var rw jetstream.KeyWatcher
	if rkv, err := w.cfg.Client.js.KeyValue(ctx, RolloutsBucket); err == nil {
		if rw, err = rkv.WatchAll(ctx, jetstream.IgnoreDeletes()); err != nil {
			return fmt.Errorf("watch %s: %w", RolloutsBucket, err)
		}
		defer rw.Stop()
		for e := range rw.Updates() {
			if e == nil {
				break
			}
			w.noteRollout(rolls, e)
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("bucket %s: %w", RolloutsBucket, err)
	}
	var rollUpdates <-chan jetstream.KeyValueEntry
	if rw != nil {
		rollUpdates = rw.Updates()
	}
	linkUp := w.cfg.Client.link.next() // taken before the watch: no link-up is missed
	kw, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", AppsBucket, err)
	}
	defer kw.Stop()
	// The hub's bucket followed directly for a while after the link comes
	// up (see directFor); nil otherwise. Entries come from it and from the
	// mirror, which keeps the hub's revisions: each is taken once.
	var (
		direct      jetstream.KeyWatcher
		directUntil time.Time
		directB     = backoff{min: 50 * time.Millisecond, max: time.Second}
	)
	directTimer := time.NewTimer(directFor)
	directTimer.Stop()
	defer directTimer.Stop()
	defer func() {
		if direct != nil {
			direct.Stop()
		}
	}()
	followDirect := func(retry bool) {
		if direct != nil {
			direct.Stop()
			direct = nil
		}
		if time.Now().After(directUntil) {
			w.logger.Debug("stopped following the hub's releases directly; the mirror follows them")
			return
		}
		// A lookup no answer comes to must not hold up the mirror's watch.
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		hkv, err := w.cfg.Client.fleetJS.KeyValue(lctx, AppsBucket)
		cancel()
		if err == nil {
			direct, err = hkv.WatchAll(ctx)
		}
		if err != nil && !retry {
			// The link is not up yet; its coming up starts the watch.
			w.logger.Debug("hub's releases not reachable directly; the mirror follows them", "err", err)
			return
		}
		if err != nil {
			d := directB.next()
			w.logger.Info("hub link up but its releases are not reachable yet; retrying", "err", err, "in", d.Round(time.Millisecond))
			directTimer.Reset(d)
			return
		}
		directB.reset()
		directTimer.Reset(time.Until(directUntil))
	}
	seen := map[string]uint64{} // the newest revision taken per app
	if w.cfg.Client.link != nil {
		// The link may have come up before this watch began, while the
		// mirror's first request to the hub went unanswered: nats-server
		// waits 30 s for that answer before it asks again.
		directUntil = time.Now().Add(directFor)
		followDirect(false)
	}
	current := map[string][]byte{} // the hub's current release per app
	consider := func(app string) {
		if env := w.effective(app, current[app], rolls); env != nil {
			q.submit(ctx, app, env)
		}
	}
	take := func(e jetstream.KeyValueEntry) {
		if e.Revision() <= seen[e.Key()] {
			return
		}
		seen[e.Key()] = e.Revision()
		if e.Operation() != jetstream.KeyValuePut {
			// Removing an app from the hub does not remove it from
			// agents: a gateway keeps its last known good version.
			w.logger.Info("release deleted on hub; keeping the installed version", "app", e.Key())
			return
		}
		current[e.Key()] = e.Value()
		consider(e.Key())
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.rescan:
			return errRescan
		case e, ok := <-rollUpdates:
			if !ok {
				return fmt.Errorf("watch %s: closed", RolloutsBucket)
			}
			if e != nil {
				w.noteRollout(rolls, e)
				consider(e.Key())
			}
		case <-linkUp:
			linkUp = w.cfg.Client.link.next()
			w.logger.Info("hub link up; following the hub's releases directly until the mirror resumes", "for", directFor)
			directUntil = time.Now().Add(directFor)
			directB.reset()
			followDirect(true)
		case <-directTimer.C:
			followDirect(true)
		case e, ok := <-directUpdates(direct):
			if !ok {
				w.logger.Info("direct watch of the hub's releases ended; retrying", "err", "closed")
				direct = nil
				directTimer.Reset(directB.next())
				continue
			}
			if e != nil {
				take(e)
			}
		case e, ok := <-kw.Updates():
			if !ok {
				return fmt.Errorf("watch %s: closed", AppsBucket)
			}
			if e == nil {
				caughtUp()
				// In sync once the releases seen so far have been tried.
				tried := q.allTried()
				go func() {
					select {
					case <-tried:
						if w.cfg.HubLinked == nil || w.cfg.HubLinked() {
							w.logger.Info("in sync with hub")
						} else {
							w.logger.Info("caught up with the local mirror; hub not linked: serving what was last mirrored from it")
						}
						w.syncOnce.Do(func() { close(w.synced) })
					case <-ctx.Done():
					}
				}()
				continue
			}
			take(e)
		}
	}
}

// directUpdates is w's updates channel, or nil (never ready) without w.
func directUpdates(w jetstream.KeyWatcher) <-chan jetstream.KeyValueEntry {
	if w == nil {
		return nil
	}
	return w.Updates()
}

// noteRollout records a rollout update.
func (w *Watcher) noteRollout(rolls map[string]Rollout, e jetstream.KeyValueEntry) {
	var r Rollout
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		w.logger.Warn("unreadable rollout", "app", e.Key(), "err", err)
		return
	}
	rolls[e.Key()] = r
}

// effective is the release this agent should run for app: the hub's
// current release, or the rollout's release once an active rollout's
// waves reach this agent. A finished rollout's outcome (its release, or
// its abort release) counts too, since the two buckets' updates can
// arrive in either order; of the candidates, the highest sequence wins.
func (w *Watcher) effective(app string, current []byte, rolls map[string]Rollout) []byte {
	r, ok := rolls[app]
	if !ok {
		return current
	}
	var cand []byte
	switch {
	case r.State == RolloutActive && r.Reaches(w.cfg.Site, w.cfg.Labels), r.State == RolloutDone:
		cand = r.Release
	case r.State == RolloutFailed:
		cand = r.Abort
	}
	if cand == nil {
		return current
	}
	if current == nil {
		return cand
	}
	c, err1 := artifact.Peek(current)
	n, err2 := artifact.Peek(cand)
	if err1 == nil && err2 == nil && c.Sequence >= n.Sequence {
		return current
	}
	return cand
}

// Bounds of the delay between tries of a release waiting for its module.
const (
	retryMin = 50 * time.Millisecond
	retryMax = 5 * time.Second
)

// handle verifies one release and installs it, or refuses it with a
// reason. It reports whether the release should be tried again later
// because its module cannot be downloaded now; first says whether this is
// the release's first try, so that waiting is logged once. ctx is
// cancelled when a newer release of the app supersedes this one: the
// install then stops without counting as a refusal.
func (w *Watcher) handle(ctx context.Context, key string, envelope []byte, first bool) (again bool) {
	start := time.Now()
	rel, wasm, err := w.verify(ctx, key, envelope)
	verified := time.Now()
	if errors.Is(err, errSame) {
		return false
	}
	if errors.Is(err, errUnavailable) {
		log := w.logger.Debug
		if first {
			log = w.logger.Info
		}
		log("module not available yet; will retry", "app", key, "sequence", rel.Sequence, "digest", rel.Digest, "err", err)
		return true
	}
	if err == nil {
		err = w.cfg.Installer.Install(ctx, rel, envelope, wasm)
		recycleModuleBuf(wasm)
		if errors.Is(err, ErrTryLater) && !first {
			w.logger.Debug("release still waits", "app", key, "sequence", rel.Sequence, "err", err)
			return true
		}
	}
	if err != nil && ctx.Err() != nil {
		w.logger.Info("install stopped: superseded by a newer release or shutdown", "app", key, "sequence", rel.Sequence, "err", err)
		return false
	}
	if err != nil {
		reason := refusalReason(err)
		w.refused.WithLabelValues(reason).Inc()
		if rel.Sequence == 0 {
			// Refused before it was opened (an untrusted key, a bad
			// signature): the sequence it claims still tells a waiting
			// publisher which of its releases this was.
			if claimed, perr := artifact.Peek(envelope); perr == nil {
				rel.Sequence = claimed.Sequence
			}
		}
		w.mu.Lock()
		w.refusals = append([]Refusal{{App: key, Sequence: rel.Sequence, Reason: reason, Error: err.Error(), Time: w.cfg.Now().UTC()}}, w.refusals...)
		if len(w.refusals) > maxRefusals {
			w.refusals = w.refusals[:maxRefusals]
		}
		w.mu.Unlock()
		if errors.Is(err, ErrTryLater) {
			w.logger.Warn("release refused for now; will retry", "app", key, "sequence", rel.Sequence, "reason", reason, "err", err)
			return true
		}
		w.logger.Warn("release refused", "app", key, "sequence", rel.Sequence, "reason", reason, "err", err)
		if w.cfg.Refused != nil {
			w.cfg.Refused()
		}
		return
	}
	w.accepted.Inc()
	w.logger.Info("release installed", "app", rel.App, "version", rel.Manifest.Version, "sequence", rel.Sequence, "digest", rel.Digest,
		"verify", verified.Sub(start).Round(time.Microsecond), "install", time.Since(verified).Round(time.Microsecond))
	return false
}

// errSame marks a release the agent already has installed (the watch
// replays current values on every connect); it is neither news nor a
// refusal.
var errSame = errors.New("already installed")

func (w *Watcher) verify(ctx context.Context, key string, envelope []byte) (artifact.Release, []byte, error) {
	trusted, err := w.cfg.Trusted()
	if err != nil {
		return artifact.Release{}, nil, fmt.Errorf("release %s: %w", key, err)
	}
	rel, err := artifact.Open(envelope, trusted)
	if err != nil {
		return rel, nil, fmt.Errorf("open release %s: %w", key, err)
	}
	if err := rel.Validate(); err != nil {
		return rel, nil, fmt.Errorf("release %s: %w", key, err)
	}
	// A release signed for one app and stored under another's key would
	// let one app's publisher replace another app.
	if rel.App != key {
		return rel, nil, fmt.Errorf("release for app %q stored under key %q: %w", rel.App, key, artifact.ErrMalformed)
	}
	seq, digest := w.cfg.Installer.Installed(rel.App)
	if seq != 0 && rel.Sequence == seq && rel.Digest == digest {
		return rel, nil, errSame
	}
	if err := rel.CheckFresh(w.cfg.Now(), seq); err != nil {
		return rel, nil, fmt.Errorf("release %s@%d: %w", rel.App, rel.Sequence, err)
	}
	if w.cfg.MaxArtifactBytes > 0 && rel.Size > w.cfg.MaxArtifactBytes {
		return rel, nil, fmt.Errorf("release %s@%d: module of %d bytes exceeds the agent's limit of %d bytes: %w",
			rel.App, rel.Sequence, rel.Size, w.cfg.MaxArtifactBytes, artifact.ErrSize)
	}
	if !rel.HasModule() {
		// An origin app: the signed release is all there is.
		return rel, nil, nil
	}
	obs, err := w.moduleStore(ctx)
	if err != nil {
		return rel, nil, fmt.Errorf("fetch %s for %s@%d: %w: %w", rel.Digest, rel.App, rel.Sequence, errUnavailable, err)
	}
	wasm, err := fetch(ctx, obs, rel)
	if err != nil {
		return rel, nil, err
	}
	if err := rel.CheckBytes(wasm); err != nil {
		return rel, nil, fmt.Errorf("release %s@%d: %w", rel.App, rel.Sequence, err)
	}
	return rel, wasm, nil
}

// moduleStore returns the hub's module store, looked up when first
// needed: a site that starts cut off from the hub still follows its
// releases, and installs them once the store can be reached.
func (w *Watcher) moduleStore(ctx context.Context) (*moduleStore, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.modules != nil {
		return w.modules, nil
	}
	ms, err := w.cfg.Client.modules(ctx)
	if err != nil {
		return nil, err
	}
	w.modules = &ms
	return w.modules, nil
}

// errUnavailable marks a module that could not be downloaded now (the hub
// unreachable, the object not there yet, a transfer cut short): the
// release is tried again later rather than refused.
var errUnavailable = errors.New("module unavailable")

// ErrTryLater, wrapped by an Installer's error, refuses a release for now
// (the agent's disk is short of its reserve): the watcher counts and
// reports the refusal once and tries the release again, with the same
// backoff as a module it cannot download yet.
var ErrTryLater = errors.New("cannot install now")

// fetch downloads rel's module from the hub, refusing before any chunk
// is read an object whose size differs from the signed one.
//
// Chunks are read one by one with direct gets, request and reply on the
// connection's shared reply subscription, rather than through an object
// store reader. A reader creates a consumer and a new reply subscription
// per download, and in a leaf-node topology the hub announces every new
// subscription to every other leaf: a deploy to N sites would cost the hub
// N² subscription messages. Direct gets cost N downloads and nothing else.
func fetch(ctx context.Context, ms *moduleStore, rel artifact.Release) ([]byte, error) {
	fail := func(kind, err error) error {
		return fmt.Errorf("fetch %s for %s@%d: %w: %w", rel.Digest, rel.App, rel.Sequence, kind, err)
	}
	info, err := ms.obs.GetInfo(ctx, rel.Digest)
	if err != nil {
		return nil, fail(errUnavailable, err)
	}
	if int64(info.Size) != rel.Size {
		return nil, fmt.Errorf("fetch %s for %s@%d: object has %d bytes, release says %d: %w",
			rel.Digest, rel.App, rel.Sequence, info.Size, rel.Size, artifact.ErrSize)
	}
	subject := "$O." + ArtifactsBucket + ".C." + info.NUID
	buf := moduleBuf(rel.Size)
	var seq uint64
	for range info.Chunks {
		msg, err := ms.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if err != nil {
			return nil, fail(errUnavailable, err)
		}
		if int64(len(buf)+len(msg.Data)) > rel.Size {
			return nil, fail(artifact.ErrSize, fmt.Errorf("object holds more than its %d bytes", rel.Size))
		}
		buf = append(buf, msg.Data...)
		seq = msg.Sequence + 1
	}
	if int64(len(buf)) != rel.Size {
		return nil, fail(errUnavailable, fmt.Errorf("object gave %d of its %d bytes", len(buf), rel.Size))
	}
	return buf, nil
}

// moduleBufs recycles download buffers. A deploy downloads the same
// module at every agent, and an agent's module is garbage as soon as it
// is installed (compiled and written to a file): without reuse, a fleet
// of agents in one process (the benchmark) allocates a module-sized
// buffer per agent per deploy, a third of what a deploy allocates.
var moduleBufs gosync.Pool

// maxRecycled is the largest buffer worth keeping for the next download.
const maxRecycled = 8 << 20

// moduleBuf returns an empty buffer with room for size bytes.
func moduleBuf(size int64) []byte {
	if size <= maxRecycled {
		if b, ok := moduleBufs.Get().(*[]byte); ok && int64(cap(*b)) >= size {
			return (*b)[:0]
		}
	}
	return make([]byte, 0, size)
}

// recycleModuleBuf hands b back for a later download.
func recycleModuleBuf(b []byte) {
	if c := cap(b); c > 0 && c <= maxRecycled {
		b = b[:0]
		moduleBufs.Put(&b)
	}
}

// refusalReason is the metrics label for why a release was refused.
func refusalReason(err error) string {
	if r := artifact.Reason(err); r != "other" {
		return r
	}
	var re interface{ RefusalReason() string }
	if errors.As(err, &re) {
		return re.RefusalReason()
	}
	return "other"
}
