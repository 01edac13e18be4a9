package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	gosync "sync"
	"time"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"
)

// FleetBucket is the KV bucket holding each agent's latest heartbeat, keyed
// by agent ID.
const FleetBucket = "tern-fleet"

// FleetTTL is how long the hub keeps a heartbeat that is not renewed:
// long enough to show an agent as stale for a while before it disappears.
const FleetTTL = 24 * time.Hour

// Heartbeat is what an agent reports about itself.
type Heartbeat struct {
	Agent    string            `json:"agent"`
	Site     string            `json:"site"`
	Labels   map[string]string `json:"labels,omitempty"`
	Version  string            `json:"version"`
	Time     time.Time         `json:"time"`
	Interval time.Duration     `json:"interval"`
	Started  time.Time         `json:"started"`
	Apps     []AppState        `json:"apps"`
	// Refusals are the most recent refused releases, newest first.
	Refusals []Refusal `json:"refusals,omitempty"`
	// Load is the agent's recent request rate and error rate.
	Load Load `json:"load"`
	// GPU is the site's inference offer (the gpu package's SiteOffer:
	// models, free slots, queue wait, energy per call, heat reuse), or
	// absent when the agent runs no inference. Raw JSON, so that this
	// package stays free of the gpu package and its NVML dependency.
	GPU json.RawMessage `json:"gpu,omitempty"`
	// Carbon is the site's grid and job offer for deferred work from
	// other sites, or absent when the agent takes none.
	Carbon *CarbonOffer `json:"carbon,omitempty"`
	// Stopped is set on the last heartbeat of an agent that shut down, so
	// that the fleet (and a deploy waiting on it) knows at once that it
	// serves nothing, rather than three intervals later.
	Stopped bool `json:"stopped,omitempty"`
}

// CarbonOffer is what a site advertises so that other sites can plan
// deferred jobs on it: its grid's intensity now and a summary of the
// forecast, its free job capacity, PUE and heat reuse. Intensities are in
// gCO2/kWh, of the kind its provider gives (average unless Marginal).
type CarbonOffer struct {
	Region string `json:"region"`
	// Now is the current intensity; NowSource labels where it came from.
	Now       *float64 `json:"now,omitempty"`
	NowSource string   `json:"now_source,omitempty"`
	// Forecast is the forecast ahead, resampled to Step (at most
	// MaxOfferPoints values, starting at ForecastStart); a NaN-free
	// summary, gaps cut it short.
	ForecastStart  time.Time     `json:"forecast_start,omitzero"`
	Step           time.Duration `json:"step,omitempty"`
	Forecast       []float64     `json:"forecast,omitempty"`
	ForecastSource string        `json:"forecast_source,omitempty"`
	Marginal       bool          `json:"marginal,omitempty"`
	// Capacity is how many deferred jobs the site runs at once (0:
	// unlimited) and Free how many more it could start now.
	Capacity int `json:"capacity"`
	Free     int `json:"free"`
	// PUE is the site's power usage effectiveness (0 means 1).
	PUE float64 `json:"pue,omitempty"`
	// Heat is the site's heat reuse, absent when it has none.
	Heat *HeatOffer `json:"heat,omitempty"`
}

// MaxOfferPoints caps a CarbonOffer's forecast: two days of hours keep a
// heartbeat well under a kilobyte per site.
const MaxOfferPoints = 48

// HeatOffer is a site's heat reuse as a planner ranks it: the captured
// fraction and current demand (0..1) and the emission factor of the heat
// it displaces (or a heat pump's COP, making it grid / COP).
type HeatOffer struct {
	Captured            float64 `json:"captured"`
	Demand              float64 `json:"demand"`
	DisplacedGCO2PerKWh float64 `json:"displaced_gco2_per_kwh,omitempty"`
	HeatPumpCOP         float64 `json:"heat_pump_cop,omitempty"`
	SinkKW              float64 `json:"sink_kw,omitempty"`
}

// AppState is one installed app as an agent reports it.
type AppState struct {
	App      string `json:"app"`
	Version  string `json:"version"`
	Sequence uint64 `json:"sequence"`
	Digest   string `json:"digest"`
	// Expired is set when the installed release is past its expiry: the
	// hub has not sent a fresher one (a freeze, or a publisher that forgot
	// to re-sign), and the agent serves or refuses it per its policy.
	Expired bool `json:"expired,omitempty"`
	// Requests and Errors count this app's requests and 5xx answers since
	// the agent started.
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"`
}

// Refusal is a release an agent refused.
type Refusal struct {
	App      string    `json:"app"`
	Sequence uint64    `json:"sequence"`
	Reason   string    `json:"reason"`
	Error    string    `json:"error"`
	Time     time.Time `json:"time"`
}

// Load summarises an agent's traffic.
type Load struct {
	InFlight int64   `json:"in_flight"`
	RPS      float64 `json:"rps"`
}

// Bounds of a heartbeat the hub accepts: an agent's heartbeat is input
// from a machine that may be compromised, and every agent and `tern
// status` reads it.
const (
	maxHeartbeatBytes = 1 << 20
	maxHeartbeatList  = 4096 // apps, refusals, labels
	maxHeartbeatText  = 1024 // any one name
)

// DecodeHeartbeat decodes the heartbeat stored under key and checks it:
// it names the agent of its key, its lists and names are bounded and
// hold no control characters (they end up on terminals), its interval is
// not negative, and a carbon offer's forecast has a step and at most
// MaxOfferPoints values. The error names the first problem.
func DecodeHeartbeat(key string, b []byte) (Heartbeat, error) {
	if len(b) > maxHeartbeatBytes {
		return Heartbeat{}, fmt.Errorf("heartbeat of %s: %d bytes, over the %d-byte limit", key, len(b), maxHeartbeatBytes)
	}
	var hb Heartbeat
	if err := json.Unmarshal(b, &hb); err != nil {
		return Heartbeat{}, fmt.Errorf("heartbeat of %s: %w", key, err)
	}
	if err := hb.check(key); err != nil {
		return Heartbeat{}, fmt.Errorf("heartbeat of %s: %w", key, err)
	}
	return hb, nil
}

func (h Heartbeat) check(key string) error {
	if h.Agent != key {
		return fmt.Errorf("names agent %q", h.Agent)
	}
	if len(h.Apps) > maxHeartbeatList || len(h.Refusals) > maxHeartbeatList || len(h.Labels) > maxHeartbeatList {
		return fmt.Errorf("%d apps, %d refusals, %d labels: over %d", len(h.Apps), len(h.Refusals), len(h.Labels), maxHeartbeatList)
	}
	if h.Interval < 0 {
		return fmt.Errorf("interval %s is negative", h.Interval)
	}
	texts := []string{h.Agent, h.Site, h.Version}
	for k, v := range h.Labels {
		texts = append(texts, k, v)
	}
	for _, a := range h.Apps {
		texts = append(texts, a.App, a.Version, a.Digest)
	}
	for _, r := range h.Refusals {
		texts = append(texts, r.App, r.Reason) // r.Error is free text
	}
	if o := h.Carbon; o != nil {
		texts = append(texts, o.Region, o.NowSource, o.ForecastSource)
		if len(o.Forecast) > MaxOfferPoints {
			return fmt.Errorf("carbon forecast of %d values, over %d", len(o.Forecast), MaxOfferPoints)
		}
		if len(o.Forecast) > 0 && o.Step <= 0 {
			return fmt.Errorf("carbon forecast with step %s", o.Step)
		}
	}
	for _, t := range texts {
		if len(t) > maxHeartbeatText {
			return fmt.Errorf("a %d-byte name, over %d", len(t), maxHeartbeatText)
		}
		if strings.ContainsFunc(t, unicode.IsControl) {
			return fmt.Errorf("control character in %q", t)
		}
	}
	return nil
}

// Stale reports whether the heartbeat is older than three intervals at now.
func (h Heartbeat) Stale(now time.Time) bool {
	iv := h.Interval
	if iv <= 0 {
		iv = DefaultHeartbeatInterval
	}
	return now.Sub(h.Time) > 3*iv
}

// Live reports whether the agent is running as far as its heartbeat
// tells at now: fresh, and not its last before a shutdown.
func (h Heartbeat) Live(now time.Time) bool { return !h.Stopped && !h.Stale(now) }

// DefaultHeartbeatInterval is how often agents report when not told.
const DefaultHeartbeatInterval = 10 * time.Second

// HeartbeatsStored returns how many heartbeats the fleet bucket has taken
// since it was created: its stream's last sequence, one per put.
func (c *Client) HeartbeatsStored(ctx context.Context) (uint64, error) {
	kv, err := c.fleet(ctx, false)
	if err != nil {
		return 0, err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("bucket %s: %w", FleetBucket, err)
	}
	js, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return 0, fmt.Errorf("bucket %s: no stream status", FleetBucket)
	}
	return js.StreamInfo().State.LastSeq, nil
}

func (c *Client) fleet(ctx context.Context, create bool) (jetstream.KeyValue, error) {
	if create {
		return c.createFleet(ctx, 1)
	}
	kv, err := c.fleetJS.KeyValue(ctx, FleetBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", FleetBucket, err)
	}
	return kv, nil
}

func (c *Client) createFleet(ctx context.Context, replicas int) (jetstream.KeyValue, error) {
	kv, err := c.fleetJS.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      FleetBucket,
		Description: "Tern agents' latest heartbeats",
		History:     1,
		TTL:         FleetTTL,
		Replicas:    max(replicas, 1),
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = c.fleetJS.KeyValue(ctx, FleetBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", FleetBucket, err)
	}
	return kv, nil
}

// PublishHeartbeat stores hb as its agent's latest state.
func (c *Client) PublishHeartbeat(ctx context.Context, hb Heartbeat) error {
	b, err := json.Marshal(hb)
	if err != nil {
		return fmt.Errorf("heartbeat %s: %w", hb.Agent, err)
	}
	c.hbMu.Lock()
	defer c.hbMu.Unlock()
	for retried := false; ; retried = true {
		if c.hbKV == nil {
			kv, err := c.fleet(ctx, false)
			if errors.Is(err, jetstream.ErrBucketNotFound) {
				kv, err = c.fleet(ctx, true)
			}
			if err != nil {
				return err
			}
			c.hbKV = kv
		}
		_, err := c.hbKV.Put(ctx, hb.Agent, b)
		if err == nil {
			return nil
		}
		// Look the bucket up again: it may have been removed, or the
		// hub may have lost it. No stream answering means it is gone,
		// so create it and try once more at once.
		c.hbKV = nil
		if retried || !errors.Is(err, jetstream.ErrNoStreamResponse) {
			return fmt.Errorf("heartbeat %s: %w", hb.Agent, err)
		}
	}
}

// WatchFleet calls fn with every agent's latest heartbeat and then with
// each new one as it arrives, and caughtUp once the latest of every agent
// has been passed, until ctx is done or the watch fails. A bucket that
// does not exist yet (no agent ever reported) is an error wrapping
// jetstream.ErrBucketNotFound and ErrNotFound.
//
// One long-lived watch costs the hub one consumer, where reading the
// fleet with Fleet every interval costs a new consumer and new
// subscriptions each time, and the hub announces every subscription to
// every leaf node.
func (c *Client) WatchFleet(ctx context.Context, fn func(Heartbeat), caughtUp func()) error {
	kv, err := c.fleet(ctx, false)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("watch %s: %w", FleetBucket, err)
	}
	return follow(ctx, w, FleetBucket, func(e jetstream.KeyValueEntry) {
		hb, err := DecodeHeartbeat(e.Key(), e.Value())
		if err != nil {
			c.logger.Warn("unreadable heartbeat", "agent", e.Key(), "err", err)
			return
		}
		fn(hb)
	}, caughtUp)
}

// Fleet returns every agent's latest heartbeat, ordered by site and agent.
func (c *Client) Fleet(ctx context.Context) ([]Heartbeat, error) {
	kv, err := c.fleet(ctx, false)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", FleetBucket, err)
	}
	defer w.Stop()
	var out []Heartbeat
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list %s: %w", FleetBucket, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("list %s: watch closed", FleetBucket)
			}
			if e == nil {
				sort.Slice(out, func(i, j int) bool {
					if out[i].Site != out[j].Site {
						return out[i].Site < out[j].Site
					}
					return out[i].Agent < out[j].Agent
				})
				return out, nil
			}
			hb, err := DecodeHeartbeat(e.Key(), e.Value())
			if err != nil {
				c.logger.Warn("unreadable heartbeat", "agent", e.Key(), "err", err)
				continue
			}
			out = append(out, hb)
		}
	}
}

// Heartbeater publishes an agent's heartbeat on an interval, and at once
// when nudged.
type Heartbeater struct {
	Client   *Client
	Interval time.Duration
	// State returns the heartbeat to publish; Heartbeater sets its Time
	// and Interval.
	State  func() Heartbeat
	Logger *slog.Logger

	nudge chan struct{}
	once  gosync.Once
}

// Nudge publishes a heartbeat now rather than at the next tick, so that
// the fleet (and a rollout waiting on this agent) learns of an install
// without waiting an interval. It never blocks.
func (h *Heartbeater) Nudge() {
	h.init()
	select {
	case h.nudge <- struct{}{}:
	default:
	}
}

func (h *Heartbeater) init() { h.once.Do(func() { h.nudge = make(chan struct{}, 1) }) }

// Run publishes a heartbeat now and then every Interval until ctx is
// done. A failed publish (hub unreachable) is logged once per outage and
// retried at the next tick.
func (h *Heartbeater) Run(ctx context.Context) error {
	iv := h.Interval
	if iv <= 0 {
		iv = DefaultHeartbeatInterval
	}
	logger := h.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h.init()
	t := time.NewTicker(iv)
	defer t.Stop()
	failing := false
	for {
		hb := h.State()
		hb.Time = time.Now().UTC()
		hb.Interval = iv
		pctx, cancel := context.WithTimeout(ctx, iv)
		err := h.Client.PublishHeartbeat(pctx, hb)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			logger.Warn("heartbeat not published; will retry", "err", err)
			failing = true
		case err == nil && failing:
			logger.Info("heartbeats resumed")
			failing = false
		}
		select {
		case <-ctx.Done():
			h.goodbye(hb, logger)
			return nil
		case <-t.C:
		case <-h.nudge:
		}
	}
}

// goodbyeTimeout bounds the last heartbeat of a stopping agent: shutdown
// must not wait on an unreachable hub.
const goodbyeTimeout = time.Second

// goodbye publishes a last heartbeat marked Stopped. The connection is
// still open: the agent closes it only after every component returned.
func (h *Heartbeater) goodbye(last Heartbeat, logger *slog.Logger) {
	last.Time, last.Stopped = time.Now().UTC(), true
	ctx, cancel := context.WithTimeout(context.Background(), goodbyeTimeout)
	defer cancel()
	if err := h.Client.PublishHeartbeat(ctx, last); err != nil {
		logger.Debug("last heartbeat not published", "err", err)
	}
}
