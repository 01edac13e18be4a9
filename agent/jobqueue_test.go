package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/tern-edge/tern/jobs"
	ternsync "github.com/tern-edge/tern/sync"
)

// TestDeferredJobAdopted runs two agents of one site on a hub: a job
// accepted by the first is on the hub's work queue before the 202; the
// first agent then stops for good (as if its disk were lost) before the
// job ran, and the second adopts the job from the hub, runs it, and
// removes it from the queue.
func TestDeferredJobAdopted(t *testing.T) {
	key := mustKey(t)
	clk := &testClock{t: time.Now().UTC()}
	ticks := []chan time.Time{make(chan time.Time), make(chan time.Time)}
	hub, leaves := offloadFleet(t, key, func(i int, cfg *Config) Options {
		cfg.Site, cfg.Carbon.Region, cfg.Carbon.Constant = "pop", "eu", 100
		return Options{Now: clk.Now, CarbonTicks: ticks[i]}
	})
	first, second := leaves[0], leaves[1]
	for _, c := range ticks {
		c <- time.Time{}
	}
	hc := hubClient(t, hub.Agent)
	deployKV(t, hub.Agent, key, "[deferrable]\nmax_delay = \"12h\"\nexpected_runtime = \"1m\"\n", leaves...)
	queued := func() []ternsync.QueuedJob {
		var out []ternsync.QueuedJob
		if err := hc.QueuedJobs(context.Background(), "pop", func(_ uint64, _ time.Time, j ternsync.QueuedJob) error { out = append(out, j); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}

	resp, body := first.do(t, http.MethodPost, "/kv?set&colour&amber", "")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	q := queued()
	if len(q) != 1 || q[0].Owner != first.id || q[0].Target != "/kv?set&colour&amber" {
		t.Fatalf("on the hub after the 202: %+v", q)
	}
	first.stop() // never ticked: the job has not run

	waitFor(t, "the second agent to adopt the job", func() bool {
		q := queued()
		return len(q) == 1 && q[0].Owner == second.id
	})
	waitFor(t, "adopted job done", func() bool {
		select {
		case ticks[1] <- time.Time{}:
		default:
		}
		resp, body := second.do(t, http.MethodGet, loc, "")
		return resp.StatusCode == http.StatusOK && jobState(t, body) == jobs.StateDone
	})
	if _, body := second.do(t, http.MethodGet, "/kv?get&colour", ""); body != "value=amber\n" {
		t.Fatalf("second agent's kv: %q, want the adopted job ran there", body)
	}
	waitFor(t, "the hub's copy removed", func() bool {
		select {
		case ticks[1] <- time.Time{}:
		default:
		}
		return len(queued()) == 0
	})
}

// jobState returns the state of a job's JSON view.
func jobState(t *testing.T, body string) string {
	t.Helper()
	var v jobs.View
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("job view %q: %v", body, err)
	}
	return v.State
}
