package sync

import (
	"context"
	"errors"
	"sort"
	gosync "sync"
	"testing"
	"time"
)

type recordingPurger struct {
	mu  gosync.Mutex
	got []Purge
	err error
}

func (r *recordingPurger) Purge(_ context.Context, p Purge) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, p)
	return len(p.URLs) + len(p.Tags), r.err
}

func TestPurgeFanOut(t *testing.T) {
	hubClient := startTestHub(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	purgers := []*recordingPurger{{}, {}, {err: errors.New("disk full")}}
	var wg gosync.WaitGroup
	for i, p := range purgers {
		c, err := Connect(ConnConfig{URL: hubClient.nc.ConnectedUrl(), Name: "agent"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.ServePurges(ctx, string(rune('a'+i)), "site1", p, nil)
		}()
		// Subscriptions are asynchronous: flush so the hub has it.
		if err := c.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until all three subscriptions reached the server.
	deadline := time.Now().Add(10 * time.Second)
	for {
		acks, err := hubClient.PublishPurge(ctx, Purge{ID: "probe"}, 3, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(acks) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d agents answered the probe", len(acks))
		}
	}

	acks, err := hubClient.PublishPurge(ctx, Purge{ID: "p1", URLs: []string{"https://x/a"}, Tags: []string{"t"}, Soft: true}, 3, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != 3 {
		t.Fatalf("%d acks, want 3: %+v", len(acks), acks)
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].Agent < acks[j].Agent })
	for i, a := range acks {
		if a.ID != "p1" || a.Purged != 2 || a.Site != "site1" {
			t.Errorf("ack %d = %+v", i, a)
		}
	}
	if acks[2].Error != "disk full" || acks[0].Error != "" {
		t.Errorf("errors not carried: %+v", acks)
	}
	for _, p := range purgers {
		p.mu.Lock()
		last := p.got[len(p.got)-1]
		p.mu.Unlock()
		if !last.Soft || last.URLs[0] != "https://x/a" {
			t.Errorf("purger saw %+v", last)
		}
	}
	cancel()
	wg.Wait()
}
