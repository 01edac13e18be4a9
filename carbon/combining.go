package carbon

import (
	"context"
	"fmt"
	"math"
	gosync "sync"
	"time"
)

// Combining is a [Provider] that serves a live provider's current
// intensity, and a forecast that combines the live provider's with one
// from the recorded history ([Combined]), with the measured value for the
// slot in progress. While too little history is recorded it serves the
// live forecast as it is. Its readings are labelled "combined:<source>".
//
// It keeps one [Combined] per region, so it is meant to be the one
// provider the planner's refreshes go through. It is safe for concurrent
// use if Live and History are.
type Combining struct {
	// Live is the provider whose forecast and current readings are used.
	Live Provider
	// History reads the recorded history and makes Tern's own forecast
	// (its Forecaster, Step, Lookback, MinHistory and Now apply).
	History *FromHistory

	mu  gosync.Mutex
	per map[string]*Combined
}

var _ Provider = (*Combining)(nil)

// Current implements [Provider]: the live provider's reading.
func (c *Combining) Current(ctx context.Context, region string) (Reading, error) {
	return c.Live.Current(ctx, region)
}

// Forecast implements [Provider].
func (c *Combining) Forecast(ctx context.Context, region string, from, to time.Time) ([]Reading, error) {
	rs, err := c.Live.Forecast(ctx, region, from, to)
	if err != nil || len(rs) == 0 {
		return rs, err
	}
	now := c.History.now()
	hist, _, err := c.History.recorded(ctx, region, now)
	if err != nil {
		return rs, nil // too little history to combine with
	}
	step := c.History.step()
	live, err := Resample(rs, step)
	if err != nil {
		return rs, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.per == nil {
		c.per = map[string]*Combined{}
	}
	comb := c.per[region]
	if comb == nil {
		comb = &Combined{Own: c.History.Forecaster}
		c.per[region] = comb
	}
	comb.Provider = curveForecast{live}
	fc, err := comb.Forecast(hist, now, to.Sub(now.Truncate(step)))
	if err != nil {
		return nil, fmt.Errorf("combined forecast of %s: %w", region, err)
	}
	vals := fc.Values()
	// The slot in progress: what is measured beats any forecast of it.
	if cur, err := c.Live.Current(ctx, region); err == nil && cur.Kind != Forecast && cur.Contains(now) && len(vals) > 0 {
		vals[0] = cur.GCO2PerKWh
	}
	out, err := NewCurve(fc.Origin(), step, vals)
	if err != nil {
		return nil, fmt.Errorf("combined forecast of %s: %w", region, err)
	}
	return Clip(out.Readings(Forecast, rs[0].Signal, "combined:"+rs[0].Source), from, to), nil
}

// curveForecast forecasts what a curve holds, NaN elsewhere: a live
// provider's forecast as [Combined] takes it.
type curveForecast struct{ c *Curve }

func (f curveForecast) Name() string { return "live" }

func (f curveForecast) Forecast(hist *Curve, at time.Time, horizon time.Duration) (*Curve, error) {
	step := hist.Step()
	start := hist.Origin().Add(time.Duration(hist.SlotAt(at)) * step)
	vals := make([]float64, int((horizon+step-1)/step))
	for i := range vals {
		t := start.Add(time.Duration(i) * step)
		v, ok := f.c.Mean(t, t.Add(step))
		if !ok {
			v = math.NaN()
		}
		vals[i] = v
	}
	return NewCurve(start, step, vals)
}
