package carbon

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Issue is one forecast as a provider published it: the time it was
// issued and the intervals it forecast.
type Issue struct {
	Issued   time.Time
	Readings []Reading
}

// Archive is a Forecaster that replays forecasts a provider issued in the
// past, so that the planner can be measured with a provider's forecast
// rather than one made from history. At a decision time it takes the
// latest issue made at or before it; slots that issue does not cover come
// from the latest earlier issue (of the last week) that does, since a
// forecast is not lost when a newer, shorter one arrives, and what no
// issue covers from Fallback. An issue made after the decision time is
// never read.
type Archive struct {
	// Issues are sorted by Issued, oldest first (ReadForecastArchive in
	// carbon/provider returns them so).
	Issues []Issue
	// Source names the archive in reports.
	Source string
	// Fallback forecasts what the archive lacks; nil leaves those slots
	// unknown, which the planner treats as no forecast.
	Fallback Forecaster
}

// Name identifies the archive and its fallback in reports.
func (a Archive) Name() string {
	n := "archive:" + a.Source
	if a.Fallback != nil {
		n += "+" + a.Fallback.Name()
	}
	return n
}

// Forecast returns the latest issue made by at, on hist's grid over
// [at, at+horizon), with Fallback's values where the issue has none.
func (a Archive) Forecast(hist *Curve, at time.Time, horizon time.Duration) (*Curve, error) {
	if hist.Len() > 0 && hist.End().After(at) {
		return nil, fmt.Errorf("archive forecast at %s: history runs to %s, past the decision time: %w", at.Format(time.RFC3339), hist.End().Format(time.RFC3339), ErrInvalid)
	}
	step := hist.Step()
	first := hist.SlotAt(at)
	start := hist.Origin().Add(time.Duration(first) * step)
	n := int((horizon + step - 1) / step)
	vals := make([]float64, n)
	for i := range vals {
		vals[i] = math.NaN()
	}
	// The latest issue made at or before at, then earlier ones.
	end := start.Add(time.Duration(n) * step)
	for k := sort.Search(len(a.Issues), func(i int) bool { return a.Issues[i].Issued.After(at) }) - 1; k >= 0 && at.Sub(a.Issues[k].Issued) <= archiveKeep; k-- {
		rs := a.Issues[k].Readings
		if len(rs) == 0 || !rs[len(rs)-1].End().After(start) || !rs[0].Start.Before(end) {
			continue
		}
		c, err := Resample(rs, step)
		if err != nil {
			return nil, fmt.Errorf("archive %s issued %s: %w", a.Source, a.Issues[k].Issued.Format(time.RFC3339), err)
		}
		if fillUnknown(vals, start, step, c) == 0 {
			break
		}
	}
	if a.Fallback != nil {
		fb, err := a.Fallback.Forecast(hist, at, horizon)
		if err != nil {
			return nil, fmt.Errorf("archive %s fallback: %w", a.Source, err)
		}
		fillUnknown(vals, start, step, fb)
	}
	return NewCurve(start, step, vals)
}

// archiveKeep is how far back an issue still fills slots newer issues
// lack.
const archiveKeep = 7 * 24 * time.Hour

// fillUnknown sets the unknown slots of vals (slot i at start + i·step)
// to c's mean over the slot, where c knows it, and returns how many stay
// unknown.
func fillUnknown(vals []float64, start time.Time, step time.Duration, c *Curve) int {
	unknown := 0
	for i := range vals {
		if !math.IsNaN(vals[i]) {
			continue
		}
		t := start.Add(time.Duration(i) * step)
		if v, ok := c.Mean(t, t.Add(step)); ok {
			vals[i] = v
		} else {
			unknown++
		}
	}
	return unknown
}
