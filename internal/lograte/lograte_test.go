package lograte

import (
	"bytes"
	"encoding/json"
	"log/slog"
	gosync "sync"
	"testing"
	"testing/synctest"
	"time"
)

// lines is a log sink that decodes the JSON lines written to it.
type lines struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lines) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(l.buf.Bytes()))
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// count returns how many records have msg and the given attribute values.
func count(recs []map[string]any, msg string, attrs ...any) int {
	n := 0
next:
	for _, r := range recs {
		if r["msg"] != msg {
			continue
		}
		for i := 0; i < len(attrs); i += 2 {
			if r[attrs[i].(string)] != attrs[i+1] {
				continue next
			}
		}
		n++
	}
	return n
}

func newLogger(sink *lines) *slog.Logger {
	return slog.New(New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}), Options{Burst: 3}))
}

func TestBurstThenOneSuppressedLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &lines{}
		logger := newLogger(sink)
		app := logger.With("app", "trapper")
		for range 1000 {
			app.Warn("function failed", "reason", "trap", "status", 500)
		}
		app.Warn("function failed", "reason", "timeout")
		logger.With("app", "other").Warn("function failed", "reason", "trap")
		for range 10 {
			app.Info("guest stderr", "line", "x")
		}
		recs := sink.records(t)
		if got := count(recs, "function failed", "app", "trapper", "reason", "trap"); got != 3 {
			t.Fatalf("%d trap lines within the interval, want the burst of 3", got)
		}
		if got := count(recs, "function failed", "reason", "timeout") + count(recs, "function failed", "app", "other"); got != 2 {
			t.Fatalf("other keys logged %d lines, want 2: a key does not use up another's burst", got)
		}
		if got := count(recs, "guest stderr"); got != 10 {
			t.Fatalf("%d info lines, want all 10: only warnings are limited", got)
		}
		if got := count(recs, SuppressedMsg); got != 0 {
			t.Fatalf("suppressed count logged before the interval ended")
		}

		time.Sleep(DefaultInterval)
		synctest.Wait()
		recs = sink.records(t)
		if got := count(recs, SuppressedMsg, "app", "trapper", "reason", "trap", "of", "function failed", "suppressed", 997.0, "level", "WARN"); got != 1 {
			t.Fatalf("want one line reporting 997 suppressed for app trapper, reason trap:\n%s", &sink.buf)
		}
		if got := count(recs, SuppressedMsg); got != 1 {
			t.Fatalf("%d suppressed lines, want 1", got)
		}

		// A new interval has a new burst.
		for range 5 {
			app.Warn("function failed", "reason", "trap")
		}
		time.Sleep(DefaultInterval)
		synctest.Wait()
		recs = sink.records(t)
		if got := count(recs, "function failed", "app", "trapper", "reason", "trap"); got != 6 {
			t.Fatalf("%d trap lines after two intervals, want 6", got)
		}
		if got := count(recs, SuppressedMsg, "suppressed", 2.0); got != 1 {
			t.Fatalf("second interval's 2 suppressed lines not reported:\n%s", &sink.buf)
		}
	})
}

// A burst that stays within its limit reports nothing, and its key is
// forgotten once the map is full, so distinct keys cannot grow it without
// bound.
func TestKeysAreForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &lines{}
		h := New(slog.NewJSONHandler(sink, nil), Options{})
		logger := slog.New(h)
		for i := range maxKeys {
			logger.Warn("upstream request failed", "app", i)
		}
		time.Sleep(DefaultInterval)
		logger.Warn("upstream request failed", "app", "new")
		h.state.mu.Lock()
		n := len(h.state.keys)
		h.state.mu.Unlock()
		if n != 1 {
			t.Fatalf("%d keys remembered, want 1", n)
		}
		if got := count(sink.records(t), SuppressedMsg); got != 0 {
			t.Fatalf("%d suppressed lines for bursts within the limit", got)
		}
	})
}
