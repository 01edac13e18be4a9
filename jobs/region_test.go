package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// regionOffloader offers the given sites (flat forecasts) and answers per
// site: a nil answer refuses the job.
type regionOffloader struct {
	t       *testing.T
	mu      gosync.Mutex
	sites   []carbon.RemoteSite
	version uint64
	ok      map[string]bool
	sent    []string
}

func (o *regionOffloader) set(sites ...carbon.RemoteSite) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sites = sites
	o.version++
}

func (o *regionOffloader) site(name, region string, v float64) carbon.RemoteSite {
	c, err := carbon.CurveFromValues(t0, time.Hour, make24(v), carbon.Forecast, carbon.Average, name)
	if err != nil {
		o.t.Fatal(err)
	}
	return carbon.RemoteSite{Site: carbon.Site{Name: name, Region: region, Transfer: time.Minute}, Forecast: c, Source: name + ":test", Apps: []string{"reports"}}
}

func (o *regionOffloader) Sites() ([]carbon.RemoteSite, uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sites, o.version
}

func (o *regionOffloader) Offload(_ context.Context, site string, job OffloadJob) (OffloadResult, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sent = append(o.sent, site)
	if !slices.Equal(job.Regions, []string{"us"}) {
		return OffloadResult{}, fmt.Errorf("job sent without its regions: %v", job.Regions)
	}
	if !o.ok[site] {
		return OffloadResult{}, fmt.Errorf("offload job %s to %s: app reports not installed: refused", job.ID, site)
	}
	return OffloadResult{Status: http.StatusOK, Body: []byte("ran at " + site)}, nil
}

// TestOutsideRegion: a job whose app may not run in this site's region is
// accepted only when an allowed site of the fleet runs the app, planned
// only among allowed sites, retried at another allowed site when the
// chosen one fails, and fails (never running here) when none is left.
func TestOutsideRegion(t *testing.T) {
	us := spec
	us.Regions = []string{"us"}

	t.Run("no offload", func(t *testing.T) {
		f := newFixture(t, 0)
		code, _, _, body := f.postSpec(us, nil, "x")
		if code != http.StatusMisdirectedRequest || !strings.Contains(body, `app reports may run only in regions us; site pop1 is in region "test" and offload is off`) {
			t.Fatalf("POST: %d %q", code, body)
		}
	})
	t.Run("no allowed site", func(t *testing.T) {
		f := newFixture(t, 0)
		off := &regionOffloader{t: t}
		off.set(off.site("paris", "eu", 10))
		f.s.cfg.Offload = off
		f.step()
		code, _, _, body := f.postSpec(us, nil, "x")
		if code != http.StatusMisdirectedRequest || !strings.Contains(body, "no site of the fleet in those regions runs this release of reports") {
			t.Fatalf("POST: %d %q", code, body)
		}
		n := 0
		_ = f.store.Jobs(func(string, []byte) error { n++; return nil })
		if n != 0 {
			t.Fatalf("%d jobs stored after a refusal", n)
		}
	})
	for _, tc := range []struct {
		name    string
		ok      map[string]bool
		state   string
		ranAt   string
		sent    []string
		errLike string
	}{
		{name: "runs at the chosen site", ok: map[string]bool{"west": true, "east": true}, state: StateDone, ranAt: "west", sent: []string{"west"}},
		{name: "retried at the next allowed site", ok: map[string]bool{"east": true}, state: StateDone, ranAt: "east", sent: []string{"west", "east"}},
		{name: "fails when no allowed site runs it", ok: map[string]bool{}, state: StateFailed, sent: []string{"west", "east"},
			errLike: `no other site in regions us could take the job before its deadline, and it may not run at pop1 (region "test")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0)
			off := &regionOffloader{t: t, ok: tc.ok}
			off.set(off.site("west", "us", 50), off.site("east", "us", 80), off.site("paris", "eu", 10))
			f.s.cfg.Offload = off
			f.step()
			code, v, _, body := f.postSpec(us, nil, "x")
			if code != http.StatusAccepted || v.Site != "west" {
				t.Fatalf("POST: %d, planned at %q (%s), want west", code, v.Site, body)
			}
			f.clock.Set(*v.ScheduledAt)
			f.step()
			got := f.get(v.ID)
			if got.State != tc.state || f.runs.Load() != 0 || !slices.Equal(off.sent, tc.sent) {
				t.Fatalf("after its start: %+v, local runs %d, sent to %v; want %s, none here, sent to %v", got, f.runs.Load(), off.sent, tc.state, tc.sent)
			}
			if tc.ranAt != "" && (got.Result == nil || got.Result.Site != tc.ranAt || got.Site != tc.ranAt) {
				t.Fatalf("result %+v at %q, want from %s", got.Result, got.Site, tc.ranAt)
			}
			if len(tc.sent) > 1 && !strings.Contains(got.OffloadError, "to west: app reports not installed") {
				t.Fatalf("offload error %q, want west's refusal", got.OffloadError)
			}
			if !strings.Contains(got.Error, tc.errLike) {
				t.Fatalf("error %q, want %q", got.Error, tc.errLike)
			}
		})
	}

	// The allowed site disappears after acceptance, and the agent
	// restarts: the job waits for an allowed site until its latest start,
	// moves there when one appears, and fails at its latest start if none
	// does.
	t.Run("site gone", func(t *testing.T) {
		f := newFixture(t, 0)
		off := &regionOffloader{t: t, ok: map[string]bool{"west": true}}
		off.set(off.site("west", "us", 50))
		f.s.cfg.Offload = off
		f.step()
		_, v, _, _ := f.postSpec(us, nil, "x")
		off.set()
		f.step()
		if got := f.get(v.ID); got.Site != "" || got.Reason != carbon.ReasonNoSite || !got.ScheduledAt.Equal(got.Deadline.Add(-time.Hour-time.Second)) {
			t.Fatalf("without west: %+v, want no site until the latest start", got)
		}
		f.restart()
		f.s.cfg.Offload = off
		f.step()
		if got := f.get(v.ID); got.Site != "" || got.Reason != carbon.ReasonNoSite {
			t.Fatalf("after a restart: %+v, want still waiting", got)
		}
		off.set(off.site("west", "us", 50))
		f.step()
		if got := f.get(v.ID); got.Site != "west" {
			t.Fatalf("west is back: %+v, want planned there", got)
		}
		off.set()
		f.step()
		f.clock.Set(v.Deadline.Add(-time.Hour - time.Second))
		f.step()
		got := f.get(v.ID)
		if got.State != StateFailed || f.runs.Load() != 0 || !strings.Contains(got.Error, "no site in regions us could take the job before its latest start") {
			t.Fatalf("at its latest start: %+v, %d local runs", got, f.runs.Load())
		}
		if w := f.do(http.MethodDelete, PathPrefix+v.ID); w.Code != http.StatusConflict {
			t.Fatalf("cancel a failed job: %d", w.Code)
		}
	})
}

// TestRemoteRefusesRegion: a site outside a job's regions refuses it.
func TestRemoteRefusesRegion(t *testing.T) {
	f := newFixture(t, 0)
	_, err := f.s.RunOffloaded(context.Background(), OffloadJob{ID: "j", App: "reports", Method: http.MethodPost, Target: "/reports", Host: "pop.example",
		Deadline: f.clock.Now().Add(time.Hour), Regions: []string{"us"}})
	if !errors.Is(err, ErrRegion) || f.runs.Load() != 0 {
		t.Fatalf("RunOffloaded outside the job's regions: %v, %d runs", err, f.runs.Load())
	}
}
