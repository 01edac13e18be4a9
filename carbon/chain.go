package carbon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	gosync "sync"
	"time"
)

// Cache serves a provider's answers again for TTL, per region, so that many
// planner passes cost one request. Errors are not cached. It is safe for
// concurrent use.
type Cache struct {
	p   Provider
	ttl time.Duration
	now func() time.Time
	mu  gosync.Mutex
	cur map[string]cachedReading
	fc  map[string]cachedForecast
}

type cachedReading struct {
	at time.Time
	r  Reading
}

type cachedForecast struct {
	at       time.Time
	from, to time.Time
	rs       []Reading
}

var _ Provider = (*Cache)(nil)

// NewCache wraps p; now is the clock (nil means time.Now).
func NewCache(p Provider, ttl time.Duration, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{p: p, ttl: ttl, now: now, cur: map[string]cachedReading{}, fc: map[string]cachedForecast{}}
}

// Current returns the cached current reading while it is fresh and its
// interval still contains now, and asks the provider otherwise.
func (c *Cache) Current(ctx context.Context, region string) (Reading, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.cur[region]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.ttl && (e.r.Duration == 0 || now.Before(e.r.End())) {
		return e.r, nil
	}
	r, err := c.p.Current(ctx, region)
	if err != nil {
		return Reading{}, err
	}
	c.mu.Lock()
	c.cur[region] = cachedReading{at: now, r: r}
	c.mu.Unlock()
	return r, nil
}

// Forecast returns the cached forecast, clipped to [from, to), while it is
// fresh and was fetched for a window containing this one; otherwise it asks
// the provider.
func (c *Cache) Forecast(ctx context.Context, region string, from, to time.Time) ([]Reading, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.fc[region]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.ttl && !from.Before(e.from) && !to.After(e.to) {
		if rs := Clip(e.rs, from, to); len(rs) > 0 {
			return rs, nil
		}
	}
	rs, err := c.p.Forecast(ctx, region, from, to)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.fc[region] = cachedForecast{at: now, from: from, to: to, rs: rs}
	c.mu.Unlock()
	return rs, nil
}

// Chain answers from the first source that can: the live provider, then
// the last forecast the live provider gave, then (for forecasts) a
// forecast from recorded history, then a trace, then a constant.
// Every reading keeps its Kind and carries the Source of what answered;
// readings from the kept forecast are relabelled "cache:<source>", so a
// report never passes an old forecast off as live.
//
// It is safe for concurrent use. Failures of a source are logged at warn
// level (without credentials, which providers never put in errors) and
// the next source is tried; the error is returned only when none answers.
type Chain struct {
	// Live is the provider asked first; nil skips it.
	Live Provider
	// History forecasts from what was recorded when neither Live nor the
	// kept forecast has a forecast for the window; nil skips it. Its
	// readings are labelled "history:<source>".
	History *FromHistory
	// Trace is asked when the sources above cannot answer; nil skips it.
	Trace Provider
	// Constant, when positive, is the last resort: an assumed intensity in
	// gCO2/kWh, labelled Kind Assumed and Source "constant".
	Constant float64
	// ConstantStep is the interval of constant readings; 0 means 1 hour.
	ConstantStep time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives fallback warnings; nil discards them.
	Logger *slog.Logger

	mu   gosync.Mutex
	last map[string][]Reading
}

var _ Provider = (*Chain)(nil)

func (c *Chain) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c *Chain) warn(msg, region string, err error) {
	if c.Logger != nil {
		c.Logger.Warn(msg, "region", region, "err", err)
	}
}

// kept returns the live provider's last forecast for region, relabelled.
func (c *Chain) kept(region string) []Reading {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs := c.last[region]
	if len(rs) == 0 {
		return nil
	}
	return Relabel(rs, "cache:"+rs[0].Source)
}

// Current implements [Provider].
func (c *Chain) Current(ctx context.Context, region string) (Reading, error) {
	var errs []error
	if c.Live != nil {
		r, err := c.Live.Current(ctx, region)
		if err == nil {
			return r, nil
		}
		c.warn("live intensity failed, falling back", region, err)
		errs = append(errs, err)
	}
	now := c.now()
	for _, r := range c.kept(region) {
		if r.Contains(now) {
			return r, nil
		}
	}
	if c.Trace != nil {
		r, err := c.Trace.Current(ctx, region)
		if err == nil {
			return r, nil
		}
		errs = append(errs, err)
	}
	if c.Constant > 0 {
		step := c.constantStep()
		return Reading{Start: now.Truncate(step), Duration: step, GCO2PerKWh: c.Constant, Kind: Assumed, Signal: Average, Source: "constant"}, nil
	}
	return Reading{}, fmt.Errorf("current intensity for %s: every source failed: %w", region, errors.Join(append(errs, ErrNoData)...))
}

// Forecast implements [Provider].
func (c *Chain) Forecast(ctx context.Context, region string, from, to time.Time) ([]Reading, error) {
	var errs []error
	if c.Live != nil {
		rs, err := c.Live.Forecast(ctx, region, from, to)
		if err == nil && len(rs) > 0 {
			c.mu.Lock()
			if c.last == nil {
				c.last = map[string][]Reading{}
			}
			c.last[region] = rs
			c.mu.Unlock()
			return rs, nil
		}
		if err == nil {
			err = fmt.Errorf("live forecast for %s: empty: %w", region, ErrNoData)
		}
		c.warn("live forecast failed, falling back", region, err)
		errs = append(errs, err)
	}
	if rs := Clip(c.kept(region), from, to); len(rs) > 0 {
		return rs, nil
	}
	if c.History != nil {
		rs, err := c.History.Forecast(ctx, region, from, to)
		if err == nil {
			return rs, nil
		}
		errs = append(errs, err)
	}
	if c.Trace != nil {
		rs, err := c.Trace.Forecast(ctx, region, from, to)
		if err == nil && len(rs) > 0 {
			return rs, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.Constant > 0 {
		step := c.constantStep()
		var rs []Reading
		for t := from.Truncate(step); t.Before(to); t = t.Add(step) {
			rs = append(rs, Reading{Start: t, Duration: step, GCO2PerKWh: c.Constant, Kind: Assumed, Signal: Average, Source: "constant"})
		}
		return rs, nil
	}
	return nil, fmt.Errorf("forecast for %s: every source failed: %w", region, errors.Join(append(errs, ErrNoData)...))
}

func (c *Chain) constantStep() time.Duration {
	if c.ConstantStep > 0 {
		return c.ConstantStep
	}
	return time.Hour
}
