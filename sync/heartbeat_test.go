package sync

import (
	"context"
	"testing"
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
