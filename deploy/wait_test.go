package deploy

import (
	"testing"
	"time"

	ternsync "github.com/tern-edge/tern/sync"
)

func TestObserve(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	beat := func(mod func(*ternsync.Heartbeat)) ternsync.Heartbeat {
		hb := ternsync.Heartbeat{Agent: "a1", Site: "fra1", Time: now.Add(-time.Second), Interval: 10 * time.Second,
			Apps:     []ternsync.AppState{{App: "hello", Version: "1.0.0", Sequence: 6}},
			Refusals: []ternsync.Refusal{{App: "greet", Sequence: 3, Reason: "route_conflict", Error: "/hello is served by app hello"}}}
		if mod != nil {
			mod(&hb)
		}
		return hb
	}
	for _, tc := range []struct {
		name   string
		hb     ternsync.Heartbeat
		app    string
		seq    uint64
		state  string
		reason string
	}{
		{"serves it", beat(nil), "hello", 6, Serving, ""},
		{"serves a later one", beat(nil), "hello", 5, Serving, ""},
		{"serves an earlier one", beat(nil), "hello", 7, Pending, ""},
		{"refused it", beat(nil), "greet", 3, Refused, "route_conflict"},
		{"refused another sequence", beat(nil), "greet", 4, Pending, ""},
		{"stale", beat(func(hb *ternsync.Heartbeat) { hb.Time = now.Add(-31 * time.Second) }), "hello", 6, NotReporting, ""},
		{"stopped, though it served it", beat(func(hb *ternsync.Heartbeat) { hb.Stopped = true }), "hello", 6, NotReporting, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Observe(tc.hb, tc.app, tc.seq, now)
			if r.State != tc.state || r.Reason != tc.reason || r.Agent != "a1" || r.Site != "fra1" {
				t.Fatalf("Observe = %+v, want state %q reason %q", r, tc.state, tc.reason)
			}
		})
	}
}
