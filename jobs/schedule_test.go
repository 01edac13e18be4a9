package jobs

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tern-edge/tern/internal/cron"
)

// scheduledJobs returns the occurrences of the stored scheduled jobs, in
// order.
func (f *fixture) scheduledJobs() []time.Time {
	f.t.Helper()
	var out []time.Time
	err := f.store.Jobs(func(_ string, b []byte) error {
		var r record
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		if r.Occurrence != nil {
			out = append(out, *r.Occurrence)
		}
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

// TestScheduledJobs: a daily schedule with a 6-hour window makes one job
// per occurrence, planned and run like a request; a step or a restart
// never makes an occurrence twice; occurrences missed while the agent was
// down are made when their window is still open and skipped when it is
// not; an agent that is not its site's scheduling agent makes none, and
// takes over only after what the other agent was known to cover.
func TestScheduledJobs(t *testing.T) {
	f := newFixture(t, 0)
	daily, err := cron.Parse("0 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	sc := Scheduled{Spec: spec, Key: "reports/nightly", Cron: daily, Window: 6 * time.Hour,
		Method: http.MethodPost, Target: "/reports/rebuild", Host: "pop.example", Header: http.Header{"X-Nightly": {"1"}}, Body: []byte("all")}
	lead, covered := true, time.Time{}
	install := func() {
		f.s.cfg.Schedules = func() []Scheduled { return []Scheduled{sc} }
		f.s.cfg.Leader = func() (bool, time.Time) { return lead, covered }
	}
	install()
	day := func(d, h, m int) time.Time {
		return t0.Add(time.Duration(d)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
	}
	want := func(what string, occ ...time.Time) {
		t.Helper()
		if got := f.scheduledJobs(); !slices.EqualFunc(got, occ, time.Time.Equal) {
			t.Fatalf("%s: occurrences %v, want %v", what, got, occ)
		}
	}

	f.step() // 00:10: installed; nothing before it is made up
	want("at install")
	f.clock.Set(day(0, 1, 59))
	f.step()
	want("before the first occurrence")

	f.clock.Set(day(0, 2, 0))
	f.step()
	want("at the first occurrence", day(0, 2, 0))
	var id string
	for jid, r := range f.s.jobs {
		id = jid
		if !r.Deadline.Equal(day(0, 8, 0)) || r.Schedule != "reports/nightly" {
			t.Fatalf("job %+v: want deadline 08:00", r)
		}
	}
	if v := f.get(id); v.State != StateDone || v.Occurrence == nil || !v.Occurrence.Equal(day(0, 2, 0)) || v.Result == nil || v.Result.Status != http.StatusCreated {
		t.Fatalf("job at its clean start (02:00): %+v", v)
	}
	if _, _, body, err := f.s.Result(id); err != nil || string(body) != "POST pop.example /reports/rebuild route=/reports body=all" {
		t.Fatalf("result: %q, %v", body, err)
	}
	f.step()
	f.restart()
	install()
	f.step()
	want("after another step and a restart", day(0, 2, 0))

	// Down from day 0 until day 2, 03:00: day 1's window closed at 08:00,
	// day 2's is open.
	f.restart()
	install()
	f.clock.Set(day(2, 3, 0))
	f.step()
	want("after two days down", day(0, 2, 0), day(2, 2, 0))

	// Another agent of the site makes the occurrences: day 3's is covered
	// by it (its heartbeat came after), so this one makes nothing, even
	// once it takes over.
	lead, covered = false, day(3, 2, 10)
	f.clock.Set(day(3, 2, 30))
	f.step()
	lead = true
	f.clock.Set(day(3, 2, 40))
	f.step()
	want("an occurrence the other agent covered", day(0, 2, 0), day(2, 2, 0))
	// Day 4's is not covered (the other agent was last seen at 01:00):
	// the follower waits, and makes it when it takes over.
	lead, covered = false, day(4, 1, 0)
	f.clock.Set(day(4, 2, 30))
	f.step()
	want("follower", day(0, 2, 0), day(2, 2, 0))
	lead = true
	f.clock.Set(day(4, 3, 0))
	f.step()
	want("after taking over", day(0, 2, 0), day(2, 2, 0), day(4, 2, 0))
}
