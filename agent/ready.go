package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tern-edge/tern/internal/disk"
	"github.com/tern-edge/tern/server"
	ternsync "github.com/tern-edge/tern/sync"
)

// listeners records which of the agent's listeners serve, for /readyz.
// A listener is up from the moment its Serve starts until it returns.
type listeners struct {
	public, admin, plain atomic.Bool
}

// serving runs serve with the listener marked up.
func serving(up *atomic.Bool, serve func() error) func() error {
	return func() error {
		up.Store(true)
		defer up.Store(false)
		return serve()
	}
}

// readyCheck is one readiness check: a name and, when it fails, why.
type readyCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// readyReport is the body of /readyz in JSON.
type readyReport struct {
	Ready  bool         `json:"ready"`
	Checks []readyCheck `json:"checks"`
	// Hub is the link to the hub. It does not make the agent unready: an
	// agent cut off from its hub serves what it has installed.
	Hub  hubLink     `json:"hub"`
	Disk *diskReport `json:"disk,omitempty"`
}

// hubLink describes the agent's link to its hub.
type hubLink struct {
	// Link is "up", "down", "embedded" for an agent that runs the hub
	// itself (tern up), or "self" on a hub.
	Link string `json:"link"`
	URL  string `json:"url,omitempty"`
}

// diskReport is the data directory's file system as the reserve sees it.
type diskReport struct {
	Dir          string `json:"dir"`
	FreeBytes    int64  `json:"free_bytes"`
	SizeBytes    int64  `json:"size_bytes"`
	ReserveBytes int64  `json:"reserve_bytes"`
}

// readiness runs every check.
func (a *Agent) readiness() readyReport {
	r := readyReport{Ready: true}
	add := func(name, problem string) {
		c := readyCheck{Name: name, OK: problem == "", Reason: problem}
		r.Ready = r.Ready && c.OK
		r.Checks = append(r.Checks, c)
	}
	storeProblem := ""
	if err := a.store.Check(); err != nil {
		storeProblem = err.Error()
	}
	add("store", storeProblem)
	routesProblem := ""
	if a.router.Table() == nil {
		routesProblem = "routing table not loaded"
	}
	add("routes", routesProblem)
	var down []string
	if !a.serving.public.Load() {
		down = append(down, "public "+a.cfg.Listen)
	}
	if !a.serving.admin.Load() {
		down = append(down, "admin "+a.cfg.Admin)
	}
	if a.plain != nil && !a.serving.plain.Load() {
		down = append(down, "plain "+a.plainAddr())
	}
	listenersProblem := ""
	if len(down) > 0 {
		listenersProblem = "not serving: " + strings.Join(down, ", ")
	}
	add("listeners", listenersProblem)
	add("disk", a.disk.problem())
	r.Hub = a.hubLink()
	if g := a.disk; g != nil {
		r.Disk = &diskReport{Dir: g.dir, FreeBytes: g.free.Load(), SizeBytes: g.size.Load(), ReserveBytes: g.reserve.Load()}
	}
	return r
}

// hubLink reports the state of the link to the hub.
func (a *Agent) hubLink() hubLink {
	switch {
	case a.hub != nil:
		return hubLink{Link: "embedded", URL: a.hub.ClientURL()}
	case a.leaf != nil && a.leaf.LeafConnected():
		return hubLink{Link: "up", URL: a.cfg.Hub.URL}
	default:
		return hubLink{Link: "down", URL: a.cfg.Hub.URL}
	}
}

// hubLinked reports whether the agent reaches its hub now (always, for
// the embedded one).
func (a *Agent) hubLinked() bool { return a.hubLink().Link != "down" }

// serveReady answers /readyz: 200 when the agent can take new work (its
// store is open, its routing table loaded, its listeners serve and its
// disk is above the reserve), else 503 with one line per failed check.
// With ?verbose every check is listed, with the hub link and the disk;
// with Accept: application/json (or ?format=json) the same comes as a
// readyReport. The hub link is reported but never fails readiness.
func (a *Agent) serveReady(w http.ResponseWriter, r *http.Request) {
	writeReady(w, r, a.readiness())
}

// writeReady writes rep as /readyz answers it: text, or JSON when asked.
func writeReady(w http.ResponseWriter, r *http.Request, rep readyReport) {
	code := http.StatusOK
	if !rep.Ready {
		code = http.StatusServiceUnavailable
	}
	q := r.URL.Query()
	if q.Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rep)
		return
	}
	_, verbose := q["verbose"]
	var b strings.Builder
	for _, c := range rep.Checks {
		switch {
		case !c.OK:
			fmt.Fprintf(&b, "[-] %s: %s\n", c.Name, c.Reason)
		case verbose:
			fmt.Fprintf(&b, "[+] %s ok\n", c.Name)
		}
	}
	if verbose {
		fmt.Fprintf(&b, "    hub link %s", rep.Hub.Link)
		if rep.Hub.URL != "" {
			fmt.Fprintf(&b, " (%s)", rep.Hub.URL)
		}
		b.WriteString("\n")
		if d := rep.Disk; d != nil {
			fmt.Fprintf(&b, "    %s: %s free of %s, reserve %s\n", d.Dir,
				disk.Format(d.FreeBytes), disk.Format(d.SizeBytes), disk.Format(d.ReserveBytes))
		}
	}
	if rep.Ready {
		b.WriteString("ok\n")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(b.String()))
}

// linkInterval is how often the agent looks at its hub link to log changes.
const linkInterval = time.Second

// watchLink logs each change of a leaf node's hub link until ctx is done,
// so that the log says when the agent lost its hub and when it got it back.
func (a *Agent) watchLink(ctx context.Context) error {
	if a.leaf == nil {
		return nil
	}
	logger := a.logger.With("component", "sync")
	t := time.NewTicker(linkInterval)
	defer t.Stop()
	up := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if now := a.leaf.LeafConnected(); now != up {
			up = now
			if up {
				a.syncm.linkChanges.WithLabelValues("up").Inc()
				logger.Info("hub link up", "hub", a.cfg.Hub.URL)
			} else {
				a.syncm.linkChanges.WithLabelValues("down").Inc()
				logger.Warn("hub link down: serving installed releases until it returns", "hub", a.cfg.Hub.URL)
			}
		}
	}
}

// serveHubAdmin serves a standalone hub's admin listener on addr until
// the returned stop is called: /metrics, /healthz (the process runs) and
// /readyz (nats-server accepts clients, JetStream is healthy and the
// fleet's buckets exist). nats-server's own monitoring endpoints are on
// their own address (HubOptions.Monitor).
func serveHubAdmin(ctx context.Context, addr string, hub *ternsync.Hub, reg *prometheus.Registry, buckets *atomic.Bool, logger *slog.Logger) (stop func(), err error) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	admin, err := server.NewAdmin(addr, reg, logger.With("component", "admin"))
	if err != nil {
		return nil, err
	}
	admin.Handle("GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := readyReport{Ready: true, Hub: hubLink{Link: "self", URL: hub.ClientURL()}}
		add := func(name string, problem string) {
			c := readyCheck{Name: name, OK: problem == "", Reason: problem}
			rep.Ready = rep.Ready && c.OK
			rep.Checks = append(rep.Checks, c)
		}
		natsProblem := ""
		if err := hub.Ready(); err != nil {
			natsProblem = err.Error()
		}
		add("nats", natsProblem)
		bucketsProblem := ""
		if !buckets.Load() {
			bucketsProblem = "the fleet's buckets are not created yet"
		}
		add("buckets", bucketsProblem)
		writeReady(w, r, rep)
	}))
	if err := admin.Listen(); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := admin.Serve(sctx); err != nil {
			logger.Error("admin listener", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}
