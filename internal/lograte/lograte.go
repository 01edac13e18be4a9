// Package lograte bounds how often one kind of warning is logged, so that
// a guest that traps on every request or an origin that is down cannot
// flood the log. It wraps a slog.Handler: warnings and errors with the same
// message, app and reason pass a few at a time per interval; the rest are
// counted and reported in one line when the interval ends (the pattern of
// journald's RateLimitBurst and its "Suppressed N messages" line). The
// metrics keep the exact counts; the log only has to stay readable.
package lograte

import (
	"context"
	"log/slog"
	"strings"
	gosync "sync"
	"time"
)

// Defaults for the zero Options.
const (
	DefaultBurst    = 5
	DefaultInterval = time.Second
)

// SuppressedMsg is the message of the line that reports suppressed lines.
const SuppressedMsg = "repeated log lines suppressed"

// maxKeys bounds the number of keys remembered; beyond it, keys whose
// interval has ended are forgotten.
const maxKeys = 4096

// Options configures a Handler.
type Options struct {
	// Burst is how many records of one key pass per interval
	// (DefaultBurst when zero).
	Burst int
	// Interval is the window the burst applies to (DefaultInterval when
	// zero).
	Interval time.Duration
	// Level is the lowest level limited; records below it always pass.
	// The zero value is slog.LevelWarn.
	Level slog.Level
	// Keys are the attributes that, with the message, make up a record's
	// key (default "app", "reason" and "upstream").
	Keys []string
}

// Handler is a slog.Handler that drops records of one key beyond a burst
// per interval and then logs how many it dropped. It is safe for
// concurrent use, as slog requires.
type Handler struct {
	next  slog.Handler
	state *state
	bound []slog.Attr // key attributes bound by WithAttrs
}

var _ slog.Handler = (*Handler)(nil)

// state is shared by a Handler and those derived from it by WithAttrs and
// WithGroup, so the bound holds however a logger was derived.
type state struct {
	opts Options
	mu   gosync.Mutex
	keys map[string]*bucket
}

// bucket counts one key's records in its current interval.
type bucket struct {
	start      time.Time
	passed     int
	suppressed int
	level      slog.Level
	msg        string
	own        []slog.Attr  // the record's own key attributes, repeated in the summary
	next       slog.Handler // the handler the summary goes to
}

// New wraps next.
func New(next slog.Handler, opts Options) *Handler {
	if opts.Burst <= 0 {
		opts.Burst = DefaultBurst
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Level == 0 {
		opts.Level = slog.LevelWarn
	}
	if opts.Keys == nil {
		opts.Keys = []string{"app", "reason", "upstream"}
	}
	return &Handler{next: next, state: &state{opts: opts, keys: map[string]*bucket{}}}
}

// Enabled reports whether the wrapped handler handles level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// WithAttrs returns a Handler whose records carry attrs, limited together
// with h's.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	bound := h.bound
	for _, a := range attrs {
		if h.state.isKey(a.Key) {
			bound = append(bound[:len(bound):len(bound)], a)
		}
	}
	return &Handler{next: h.next.WithAttrs(attrs), state: h.state, bound: bound}
}

// WithGroup returns a Handler that puts later attributes in group name.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), state: h.state, bound: h.bound}
}

// Handle passes r on unless its key has used up its burst for the current
// interval.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < h.state.opts.Level {
		return h.next.Handle(ctx, r)
	}
	var own []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		if h.state.isKey(a.Key) {
			own = append(own, a)
		}
		return true
	})
	if !h.state.admit(h.next, r, h.bound, own) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (s *state) isKey(k string) bool {
	for _, want := range s.opts.Keys {
		if k == want {
			return true
		}
	}
	return false
}

// admit counts r against its key and reports whether it may be logged.
// The first record suppressed in an interval arms a timer that logs the
// count when the interval ends, so the count is reported even when the
// flood stops.
func (s *state) admit(next slog.Handler, r slog.Record, bound, own []slog.Attr) bool {
	var b strings.Builder
	b.WriteString(r.Message)
	for _, attrs := range [][]slog.Attr{bound, own} {
		for _, a := range attrs {
			b.WriteByte(0)
			b.WriteString(a.Key)
			b.WriteByte('=')
			b.WriteString(a.Value.String())
		}
	}
	key := b.String()
	now := time.Now()

	s.mu.Lock()
	defer s.mu.Unlock()
	bk := s.keys[key]
	if bk == nil || (bk.suppressed == 0 && now.Sub(bk.start) >= s.opts.Interval) {
		if bk == nil && len(s.keys) >= maxKeys {
			s.forget(now)
		}
		bk = &bucket{start: now}
		s.keys[key] = bk
	}
	if bk.passed < s.opts.Burst {
		bk.passed++
		return true
	}
	bk.suppressed++
	if bk.suppressed == 1 {
		bk.level, bk.msg, bk.own, bk.next = r.Level, r.Message, own, next
		time.AfterFunc(s.opts.Interval-now.Sub(bk.start), func() { s.report(key, bk) })
	}
	bk.level = max(bk.level, r.Level)
	return false
}

// report logs how many records of bk's key were suppressed in its interval
// and starts a new interval.
func (s *state) report(key string, bk *bucket) {
	s.mu.Lock()
	n, level, next := bk.suppressed, bk.level, bk.next
	attrs := append([]slog.Attr{
		slog.String("of", bk.msg),
		slog.Int("suppressed", n),
		slog.Duration("within", s.opts.Interval),
	}, bk.own...)
	if s.keys[key] == bk {
		delete(s.keys, key)
	}
	s.mu.Unlock()

	r := slog.NewRecord(time.Now(), level, SuppressedMsg, 0)
	r.AddAttrs(attrs...)
	// The handler's bound attributes (the app of a per-app logger) are
	// already on next; only the record's own key attributes are added.
	_ = next.Handle(context.Background(), r)
}

// forget drops the keys whose interval has ended and that have nothing
// left to report. The caller holds s.mu.
func (s *state) forget(now time.Time) {
	for k, bk := range s.keys {
		if bk.suppressed == 0 && now.Sub(bk.start) >= s.opts.Interval {
			delete(s.keys, k)
		}
	}
}
