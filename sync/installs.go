package sync

import (
	"bytes"
	"context"
	gosync "sync"
	"time"
)

// installs runs the watcher's installs: each app's in its own goroutine,
// so that one app's long compile (a large module, a module built to be
// slow) delays no other app's release, rollbacks included. An app has at
// most one install running; a newer release of the app supersedes it (its
// context is cancelled, and the install gives up as soon as it can) and
// waits for it to stop. A release whose module cannot be downloaded yet
// is tried again by its goroutine, soon at first and then less and less
// often, until it installs or a newer release replaces it.
type installs struct {
	// handle tries one release: Watcher.handle.
	handle func(ctx context.Context, app string, env []byte, first bool) (again bool)

	mu   gosync.Mutex
	apps map[string]*appInstall // apps with an install running; guarded by mu
	// untried counts submitted releases not yet tried once, and idle are
	// closed when it falls to zero; guarded by mu.
	untried int
	idle    []chan struct{}
	wg      gosync.WaitGroup // one per running app goroutine
}

// appInstall is one app's running install and the release to install
// next, if a newer one came meanwhile.
type appInstall struct {
	env    []byte
	cancel context.CancelFunc
	next   []byte // nil: none
}

func newInstalls(handle func(ctx context.Context, app string, env []byte, first bool) bool) *installs {
	return &installs{handle: handle, apps: map[string]*appInstall{}}
}

// submit makes env the release to install for app. A release equal to
// the one running or waiting for app is ignored: the hub's watch replays
// current values on every reconnect.
func (q *installs) submit(ctx context.Context, app string, env []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if a, ok := q.apps[app]; ok {
		if bytes.Equal(a.next, env) || (a.next == nil && bytes.Equal(a.env, env)) {
			return
		}
		if a.next == nil {
			q.untried++
		}
		a.next = env
		a.cancel()
		return
	}
	q.untried++
	actx, cancel := context.WithCancel(ctx)
	q.apps[app] = &appInstall{env: env, cancel: cancel}
	q.wg.Add(1)
	go q.run(ctx, actx, app, env)
}

// run installs app's releases until none is left to install. ctx is the
// watcher's, actx the current release's.
func (q *installs) run(ctx, actx context.Context, app string, env []byte) {
	defer q.wg.Done()
	delay := retryMin
	retry := time.NewTimer(0)
	retry.Stop()
	defer retry.Stop()
	for {
		first := delay == retryMin
		again := q.handle(actx, app, env, first)
		if first {
			q.tried()
		}
		if again {
			retry.Reset(delay)
			select {
			case <-retry.C:
			case <-actx.Done():
			}
		}
		q.mu.Lock()
		a := q.apps[app]
		switch {
		case a.next != nil && ctx.Err() == nil:
			env, a.env, a.next = a.next, a.next, nil
			a.cancel()
			actx, a.cancel = context.WithCancel(ctx)
			delay = retryMin
		case again && actx.Err() == nil:
			delay = min(2*delay, retryMax)
		default:
			if a.next != nil { // shutting down: it will not be tried
				q.triedLocked()
			}
			a.cancel()
			delete(q.apps, app)
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
	}
}

// tried records a release's first try.
func (q *installs) tried() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.triedLocked()
}

func (q *installs) triedLocked() {
	q.untried--
	if q.untried == 0 {
		for _, ch := range q.idle {
			close(ch)
		}
		q.idle = nil
	}
}

// allTried returns a channel closed once every release submitted so far
// has been tried at least once (installed, refused, or left waiting for
// its module).
func (q *installs) allTried() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	ch := make(chan struct{})
	if q.untried == 0 {
		close(ch)
	} else {
		q.idle = append(q.idle, ch)
	}
	return ch
}

// wait returns once every install has stopped.
func (q *installs) wait() { q.wg.Wait() }
