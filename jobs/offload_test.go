package jobs

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// fakeOffloader offers one clean site and answers as told.
type fakeOffloader struct {
	t      *testing.T
	apps   []string
	answer func(ctx context.Context, job OffloadJob) (OffloadResult, error)
	sent   []OffloadJob
}

func (o *fakeOffloader) Sites() ([]carbon.RemoteSite, uint64) {
	c, err := carbon.CurveFromValues(t0, time.Hour, make24(50), carbon.Forecast, carbon.Average, "clean")
	if err != nil {
		o.t.Fatal(err)
	}
	return []carbon.RemoteSite{{Site: carbon.Site{Name: "clean", Region: "test"}, Forecast: c, Source: "clean:test", Apps: o.apps}}, 1
}

func (o *fakeOffloader) Offload(ctx context.Context, site string, job OffloadJob) (OffloadResult, error) {
	o.sent = append(o.sent, job)
	return o.answer(ctx, job)
}

func make24(v float64) []float64 {
	out := make([]float64, 24)
	for i := range out {
		out[i] = v
	}
	return out
}

// TestOffloadOutcomes plans jobs at a cleaner remote site and checks each
// outcome of sending them there: a result stored with the job, a refusal
// or a site that never answers (the job runs here, on time, saying why),
// and an app the site does not run (planned here from the start).
func TestOffloadOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		apps      []string
		answer    func(ctx context.Context, job OffloadJob) (OffloadResult, error)
		site      string // planned at
		localRuns int32
		offErr    string
	}{
		{name: "ran there", apps: []string{"reports"}, site: "clean",
			answer: func(_ context.Context, job OffloadJob) (OffloadResult, error) {
				g := 1.5
				return OffloadResult{Status: http.StatusAccepted, Header: http.Header{"X-Site": {"clean"}}, Body: []byte("remote " + string(job.Body)), Grams: &g}, nil
			}},
		{name: "refused", apps: []string{"reports"}, site: "clean", localRuns: 1, offErr: "app reports not installed",
			answer: func(context.Context, OffloadJob) (OffloadResult, error) {
				return OffloadResult{}, errors.New("offload job: app reports not installed")
			}},
		{name: "no answer", apps: []string{"reports"}, site: "clean", localRuns: 1, offErr: "site clean did not answer within 100ms",
			answer: func(ctx context.Context, _ OffloadJob) (OffloadResult, error) {
				<-ctx.Done()
				return OffloadResult{}, ctx.Err()
			}},
		{name: "app not there", apps: []string{"other"}, site: "pop1", localRuns: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0)
			off := &fakeOffloader{t: t, apps: tc.apps, answer: tc.answer}
			f.s.cfg.Offload, f.s.cfg.OffloadTimeout = off, 100*time.Millisecond
			f.step() // forecast read, remote site taken
			code, v, _ := f.post(nil, "payload")
			if code != http.StatusAccepted || v.Site != tc.site {
				t.Fatalf("POST: %d, planned at %q, want %s", code, v.Site, tc.site)
			}
			if tc.site == "clean" && (v.ExpectedGross == nil || *v.ExpectedGross != 50 || v.ExpectedAvoided == nil) {
				t.Fatalf("plan %+v: want expected gross 50 g and avoided apart", v)
			}
			f.clock.Set(*v.ScheduledAt)
			f.step()
			got := f.get(v.ID)
			if got.State != StateDone || got.Result == nil || f.runs.Load() != tc.localRuns || got.Late {
				t.Fatalf("after its start: %+v, local runs %d, want done with %d local runs", got, f.runs.Load(), tc.localRuns)
			}
			switch {
			case tc.localRuns == 0:
				w := f.do(http.MethodGet, PathPrefix+v.ID+"/result")
				if got.Result.Site != "clean" || *got.Result.Grams != 1.5 || w.Code != http.StatusAccepted || w.Body.String() != "remote payload" || w.Header().Get("X-Site") != "clean" {
					t.Fatalf("remote result: %+v, %d %q", got.Result, w.Code, w.Body)
				}
				if j := off.sent[0]; j.App != "reports" || j.Method != http.MethodPost || j.Host != "pop.example" || string(j.Body) != "payload" || !j.Deadline.Equal(v.Deadline) {
					t.Fatalf("sent %+v", j)
				}
				if o := f.s.Status().Offloaded; len(o) != 1 || o[0].App != "reports" || o[0].Site != "clean" || o[0].Runs != 1 || o[0].Accounted != 0 {
					t.Fatalf("status of offloaded runs: %+v (the site reported grams without run-now grams: not accounted)", o)
				}
			case tc.offErr != "":
				if got.Site != "pop1" || !strings.Contains(got.OffloadError, tc.offErr) || got.Result.Site != "" {
					t.Fatalf("fallback: site %q, offload error %q, want pop1 and %q", got.Site, got.OffloadError, tc.offErr)
				}
			default:
				if len(off.sent) != 0 {
					t.Fatalf("a job the site cannot run was sent to it")
				}
			}
		})
	}
}
