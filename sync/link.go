package sync

import (
	"math/rand/v2"
	"strings"
	gosync "sync"
	"time"
)

// link tells an agent's watchers when its leaf node's connection to the
// hub comes up. The agent's own NATS connection is in-process to the
// leaf node and never sees the hub go away, so nats.go's reconnect
// handlers say nothing; the leaf node's server announces each new hub
// connection in its log, and that is the event used here.
type link struct {
	mu gosync.Mutex
	up chan struct{} // closed, and replaced, at each link-up; guarded by mu
}

func newLink() *link { return &link{up: make(chan struct{})} }

// next returns a channel closed when the link next comes up.
func (l *link) next() <-chan struct{} {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up
}

// noteUp wakes everyone waiting in next.
func (l *link) noteUp() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.up)
	l.up = make(chan struct{})
}

// noteLog notes a link-up in a line of the leaf node server's log: it
// logs one when the solicited hub connection starts using the hub's
// JetStream domain, from which moment the hub's buckets are reachable.
func (l *link) noteLog(msg string) {
	if l != nil && strings.Contains(msg, "JetStream using domains") {
		l.noteUp()
	}
}

// backoff is a retry delay that doubles from min to max, with jitter so
// that agents cut off together do not retry together, and that starts
// again from min once a try succeeds.
type backoff struct {
	min, max, cur time.Duration
}

// next returns the delay before the next try: a random duration between
// half the current delay and the current delay, which then doubles.
func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	}
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(2*b.cur, b.max)
	return d
}

// reset starts the delays again from min, after a success.
func (b *backoff) reset() { b.cur = b.min }
