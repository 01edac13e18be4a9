package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	gosync "sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tern-edge/tern/internal/disk"
)

// DiskSubject is where a hub answers how much room its JetStream store
// has (a DiskStatus), so that a publisher can refuse an upload that would
// not fit, and say why one failed, instead of waiting for an ack that a
// full disk never sends.
const DiskSubject = "tern.hub.disk"

// DiskStatus is the room of a hub's JetStream store.
type DiskStatus struct {
	// Dir is the store's directory on the hub's machine.
	Dir string `json:"dir"`
	// Free is the free space of its file system, Reserve what the hub
	// keeps free: an upload must fit in Free - Reserve.
	Free    int64 `json:"free"`
	Reserve int64 `json:"reserve"`
	// WriteError, when set, is a stream's write error that JetStream is
	// stuck on until the hub brings it back (healing).
	WriteError string `json:"write_error,omitempty"`
}

// ErrDiskFull reports that the hub's store has no room for an upload.
var ErrDiskFull = errors.New("hub disk full")

// Fits returns nil when n more bytes fit above the reserve, and otherwise
// an ErrDiskFull error naming the directory, the free space and the need.
func (d DiskStatus) Fits(n int64) error {
	if d.Free-n >= d.Reserve && d.WriteError == "" {
		return nil
	}
	if d.Free-n >= d.Reserve {
		return fmt.Errorf("%w: the store in %s on the hub failed a write and has not recovered yet (%s free): %s",
			ErrDiskFull, d.Dir, disk.Format(d.Free), d.WriteError)
	}
	return fmt.Errorf("%w: %s on the hub has %s free; %s needed above the reserve of %s",
		ErrDiskFull, d.Dir, disk.Format(d.Free), disk.Format(n), disk.Format(d.Reserve))
}

// HubDisk asks the hub how much room its store has. It reports false, and
// no error, when nothing answers (a hub of the operator's own, or an older
// one): the caller then uploads without the check.
func (c *Client) HubDisk(ctx context.Context) (DiskStatus, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, DiskSubject, nil)
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, context.DeadlineExceeded):
		return DiskStatus{}, false, nil
	case err != nil:
		return DiskStatus{}, false, fmt.Errorf("ask the hub for its disk: %w", err)
	}
	var d DiskStatus
	if err := json.Unmarshal(m.Data, &d); err != nil {
		return DiskStatus{}, false, fmt.Errorf("hub disk status: %w", err)
	}
	return d, true, nil
}

// healInterval is how often a hub looks for streams stuck on a write error.
const healInterval = 2 * time.Second

// guard watches a standalone server's JetStream: it answers DiskSubject
// (on a hub, not on a leaf node, whose answers would reach the hub) and
// brings JetStream back after a write error once the disk has room again.
//
// nats-server, on a failed write (a full disk), records the error on the
// stream and on its file store for good (stream.setWriteErr,
// fileStore.setWriteErr): the stream takes no message, and answers none,
// until it is opened anew; a clustered server would step down and
// restart JetStream for it, a standalone one never does. Its health
// check reports such a stream ("write error"), and restarting JetStream
// (ShutdownJetStream, then EnableJetStream with the same config) opens
// every stream afresh from its files, which a failed write leaves intact.
// The guard does that once the free space is back above the reserve,
// and only then: restarting while the disk is still full would fail again.
type guard struct {
	ns      *server.Server
	dir     string
	reserve int64 // 0: disk.DefaultReserve of the file system
	logger  *slog.Logger

	mu        gosync.Mutex
	waiting   bool // a stuck stream waits for space (logged once)
	heals     bool // restart JetStream after write errors (not on a clustered node)
	stop      chan struct{}
	done      chan struct{}
	closeOnce gosync.Once
	nc        *nats.Conn
}

// startGuard starts g's loop, and its DiskSubject service when nc is not nil.
func (g *guard) start(nc *nats.Conn) error {
	g.stop, g.done = make(chan struct{}), make(chan struct{})
	if nc != nil {
		g.nc = nc
		if _, err := nc.Subscribe(DiskSubject, func(m *nats.Msg) {
			b, _ := json.Marshal(g.status())
			_ = m.Respond(b)
		}); err != nil {
			nc.Close()
			return fmt.Errorf("hub disk service: %w", err)
		}
		if err := nc.Flush(); err != nil {
			nc.Close()
			return fmt.Errorf("hub disk service: %w", err)
		}
	}
	go g.loop()
	return nil
}

// close stops g; calling it again does nothing.
func (g *guard) close() {
	g.closeOnce.Do(func() {
		close(g.stop)
		<-g.done
		if g.nc != nil {
			g.nc.Close()
		}
	})
}

func (g *guard) loop() {
	defer close(g.done)
	t := time.NewTicker(healInterval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			if g.heals {
				g.heal()
			}
		}
	}
}

// usage measures the store's file system and the reserve that applies.
func (g *guard) usage() (disk.Usage, int64, error) {
	u, err := disk.Of(g.dir)
	if err != nil {
		return u, 0, err
	}
	reserve := g.reserve
	if reserve == 0 {
		reserve = disk.DefaultReserve(u.Size)
	}
	return u, reserve, nil
}

// status is what DiskSubject answers.
func (g *guard) status() DiskStatus {
	d := DiskStatus{Dir: g.dir, WriteError: g.writeError()}
	if u, reserve, err := g.usage(); err == nil {
		d.Free, d.Reserve = u.Free, reserve
	}
	return d
}

// writeError returns the first stream write error the server's health
// check reports, or "".
func (g *guard) writeError() string {
	if !g.ns.JetStreamEnabled() {
		return ""
	}
	hs := g.ns.Healthz(&server.HealthzOptions{Details: true})
	for _, e := range hs.Errors {
		if strings.Contains(e.Error, "write error") {
			return e.Error
		}
	}
	return ""
}

// heal restarts JetStream when a stream is stuck on a write error and the
// disk has room again.
func (g *guard) heal() {
	werr := g.writeError()
	g.mu.Lock()
	defer g.mu.Unlock()
	if werr == "" {
		g.waiting = false
		return
	}
	u, reserve, err := g.usage()
	if err == nil && u.Free < reserve {
		if !g.waiting {
			g.logger.Warn("JetStream store stuck on a write error; it recovers once space is back", "dir", g.dir,
				"free", disk.Format(u.Free), "reserve", disk.Format(reserve), "err", werr)
			g.waiting = true
		}
		return
	}
	cfg := g.ns.JetStreamConfig()
	if cfg == nil {
		return
	}
	// The same limits and domain; the directory as first given, since
	// EnableJetStream appends "jetstream" to it again.
	cfg.StoreDir = g.dir
	if err := g.ns.ShutdownJetStream(); err != nil {
		g.logger.Error("JetStream restart after a write error: shutdown", "err", err)
		return
	}
	if err := g.ns.EnableJetStream(cfg); err != nil {
		g.logger.Error("JetStream restart after a write error: enable", "err", err)
		return
	}
	g.waiting = false
	g.logger.Warn("JetStream restarted after a write error: space is back", "dir", g.dir,
		"free", disk.Format(u.Free), "err", werr)
}
