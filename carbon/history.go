package carbon

import (
	"context"
	"fmt"
	"math"
	"time"
)

// FromHistory forecasts from readings a site recorded itself, for a live
// source without a forecast of its own (or whose last forecast has run
// out). It reads History over the last Lookback up to now, resamples it on
// Step, keeps only the slots that ended by now (so nothing from the future
// is read) and hands them to Forecaster. Its readings are labelled Kind
// Forecast, the signal of the latest recorded reading, and Source
// "history:<source of the latest recorded reading>".
//
// When fewer than MinHistory of recorded slots are known, Forecast returns
// an error wrapping [ErrNoData], so that a [Chain] goes on to its next
// source. It is safe for concurrent use if History is.
type FromHistory struct {
	// History serves the recorded readings.
	History HistoryProvider
	// Forecaster makes the forecast; nil means [SeasonalRegression]'s defaults.
	Forecaster Forecaster
	// Step is the grid of the forecast; 0 means 1 hour.
	Step time.Duration
	// Lookback is how much history is read; 0 means 35 days.
	Lookback time.Duration
	// MinHistory is the least recorded time the forecaster is trusted
	// with; 0 means 24 hours.
	MinHistory time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (h *FromHistory) step() time.Duration {
	if h.Step > 0 {
		return h.Step
	}
	return time.Hour
}

func (h *FromHistory) now() time.Time {
	if h.Now == nil {
		return time.Now()
	}
	return h.Now()
}

// Forecast returns the forecast from now to `to`, clipped to [from, to),
// under the error rules of [Provider].
func (h *FromHistory) Forecast(ctx context.Context, region string, from, to time.Time) ([]Reading, error) {
	now := h.now()
	if !to.After(now) {
		return nil, fmt.Errorf("forecast from history of %s: window ends at %s, not after now: %w", region, to.Format(time.RFC3339), ErrNoData)
	}
	step := h.step()
	hist, last, err := h.recorded(ctx, region, now)
	if err != nil {
		return nil, err
	}
	var f Forecaster = SeasonalRegression{}
	if h.Forecaster != nil {
		f = h.Forecaster
	}
	// The forecast starts at the slot in progress; its horizon runs from
	// that slot's start so that the last slot reaches to.
	fc, err := f.Forecast(hist, now, to.Sub(now.Truncate(step)))
	if err != nil {
		return nil, fmt.Errorf("forecast from history of %s with %s: %w", region, f.Name(), err)
	}
	out := Clip(fc.Readings(Forecast, last.Signal, "history:"+last.Source), from, to)
	if len(out) == 0 {
		return nil, fmt.Errorf("forecast from history of %s: %s gave no value: %w", region, f.Name(), ErrNoData)
	}
	return out, nil
}

// recorded returns the recorded history of region on Step up to now, and
// the latest recorded reading, or an error wrapping [ErrNoData] when less
// than MinHistory is known.
func (h *FromHistory) recorded(ctx context.Context, region string, now time.Time) (*Curve, Reading, error) {
	step := h.step()
	back := h.Lookback
	if back <= 0 {
		back = 35 * 24 * time.Hour
	}
	rs, err := h.History.History(ctx, region, now.Add(-back), now)
	if err != nil {
		return nil, Reading{}, fmt.Errorf("forecast from history of %s: %w", region, err)
	}
	if len(rs) == 0 {
		return nil, Reading{}, fmt.Errorf("forecast from history of %s: nothing recorded: %w", region, ErrNoData)
	}
	last := rs[len(rs)-1]
	// Values of another signal (the provider changed) are not mixed in.
	same := rs[:0:0]
	for _, r := range rs {
		if r.Signal == last.Signal {
			same = append(same, r)
		}
	}
	c, err := Resample(same, step)
	if err != nil {
		return nil, Reading{}, fmt.Errorf("forecast from history of %s: %w", region, err)
	}
	hist := c.Until(now)
	known := 0
	for i := range hist.Len() {
		if !math.IsNaN(hist.Value(i)) {
			known++
		}
	}
	minHist := h.MinHistory
	if minHist <= 0 {
		minHist = 24 * time.Hour
	}
	if time.Duration(known)*step < minHist {
		return nil, Reading{}, fmt.Errorf("forecast from history of %s: %v recorded, want %v: %w", region, time.Duration(known)*step, minHist, ErrNoData)
	}
	return hist, last, nil
}
