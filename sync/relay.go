package sync

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/nats-io/nats-server/v2/server"
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
// interested, so the hub's relay subscribes to these subjects.
//
// relayPlain are delivered by the hub itself once a leaf forwards them:
// the hub knows which leaves subscribe. The relay subscribes plainly (in
// a clustered hub each node's relay gets a copy and drops it).
//
// relayCalls are the prefixes of calls to a site (prefix.<site>), which
// the agents of the site serve as one queue group. A leaf forwards a
// message with the names of the queue groups it knows to want it, and
// the hub delivers it to those groups alone; an isolated leaf knows only
// the relay's group, so the relay delivers a call from a leaf (marked
// with relayHeader) to the site's group itself, once, whichever hub node
// takes it. It also answers "no responders" when no agent of the site
// listens, as the server would have without the relay's subscription.
var (
	relayPlain = []string{PurgeSubject, ReplyPrefix + ".>"}
	relayCalls = []string{JobsSubjectPrefix, AISubjectPrefix}
)

// relayQueue is the relay's queue group on relayCalls.
const relayQueue = "tern-relay"

// relayHeader marks a call sent from a leaf node, for the hub's relay to
// deliver to the site's queue group.
const relayHeader = "Tern-Relay"

// relay is the hub's subscriptions on relayPlain and relayCalls; in a
// clustered hub every node has one.
type relay struct {
	nc *nats.Conn
}

// startRelay subscribes the hub to relayPlain and relayCalls through an in-process
// connection; password is the publisher's on an authenticating hub.
func startRelay(ns *server.Server, password string) (*relay, error) {
	opts := []nats.Option{nats.InProcessServer(ns), nats.Name("tern-relay"), nats.MaxReconnects(-1)}
	if password != "" {
		opts = append(opts, nats.UserInfo(PublisherUser, password))
	}
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("hub relay: %w", err)
	}
	acc := ns.GlobalAccount()
	for _, subject := range relayPlain {
		if _, err := nc.Subscribe(subject, func(*nats.Msg) {}); err != nil {
			nc.Close()
			return nil, fmt.Errorf("hub relay %s: %w", subject, err)
		}
	}
	for _, prefix := range relayCalls {
		if _, err := nc.QueueSubscribe(prefix+".>", relayQueue, func(m *nats.Msg) { relayCall(nc, acc, prefix, m) }); err != nil {
			nc.Close()
			return nil, fmt.Errorf("hub relay %s.>: %w", prefix, err)
		}
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("hub relay: %w", err)
	}
	return &relay{nc: nc}, nil
}

// relayCall answers a call to a site that no agent serves with "no
// responders" (status 503, as the server itself sends), so that the
// caller learns at once that nothing ran instead of waiting for its
// timeout, and delivers a call marked with relayHeader to the site's
// queue group. The relay's own subscriptions, on this node and on the
// other nodes of a cluster, are counted through a subject that only they
// match: siteSubject refuses control characters in site names.
func relayCall(nc *nats.Conn, acc *server.Account, prefix string, m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	if acc.Interest(m.Subject) <= acc.Interest(prefix+".\x00") {
		m.RespondMsg(&nats.Msg{Header: nats.Header{"Status": []string{"503"}}})
		return
	}
	if m.Header.Get(relayHeader) == "" {
		return // delivered by the server: a call from the hub itself, or relayed already
	}
	fwd := &nats.Msg{Subject: m.Subject, Reply: m.Reply, Data: m.Data, Header: nats.Header{}}
	for k, v := range m.Header {
		if k != relayHeader {
			fwd.Header[k] = v
		}
	}
	nc.PublishMsg(fwd)
}

// close ends the relay's subscriptions.
func (r *relay) close() { r.nc.Close() }

// validSiteToken reports whether site can be one subject token: not
// empty, no dot or wildcard (which would reach other sites' subjects), no
// space or control character.
func validSiteToken(site string) bool {
	if site == "" || strings.ContainsAny(site, ".*>") {
		return false
	}
	return !strings.ContainsFunc(site, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) })
}
