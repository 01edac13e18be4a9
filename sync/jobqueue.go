package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JobQueueStream is the hub's work-queue stream of accepted deferred jobs,
// one subject per job (JobQueueSubjectPrefix.<site>.<job id>). A job is published
// there, with its request, before its site answers 202 Accepted, and
// removed when it ends (acknowledged through a consumer of its own subject,
// which a work queue's retention turns into removal, so agents need no
// right to delete messages), so the hub holds every unfinished job of the fleet:
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

// jobQueue returns the hub's job stream, creating it when absent (a hub
// whose agents authenticate creates it in EnsureBuckets, since agents may
// not create streams there).
func (c *Client) jobQueue(ctx context.Context) (jetstream.Stream, error) {
	return c.ensureJobQueue(ctx, 1)
}

func (c *Client) ensureJobQueue(ctx context.Context, replicas int) (jetstream.Stream, error) {
	s, err := c.fleetJS.Stream(ctx, JobQueueStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = c.fleetJS.CreateStream(ctx, jetstream.StreamConfig{
			Name:        JobQueueStream,
			Description: "Tern accepted deferred jobs, per site, until they end",
			Subjects:    []string{JobQueueSubjectPrefix + ".>"},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			// Deadlines are at most a week away.
			MaxAge:   8 * 24 * time.Hour,
			Replicas: max(replicas, 1),
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

// jobSubject returns the subject of a job of site.
func jobSubject(site, id string) (string, error) {
	prefix, err := siteSubject(JobQueueSubjectPrefix, site)
	if err != nil {
		return "", err
	}
	if id == "" || strings.ContainsAny(id, ".*> \t\r\n") {
		return "", fmt.Errorf("job id %q: not usable in a subject", id)
	}
	return prefix + "." + id, nil
}

// QueueJob stores job on the hub under its site and returns its sequence
// once the hub has acknowledged it. The job id and owner are the message
// id, so a publish repeated within the stream's duplicate window is
// stored once. It returns an error wrapping ErrTooLarge when the job does
// not fit in a message.
func (c *Client) QueueJob(ctx context.Context, job QueuedJob) (uint64, error) {
	subject, err := jobSubject(job.Site, job.ID)
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

// DoneJob removes job id of site, stored at seq, from the hub: a consumer
// of the job's subject takes its copies and acknowledges the one at seq,
// which removes it from the work queue; others stay. A job already gone is not an
// error.
func (c *Client) DoneJob(ctx context.Context, site, id string, seq uint64) error {
	subject, err := jobSubject(site, id)
	if err != nil {
		return fmt.Errorf("remove job %s: %w", id, err)
	}
	s, err := c.jobQueue(ctx)
	if err != nil {
		return fmt.Errorf("remove job %s: %w", id, err)
	}
	cons, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     subject,
		AckPolicy:         jetstream.AckExplicitPolicy,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return fmt.Errorf("remove job %s: consumer: %w", id, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := s.DeleteConsumer(dctx, cons.CachedInfo().Name); err != nil {
			c.logger.Debug("job consumer not deleted; it expires by itself", "job", id, "err", err)
		}
	}()
	wait := time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, max(time.Until(dl), 100*time.Millisecond))
	}
	// A job has one copy, or two while it passes to another agent.
	batch, err := cons.Fetch(4, jetstream.FetchMaxWait(wait))
	if err != nil {
		return fmt.Errorf("remove job %s: fetch: %w", id, err)
	}
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("remove job %s: %w", id, err)
		}
		if meta.Sequence.Stream != seq {
			continue // another copy: left unacknowledged, so it stays
		}
		if err := m.DoubleAck(ctx); err != nil {
			return fmt.Errorf("remove job %s: ack: %w", id, err)
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return fmt.Errorf("remove job %s: fetch: %w", id, err)
	}
	return nil
}

// QueuedJobs calls fn with every job the hub holds for site, in order,
// with its sequence and when it was stored, until fn returns an error,
// which QueuedJobs returns.
func (c *Client) QueuedJobs(ctx context.Context, site string, fn func(seq uint64, stored time.Time, job QueuedJob) error) error {
	prefix, err := siteSubject(JobQueueSubjectPrefix, site)
	if err != nil {
		return fmt.Errorf("list queued jobs: %w", err)
	}
	subject := prefix + ".>"
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

// QueueSubject returns the subject prefix of site's jobs in
// JobQueueStream (each job is one token below it), or an error wrapping
// ErrInvalidSite when the name cannot be a subject token.
func QueueSubject(site string) (string, error) {
	return siteSubject(JobQueueSubjectPrefix, site)
}
