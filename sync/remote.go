package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	gosync "sync"

	"github.com/nats-io/nats.go"
)

// Errors of the cross-site calls (job offload, remote inference) that
// callers branch on.
var (
	// ErrUnreachable means no agent of the site listens on its subject (it
	// is down, cut off, or does not serve that kind of call): nothing ran
	// there, so the caller may run the work elsewhere at once.
	ErrUnreachable = errors.New("site unreachable")
	// ErrRefused means the site answered that it will not run the call
	// (it lacks the app or the model); nothing ran there.
	ErrRefused = errors.New("refused by site")
	// ErrTooLarge means a call or its answer does not fit in one NATS
	// message.
	ErrTooLarge = errors.New("over the message size limit")
)

// serveQueue is the queue group of every per-site subject, so that when a
// site runs several agents each call reaches exactly one of them.
const serveQueue = "tern"

// siteSubject returns prefix.site, refusing a site name that is not one
// subject token (a dot would reach another site's subject, a wildcard
// every site's).
func siteSubject(prefix, site string) (string, error) {
	if !validSiteToken(site) {
		return "", fmt.Errorf("site %q: not usable in subject %s.<site>: %w", site, prefix, ErrInvalidSite)
	}
	return prefix + "." + site, nil
}

// ErrInvalidSite means a site name cannot be part of a NATS subject.
var ErrInvalidSite = errors.New("invalid site name")

// request sends in to subject and decodes the answer into out, within
// ctx's deadline. No listener is ErrUnreachable; a payload over the
// connection's limit is ErrTooLarge.
func (c *Client) request(ctx context.Context, subject string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("request %s: %w", subject, err)
	}
	if limit := c.nc.MaxPayload(); limit > 0 && int64(len(b)) > limit {
		return fmt.Errorf("request %s: %d bytes, limit %d: %w", subject, len(b), limit, ErrTooLarge)
	}
	m, err := c.call(ctx, subject, b)
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("request %s: %w", subject, ErrUnreachable)
	}
	if err != nil {
		return fmt.Errorf("request %s: %w", subject, err)
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return fmt.Errorf("answer on %s: %w", subject, err)
	}
	return nil
}

// serve answers every request on subject with handle, each in its own
// goroutine (calls take seconds to minutes), until ctx is done; it then
// waits for the calls in progress, whose context has ended, so that
// nothing runs on after the agent closes what they use. An answer over
// the message limit is replaced by tooLarge's.
func (c *Client) serve(ctx context.Context, subject string, logger *slog.Logger,
	handle func(ctx context.Context, data []byte) any, tooLarge func(n, limit int64) any) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// mu and stopped keep wg.Add from racing the final wg.Wait.
	var (
		mu      gosync.Mutex
		stopped bool
		wg      gosync.WaitGroup
	)
	sub, err := c.nc.QueueSubscribe(subject, serveQueue, func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := handle(hctx, m.Data)
			if hctx.Err() != nil {
				// Stopping: the caller times out and runs the work
				// elsewhere, rather than trusting a cut-off run.
				return
			}
			b, err := json.Marshal(out)
			if err == nil {
				if limit := c.nc.MaxPayload(); limit > 0 && int64(len(b)) > limit {
					b, err = json.Marshal(tooLarge(int64(len(b)), limit))
				}
			}
			if err != nil {
				logger.Warn("encode answer", "subject", subject, "err", err)
				return
			}
			if err := m.Respond(b); err != nil {
				logger.Warn("answer not sent", "subject", subject, "err", err)
			}
		}()
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	// The subscription must reach the server before the site advertises
	// itself, or early calls find no responder.
	if err := c.nc.Flush(); err != nil {
		logger.Debug("flush after subscribe", "subject", subject, "err", err)
	}
	<-ctx.Done()
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		logger.Debug("unsubscribe", "subject", subject, "err", err)
	}
	mu.Lock()
	stopped = true
	mu.Unlock()
	cancel()
	wg.Wait()
	return nil
}

// replies routes the answers to this connection's calls to other sites:
// one subscription on ReplyPrefix.<id>.*, made on first use, and a
// channel per call waiting on it.
type replies struct {
	mu      gosync.Mutex
	prefix  string // ReplyPrefix.<id>.
	sub     *nats.Subscription
	waiting map[string]chan *nats.Msg
	next    uint64
}

// call sends data to subject and returns the first answer, or
// nats.ErrNoResponders when nobody serves the subject.
func (c *Client) call(ctx context.Context, subject string, data []byte) (*nats.Msg, error) {
	reply, ch, err := c.replies.open(c.nc)
	if err != nil {
		return nil, err
	}
	defer c.replies.forget(reply)
	to := subject
	if c.leaf {
		// The hub's relay delivers it (see relayCalls).
		to = RelayPrefix + "." + subject
	}
	m, err := c.await(ctx, ch, to, reply, data)
	if errors.Is(err, nats.ErrNoResponders) && c.leaf {
		// No relay (a hub that does not isolate its leaves, where the
		// leaf knows the site's subscription), or the site unserved, in
		// which case the leaf answers this at once too.
		if reply, ch, err = c.replies.open(c.nc); err != nil {
			return nil, err
		}
		defer c.replies.forget(reply)
		m, err = c.await(ctx, ch, subject, reply, data)
	}
	return m, err
}

// await publishes data to subject with reply and waits for the answer on ch.
func (c *Client) await(ctx context.Context, ch <-chan *nats.Msg, subject, reply string, data []byte) (*nats.Msg, error) {
	if err := c.nc.PublishRequest(subject, reply, data); err != nil {
		return nil, err
	}
	select {
	case m := <-ch:
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// open returns a new reply subject and the channel its answer arrives on.
func (r *replies) open(nc *nats.Conn) (string, <-chan *nats.Msg, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sub == nil {
		prefix := newReplySubject() + "."
		sub, err := nc.Subscribe(prefix+"*", r.deliver)
		if err != nil {
			return "", nil, fmt.Errorf("subscribe %s*: %w", prefix, err)
		}
		r.prefix, r.sub, r.waiting = prefix, sub, map[string]chan *nats.Msg{}
	}
	r.next++
	reply := r.prefix + strconv.FormatUint(r.next, 36)
	ch := make(chan *nats.Msg, 1)
	r.waiting[reply] = ch
	return reply, ch, nil
}

// deliver hands an answer to its call; later answers to the same call
// (another node of a clustered hub, a duplicate) are dropped.
func (r *replies) deliver(m *nats.Msg) {
	r.mu.Lock()
	ch := r.waiting[m.Subject]
	delete(r.waiting, m.Subject)
	r.mu.Unlock()
	if ch != nil {
		ch <- m
	}
}

// forget drops a call that ended without an answer.
func (r *replies) forget(reply string) {
	r.mu.Lock()
	delete(r.waiting, reply)
	r.mu.Unlock()
}

// newReplySubject returns a unique subject under ReplyPrefix.
func newReplySubject() string {
	return ReplyPrefix + "." + nats.NewInbox()[len(nats.InboxPrefix):]
}
