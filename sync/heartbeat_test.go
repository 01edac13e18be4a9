package sync

import (
	"context"
	"testing"
	"time"
)

// TestHeartbeatSurvivesBucketLoss removes the fleet bucket between two
// heartbeats, as a hub that lost its state or an operator's cleanup
// would: the next heartbeat creates it again and lands, although the
// agent kept a handle on the old one.
func TestHeartbeatSurvivesBucketLoss(t *testing.T) {
	c := startTestHub(t)
	ctx := context.Background()
	if err := c.PublishHeartbeat(ctx, Heartbeat{Agent: "a1", Site: "s1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.fleetJS.DeleteKeyValue(ctx, FleetBucket); err != nil {
		t.Fatal(err)
	}
	if err := c.PublishHeartbeat(ctx, Heartbeat{Agent: "a1", Site: "s2"}); err != nil {
		t.Fatalf("heartbeat after the bucket was removed: %v", err)
	}
	fleet, err := c.Fleet(ctx)
	if err != nil || len(fleet) != 1 || fleet[0].Site != "s2" {
		t.Fatalf("fleet = %+v, %v; want a1 at s2", fleet, err)
	}
}

// TestHeartbeatGoodbye: a Heartbeater that stops publishes a last
// heartbeat marked Stopped, so that readers (a deploy waiting on the
// fleet) know at once that the agent serves nothing, rather than three
// intervals later when the heartbeat turns stale.
func TestHeartbeatGoodbye(t *testing.T) {
	c := startTestHub(t)
	ctx, cancel := context.WithCancel(context.Background())
	h := &Heartbeater{Client: c, Interval: time.Hour, State: func() Heartbeat { return Heartbeat{Agent: "a1", Site: "s1"} }}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	fleetOf := func() []Heartbeat {
		fleet, err := c.Fleet(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return fleet
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(fleetOf()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no first heartbeat")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if hb := fleetOf()[0]; hb.Stopped || !hb.Live(time.Now()) {
		t.Fatalf("running agent's heartbeat: stopped %v, live %v", hb.Stopped, hb.Live(time.Now()))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	hb := fleetOf()[0]
	if !hb.Stopped || hb.Live(time.Now()) || hb.Stale(time.Now()) {
		t.Fatalf("stopped agent's heartbeat: stopped %v, live %v, stale %v; want stopped, not live, not stale", hb.Stopped, hb.Live(time.Now()), hb.Stale(time.Now()))
	}
}
