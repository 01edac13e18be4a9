package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// JobQueueStream is the hub's work-queue stream of accepted deferred jobs,
// one subject per site (JobQueueSubjectPrefix.<site>). A job is published
// there, with its request, before its site answers 202 Accepted, and
// deleted when it ends, so the hub holds every unfinished job of the fleet:
// a job survives the loss of the accepting agent's disk, and another agent
// of the same site adopts it.
const JobQueueStream = "tern-jobs"

// JobQueueSubjectPrefix is the subject prefix of JobQueueStream; it is
// apart from JobsSubjectPrefix, whose requests must not be stored.
const JobQueueSubjectPrefix = "tern.jobq"

// QueuedJob is an accepted job as the hub keeps it: everything its site
// needs to run it, and the agent that holds it now.
type QueuedJob struct {
	ID    string `json:"id"`
	Site  string `json:"site"`
	Owner string `json:"owner"` // the agent that runs it
	App   string `json:"app"`
	Route string `json:"route"`

	Method     string      `json:"method"`
	Target     string      `json:"target"`
	Host       string      `json:"host"`
	RemoteAddr string      `json:"remote_addr,omitempty"`
	TLS        bool        `json:"tls,omitempty"`
	Header     http.Header `json:"header,omitempty"`
	Body       []byte      `json:"body,omitempty"`

	Accepted time.Time     `json:"accepted"`
	Deadline time.Time     `json:"deadline"`
	Runtime  time.Duration `json:"runtime"`
	Regions  []string      `json:"regions,omitempty"`
	RunNow   *float64      `json:"run_now_gco2_per_kwh,omitempty"`
	// Schedule and Occurrence identify a job made by an app's schedule.
	Schedule   string     `json:"schedule,omitempty"`
	Occurrence *time.Time `json:"occurrence,omitempty"`
}

// jobQueue returns the hub's job stream, creating it when absent.
func (c *Client) jobQueue(ctx context.Context) (jetstream.Stream, error) {
	s, err := c.fleetJS.Stream(ctx, JobQueueStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = c.fleetJS.CreateStream(ctx, jetstream.StreamConfig{
			Name:        JobQueueStream,
			Description: "Tern accepted deferred jobs, per site, until they end",
			Subjects:    []string{JobQueueSubjectPrefix + ".>"},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			// Deadlines are at most a week away, plus results kept.
			MaxAge: 8 * 24 * time.Hour,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = c.fleetJS.Stream(ctx, JobQueueStream)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", JobQueueStream, err)
	}
	return s, nil
}

// QueueJob stores job on the hub under its site and returns its sequence
// once the hub has acknowledged it. The job id is the message id, so a
// publish repeated within the stream's duplicate window is stored once.
// It returns an error wrapping ErrTooLarge when the job does not fit in a
// message.
func (c *Client) QueueJob(ctx context.Context, job QueuedJob) (uint64, error) {
	subject, err := siteSubject(JobQueueSubjectPrefix, job.Site)
	if err != nil {
		return 0, fmt.Errorf("queue job %s: %w", job.ID, err)
	}
	b, err := json.Marshal(job)
	if err != nil {
		return 0, fmt.Errorf("queue job %s: %w", job.ID, err)
	}
	if limit := c.nc.MaxPayload(); limit > 0 && int64(len(b)) > limit {
		return 0, fmt.Errorf("queue job %s: %d bytes, limit %d: %w", job.ID, len(b), limit, ErrTooLarge)
	}
	if _, err := c.jobQueue(ctx); err != nil {
		return 0, fmt.Errorf("queue job %s: %w", job.ID, err)
	}
	ack, err := c.fleetJS.Publish(ctx, subject, b, jetstream.WithMsgID(job.ID+"@"+job.Owner))
	if err != nil {
		return 0, fmt.Errorf("queue job %s: %w", job.ID, err)
	}
	return ack.Sequence, nil
}

// DoneJob removes the job stored at seq from the hub; one already gone
// is not an error.
func (c *Client) DoneJob(ctx context.Context, seq uint64) error {
	s, err := c.jobQueue(ctx)
	if err != nil {
		return fmt.Errorf("remove job %d: %w", seq, err)
	}
	err = s.DeleteMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		// The server reports an absent message only in the text of a
		// failed deletion: ask whether it is still there.
		if _, gerr := s.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("remove job %d: %w", seq, err)
	}
	return nil
}

// QueuedJobs calls fn with every job the hub holds for site, in order,
// with its sequence and when it was stored, until fn returns an error,
// which QueuedJobs returns.
func (c *Client) QueuedJobs(ctx context.Context, site string, fn func(seq uint64, stored time.Time, job QueuedJob) error) error {
	subject, err := siteSubject(JobQueueSubjectPrefix, site)
	if err != nil {
		return fmt.Errorf("list queued jobs: %w", err)
	}
	s, err := c.jobQueue(ctx)
	if err != nil {
		return fmt.Errorf("list queued jobs of %s: %w", site, err)
	}
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list queued jobs of %s: %w", site, err)
		}
		seq = m.Sequence + 1
		var job QueuedJob
		if err := json.Unmarshal(m.Data, &job); err != nil {
			c.logger.Warn("unreadable queued job; skipping it", "seq", m.Sequence, "err", err)
			continue
		}
		if err := fn(m.Sequence, m.Time, job); err != nil {
			return err
		}
	}
}
