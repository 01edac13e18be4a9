package sync

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// JobsSubjectPrefix is where deferred jobs are sent to a site: the subject
// tern.jobs.<site>, served by every agent of that site (one of them takes
// each job). Request/reply on core NATS: the origin holds the durable copy
// of the job and falls back to running it itself, so nothing needs to be
// stored on the way.
const JobsSubjectPrefix = "tern.jobs"

// OffloadJob is a deferred job sent to another site: the stored request
// and what the origin knows about it. The remote site runs it only through
// the release it installed itself, and only when that release has Digest:
// the signed artifact, never code that travels with the job.
type OffloadJob struct {
	ID     string `json:"id"`
	Origin string `json:"origin"` // the site that accepted the job
	App    string `json:"app"`
	// Digest is the module the origin would run; the remote refuses the
	// job unless it serves the same one.
	Digest string `json:"digest"`
	Route  string `json:"route"`

	Method     string      `json:"method"`
	Target     string      `json:"target"`
	Host       string      `json:"host"`
	RemoteAddr string      `json:"remote_addr,omitempty"`
	TLS        bool        `json:"tls,omitempty"`
	Header     http.Header `json:"header,omitempty"`
	Body       []byte      `json:"body,omitempty"`

	// Deadline is when the run must end at the latest.
	Deadline time.Time `json:"deadline"`
	// RunNow is the origin's expected intensity for running the job on
	// acceptance, the counterfactual the remote site accounts against;
	// nil when unknown.
	RunNow *float64 `json:"run_now_gco2_per_kwh,omitempty"`
	// Regions are the grid regions the job's data may be processed in
	// (empty: any); a site outside them refuses the job.
	Regions []string `json:"regions,omitempty"`
}

// OffloadResult is a remote site's answer: the app's response, or why it
// did not run the job.
type OffloadResult struct {
	Site string `json:"site"`
	// Refused says the site did not run the job (it lacks the app or its
	// release); Error says why.
	Refused bool   `json:"refused,omitempty"`
	Error   string `json:"error,omitempty"`

	Status int         `json:"status,omitempty"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
	// Grams and RunNowGrams are what the remote site accounted for the
	// run and its run-now counterfactual, when it knew an intensity.
	Grams       *float64 `json:"grams,omitempty"`
	RunNowGrams *float64 `json:"run_now_grams,omitempty"`
	// Intensity is the grid intensity the run was accounted at.
	Intensity *float64 `json:"gco2_per_kwh,omitempty"`
}

// JobRunner runs offloaded jobs at this site. RunOffloaded returns once
// the job ran or was refused; it must return when ctx is done. It is
// called concurrently.
type JobRunner interface {
	RunOffloaded(ctx context.Context, job OffloadJob) OffloadResult
}

// OffloadJob sends job to site and waits for its result until ctx is
// done. It returns an error wrapping ErrUnreachable when no agent of the
// site listens, ErrRefused when the site would not run it, ErrTooLarge
// when the job does not fit in a message; on a timeout the job may have
// run there (delivery is at least once).
func (c *Client) OffloadJob(ctx context.Context, site string, job OffloadJob) (OffloadResult, error) {
	subject, err := siteSubject(JobsSubjectPrefix, site)
	if err != nil {
		return OffloadResult{}, fmt.Errorf("offload job %s: %w", job.ID, err)
	}
	var res OffloadResult
	if err := c.request(ctx, subject, job, &res); err != nil {
		return OffloadResult{}, fmt.Errorf("offload job %s: %w", job.ID, err)
	}
	switch {
	case res.Refused:
		return res, fmt.Errorf("offload job %s to %s: %s: %w", job.ID, site, res.Error, ErrRefused)
	case res.Status == 0:
		return res, fmt.Errorf("offload job %s to %s: no response: %s", job.ID, site, res.Error)
	}
	return res, nil
}

// ServeJobs runs the jobs other sites send to site with runner, until ctx
// is done. A job still running when ctx ends gets no answer: its origin
// times out and runs it itself.
func (c *Client) ServeJobs(ctx context.Context, site string, runner JobRunner, logger *slog.Logger) error {
	subject, err := siteSubject(JobsSubjectPrefix, site)
	if err != nil {
		return fmt.Errorf("serve jobs: %w", err)
	}
	return c.serve(ctx, subject, logger, func(ctx context.Context, data []byte) any {
		var job OffloadJob
		if err := json.Unmarshal(data, &job); err != nil {
			return OffloadResult{Site: site, Refused: true, Error: "malformed job: " + err.Error()}
		}
		res := runner.RunOffloaded(ctx, job)
		res.Site = site
		return res
	}, func(n, limit int64) any {
		return OffloadResult{Site: site, Error: fmt.Sprintf("result of %d bytes over the message limit %d", n, limit)}
	})
}
