package sync

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestJobQueue stores jobs on the hub per site, lists a site's jobs in
// order, stores a repeated publish once, and removes finished jobs.
func TestJobQueue(t *testing.T) {
	hub := startTestHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	at := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	job := func(id, site string) QueuedJob {
		return QueuedJob{ID: id, Site: site, Owner: "a1", App: "kv", Method: "POST", Target: "/kv", Host: "h", Body: []byte("body " + id), Accepted: at, Deadline: at.Add(time.Hour), Runtime: time.Minute}
	}
	var seqs []uint64
	for _, j := range []QueuedJob{job("j1", "pop"), job("j2", "other"), job("j3", "pop")} {
		seq, err := hub.QueueJob(ctx, j)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	if again, err := hub.QueueJob(ctx, job("j1", "pop")); err != nil || again != seqs[0] {
		t.Fatalf("repeated publish: seq %d, %v; want %d (stored once)", again, err, seqs[0])
	}
	list := func() []string {
		var ids []string
		err := hub.QueuedJobs(ctx, "pop", func(seq uint64, stored time.Time, j QueuedJob) error {
			if stored.IsZero() || string(j.Body) != "body "+j.ID || j.Site != "pop" {
				t.Errorf("queued %d: %+v at %s", seq, j, stored)
			}
			ids = append(ids, j.ID)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if ids := list(); !slices.Equal(ids, []string{"j1", "j3"}) {
		t.Fatalf("pop's jobs: %v", ids)
	}
	if err := hub.DoneJob(ctx, "pop", "j1", seqs[0]); err != nil {
		t.Fatal(err)
	}
	if err := hub.DoneJob(ctx, "pop", "j1", seqs[0]); err != nil {
		t.Fatalf("removing a removed job: %v", err)
	}
	if ids := list(); !slices.Equal(ids, []string{"j3"}) {
		t.Fatalf("after j1 ended: %v", ids)
	}
	s, err := hub.fleetJS.Stream(ctx, JobQueueStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.Config.Retention != jetstream.WorkQueuePolicy || info.State.Msgs != 2 {
		t.Fatalf("stream: %+v, %v", info, err)
	}
	if _, err := hub.QueueJob(ctx, job("j4", "bad.site")); !errors.Is(err, ErrInvalidSite) {
		t.Fatalf("site with a dot: %v", err)
	}
	big := job("j5", "pop")
	big.Body = make([]byte, hub.nc.MaxPayload()+1)
	if _, err := hub.QueueJob(ctx, big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized job: %v", err)
	}
}
