package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// PurgeSubject is where cache purges fan out to every agent. Publishing on
// it is a privilege: hub credentials should grant it to operators only.
const PurgeSubject = "tern.purge"

// Purge asks every agent to drop cached responses.
type Purge struct {
	ID       string   `json:"id"`
	URLs     []string `json:"urls,omitempty"`
	Prefixes []string `json:"prefixes,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	// Soft marks entries stale (revalidated on next use) instead of
	// deleting them.
	Soft bool `json:"soft,omitempty"`
}

// PurgeAck is one agent's answer to a Purge.
type PurgeAck struct {
	ID     string `json:"id"`
	Agent  string `json:"agent"`
	Site   string `json:"site"`
	Purged int    `json:"purged"`
	Error  string `json:"error,omitempty"`
}

// Purger applies a purge locally and says how many entries it dropped.
type Purger interface {
	Purge(ctx context.Context, p Purge) (int, error)
}

// PublishPurge sends p to every agent and collects acknowledgements until
// want agents answered or wait passed, whichever is first; want <= 0 waits
// the whole time.
func (c *Client) PublishPurge(ctx context.Context, p Purge, want int, wait time.Duration) ([]PurgeAck, error) {
	if p.ID == "" {
		p.ID = nats.NewInbox()[len(nats.InboxPrefix):]
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("purge %s: %w", p.ID, err)
	}
	// Under ReplyPrefix, where acknowledgements reach an agent that
	// purges through its leaf node as well as a publisher on the hub.
	inbox := newReplySubject()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("purge %s: %w", p.ID, err)
	}
	defer sub.Unsubscribe()
	if err := c.nc.PublishRequest(PurgeSubject, inbox, b); err != nil {
		return nil, fmt.Errorf("purge %s: %w", p.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var acks []PurgeAck
	for want <= 0 || len(acks) < want {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				break
			}
			return acks, fmt.Errorf("purge %s: %w", p.ID, err)
		}
		var ack PurgeAck
		if err := json.Unmarshal(m.Data, &ack); err != nil || ack.ID != p.ID {
			continue
		}
		acks = append(acks, ack)
	}
	return acks, nil
}

// ServePurges applies every purge published on the hub with purger and
// acknowledges it, until ctx is done.
func (c *Client) ServePurges(ctx context.Context, agent, site string, purger Purger, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sub, err := c.nc.Subscribe(PurgeSubject, func(m *nats.Msg) {
		var p Purge
		ack := PurgeAck{Agent: agent, Site: site}
		if err := json.Unmarshal(m.Data, &p); err != nil {
			ack.Error = "malformed purge: " + err.Error()
		} else {
			ack.ID = p.ID
			n, err := purger.Purge(ctx, p)
			ack.Purged = n
			if err != nil {
				ack.Error = err.Error()
				logger.Warn("purge failed", "id", p.ID, "err", err)
			}
		}
		if m.Reply == "" {
			return
		}
		b, _ := json.Marshal(ack)
		if err := m.Respond(b); err != nil {
			logger.Warn("purge not acknowledged", "id", ack.ID, "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", PurgeSubject, err)
	}
	<-ctx.Done()
	sub.Unsubscribe()
	return nil
}
