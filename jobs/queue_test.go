package jobs

import (
	"context"
	"errors"
	"net/http"
	gosync "sync"
	"testing"
	"time"
)

// fakeQueue keeps copies in memory and fails while down.
type fakeQueue struct {
	mu   gosync.Mutex
	down bool
	next uint64
	jobs map[uint64]QueuedJob
}

func (q *fakeQueue) Put(_ context.Context, job QueuedJob) (uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.down {
		return 0, errors.New("hub unreachable")
	}
	q.next++
	q.jobs[q.next] = job
	return q.next, nil
}

func (q *fakeQueue) Done(_ context.Context, _ string, ref uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.down {
		return errors.New("hub unreachable")
	}
	delete(q.jobs, ref)
	return nil
}

func (q *fakeQueue) held() map[uint64]QueuedJob {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := map[uint64]QueuedJob{}
	for k, v := range q.jobs {
		out[k] = v
	}
	return out
}

// TestQueueCopies: a job is copied to the queue before the 202 when the
// hub is reachable, copied by a later tick when it was not, and removed
// from the queue once it ends; another agent's scheduler adopts a copy
// and runs it.
func TestQueueCopies(t *testing.T) {
	f := newFixture(t, 0)
	q := &fakeQueue{jobs: map[uint64]QueuedJob{}}
	f.s.cfg.Queue = q
	f.step()
	_, v1, _ := f.post(nil, "one")
	if held := q.held(); len(held) != 1 || held[1].ID != v1.ID || string(held[1].Body) != "one" || !held[1].Deadline.Equal(v1.Deadline) {
		t.Fatalf("after the 202: queue holds %+v", held)
	}
	q.mu.Lock()
	q.down = true
	q.mu.Unlock()
	_, v2, _ := f.post(nil, "two")
	if held := q.held(); len(held) != 1 {
		t.Fatalf("hub down: queue holds %d", len(held))
	}
	if f.s.jobs[v2.ID].QueueRef != 0 {
		t.Fatal("a job the hub did not take has a reference")
	}
	q.mu.Lock()
	q.down = false
	q.mu.Unlock()
	f.step()
	if held := q.held(); len(held) != 2 || held[2].ID != v2.ID || string(held[2].Body) != "two" {
		t.Fatalf("hub back: queue holds %+v", held)
	}

	// Another agent of the site adopts the second job (as if this one had
	// lost its disk) and runs it; the first runs here.
	g := newFixture(t, 0)
	g.s.cfg.Queue = q
	g.step()
	if ok, err := g.s.Adopt(q.held()[2], 2); !ok || err != nil {
		t.Fatalf("adopt: %v, %v", ok, err)
	}
	if ok, _ := g.s.Adopt(q.held()[2], 2); ok {
		t.Fatal("adopted twice")
	}
	if _, err := g.s.Adopt(QueuedJob{ID: "not-an-id"}, 3); err == nil {
		t.Fatal("adopted a job with an invalid id")
	}
	f.s.Cancel(v2.ID)
	f.clock.Set(t0.Add(2 * time.Hour))
	g.clock.Set(t0.Add(2 * time.Hour))
	f.step()
	g.step()
	if got := g.get(v2.ID); got.State != StateDone || got.Result == nil || got.Result.Status != http.StatusCreated {
		t.Fatalf("adopted job: %+v", got)
	}
	if got := f.get(v1.ID); got.State != StateDone {
		t.Fatalf("first job: %+v", got)
	}
	f.step()
	g.step()
	if held := q.held(); len(held) != 0 {
		t.Fatalf("ended jobs still queued: %+v", held)
	}
}
