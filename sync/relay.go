package sync

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/nats-io/nats.go"
)

// ReplyPrefix is where the answers to calls between sites go: a caller
// waits on ReplyPrefix.<unique>. Not nats.go's _INBOX, which also carries
// every answer of an agent's own leaf node and must stay on the site.
const ReplyPrefix = "tern.reply"

// The subjects on which one site reaches another through the hub.
//
// A hub that accepts leaf nodes isolates their interest from each other:
// a leaf learns only the subscriptions of the hub itself, not those of
// every other leaf. Without that each of N leaves holds and follows the
// subscriptions of all the others (N² in all): with 100 agents that was
// most of the hub's memory and of every agent's heap. The price is that
// a leaf forwards a message to the hub only if the hub itself is
// interested, so the hub's relay subscribes to what sites send each
// other.
//
// Purges and the answers to calls (under ReplyPrefix) are delivered by
// the hub itself once a leaf forwards them: the hub knows which leaves
// subscribe. The relay subscribes to them plainly (in a clustered hub each
// node's relay gets a copy).
//
// Calls to a site (prefix.<site> for each of relayCalls) are served by
// the site's agents as one queue group. A leaf forwards a message with
// the names of the queue groups it knows to want it, and the hub delivers
// it to those groups alone; an isolated leaf does not know the site's
// group. So a caller on a leaf sends a call to RelayPrefix.<subject>,
// which the relay serves as a queue group (once per call, whichever hub
// node takes it), and the relay publishes it on <subject> with the
// caller's reply subject, where the hub delivers it to the site's group.
// Callers on the hub itself call <subject> directly.
var relayCalls = []string{JobsSubjectPrefix, AISubjectPrefix}

// RelayPrefix is where a caller on a leaf node sends a call to a site:
// RelayPrefix.<subject>, for the hub's relay to publish on <subject>.
const RelayPrefix = "tern.relay"

// relayQueue is the relay's queue group on RelayPrefix.>.
const relayQueue = "tern-relay"

// relayedHeader marks a "no responders" answer the relay passed on, which
// the relays of other hub nodes, also subscribed to the answers, leave
// alone.
const relayedHeader = "Tern-Relayed"

// Relay is the hub's subscriptions on what sites send each other. Every
// node of a tern hub that accepts leaf nodes runs one; tern controller
// runs one beside a hub that is a NATS cluster of the operator's own.
type Relay struct {
	c *Client
}

// StartRelay connects to a hub as cfg says and relays until Close.
func StartRelay(cfg ConnConfig) (*Relay, error) {
	// No echo: the relay does not receive what it passes on itself.
	cfg.noEcho = true
	if cfg.Name == "" {
		cfg.Name = "tern-relay"
	}
	c, err := Connect(cfg)
	if err != nil {
		return nil, fmt.Errorf("hub relay: %w", err)
	}
	nc := c.nc
	subscribe := func(subject, queue string, fn nats.MsgHandler) error {
		if _, err := nc.QueueSubscribe(subject, queue, fn); err != nil {
			nc.Close()
			return fmt.Errorf("hub relay %s: %w", subject, err)
		}
		return nil
	}
	if err := subscribe(PurgeSubject, "", func(*nats.Msg) {}); err != nil {
		return nil, err
	}
	if err := subscribe(ReplyPrefix+".>", "", func(m *nats.Msg) { passNoResponders(nc, m) }); err != nil {
		return nil, err
	}
	if err := subscribe(RelayPrefix+".>", relayQueue, func(m *nats.Msg) { relayCall(nc, m) }); err != nil {
		return nil, err
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("hub relay: %w", err)
	}
	return &Relay{c: c}, nil
}

// Close ends the relay's subscriptions.
func (r *Relay) Close() { r.c.nc.Close() }

// relayCall publishes a call sent to RelayPrefix.<subject> on <subject>,
// with the caller's reply subject. When no agent of the site listens, the
// server answers the relay "no responders" on that reply subject, which
// passNoResponders passes on to the caller.
func relayCall(nc *nats.Conn, m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	subject := strings.TrimPrefix(m.Subject, RelayPrefix+".")
	for _, prefix := range relayCalls {
		if strings.HasPrefix(subject, prefix+".") {
			nc.PublishMsg(&nats.Msg{Subject: subject, Reply: m.Reply, Header: m.Header, Data: m.Data})
			return
		}
	}
	passNoResponders(nc, &nats.Msg{Subject: m.Reply, Header: nats.Header{"Status": []string{"503"}}})
}

// passNoResponders passes a "no responders" answer that the server gave
// the relay on to the caller whose reply subject it is. The server sends
// it to the publisher alone, which for a relayed call is the relay.
func passNoResponders(nc *nats.Conn, m *nats.Msg) {
	if len(m.Data) != 0 || m.Header.Get("Status") != "503" || m.Header.Get(relayedHeader) != "" {
		return
	}
	nc.PublishMsg(&nats.Msg{Subject: m.Subject, Header: nats.Header{"Status": []string{"503"}, relayedHeader: []string{"1"}}})
}

// validSiteToken reports whether site can be one subject token: not
// empty, no dot or wildcard (which would reach other sites' subjects), no
// space or control character.
func validSiteToken(site string) bool {
	if site == "" || strings.ContainsAny(site, ".*>") {
		return false
	}
	return !strings.ContainsFunc(site, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) })
}
