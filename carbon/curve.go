package carbon

import (
	"fmt"
	"math"
	"time"
)

// Curve is an intensity series on a regular grid: slot i covers
// [Origin+i·Step, Origin+(i+1)·Step) and holds the time-weighted mean of the
// readings over that slot, or NaN where no reading covers any of it.
//
// The planner only ever asks a curve for the mean over a span, so a curve
// built from 15-min, 30-min, hourly or changing-interval data answers the
// same question exactly (up to the slot grid), and nothing assumes hourly
// data. A Curve is immutable once built and safe for concurrent reads.
type Curve struct {
	origin time.Time
	step   time.Duration
	vals   []float64
	// sum[i] is the sum of the known values of slots [0, i); gaps[i] counts
	// the unknown slots among them, so a span's mean is O(1) and a span that
	// touches a gap is reported as unknown rather than averaged around it.
	sum  []float64
	gaps []int32
}

// NewCurve returns a curve with the given per-slot values (NaN for unknown).
// Step must be positive; the values are copied.
func NewCurve(origin time.Time, step time.Duration, values []float64) (*Curve, error) {
	if step <= 0 {
		return nil, fmt.Errorf("curve step %v: must be positive: %w", step, ErrInvalid)
	}
	c := &Curve{origin: origin, step: step, vals: append([]float64(nil), values...)}
	c.index()
	return c, nil
}

func (c *Curve) index() {
	c.sum = make([]float64, len(c.vals)+1)
	c.gaps = make([]int32, len(c.vals)+1)
	for i, v := range c.vals {
		c.sum[i+1], c.gaps[i+1] = c.sum[i], c.gaps[i]
		if math.IsNaN(v) {
			c.gaps[i+1]++
		} else {
			c.sum[i+1] += v
		}
	}
}

// Resample builds a curve with the given step from readings of any interval,
// sorted by Start. The grid starts at the first reading's start truncated to
// step (truncation is relative to the zero time, so hourly steps align with
// UTC hours) and ends at the last reading's end rounded up. Each slot holds
// the time-weighted mean of the readings covering it; slots no reading
// touches are unknown.
func Resample(rs []Reading, step time.Duration) (*Curve, error) {
	if step <= 0 {
		return nil, fmt.Errorf("resample step %v: must be positive: %w", step, ErrInvalid)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("resample: no readings: %w", ErrNoData)
	}
	origin := rs[0].Start.Truncate(step)
	end := rs[0].End()
	for _, r := range rs {
		if r.End().After(end) {
			end = r.End()
		}
	}
	n := int((end.Sub(origin) + step - 1) / step)
	num := make([]float64, n)
	den := make([]float64, n)
	for i, r := range rs {
		if r.Duration <= 0 {
			return nil, fmt.Errorf("resample: reading %d at %s has duration %v: %w", i, r.Start.Format(time.RFC3339), r.Duration, ErrInvalid)
		}
		if i > 0 && r.Start.Before(rs[i-1].Start) {
			return nil, fmt.Errorf("resample: reading %d at %s is before the one at %s: %w", i, r.Start.Format(time.RFC3339), rs[i-1].Start.Format(time.RFC3339), ErrInvalid)
		}
		s, e := r.Start, r.End()
		for k := int(s.Sub(origin) / step); k < n; k++ {
			ks := origin.Add(time.Duration(k) * step)
			ke := ks.Add(step)
			if !ks.Before(e) {
				break
			}
			lo, hi := maxTime(s, ks), minTime(e, ke)
			w := hi.Sub(lo).Seconds()
			if w > 0 {
				num[k] += w * r.GCO2PerKWh
				den[k] += w
			}
		}
	}
	vals := make([]float64, n)
	for k := range vals {
		if den[k] > 0 {
			vals[k] = num[k] / den[k]
		} else {
			vals[k] = math.NaN()
		}
	}
	c := &Curve{origin: origin, step: step, vals: vals}
	c.index()
	return c, nil
}

// Origin returns the start of slot 0.
func (c *Curve) Origin() time.Time { return c.origin }

// Step returns the slot length.
func (c *Curve) Step() time.Duration { return c.step }

// Len returns the number of slots.
func (c *Curve) Len() int { return len(c.vals) }

// End returns the end of the last slot.
func (c *Curve) End() time.Time { return c.origin.Add(time.Duration(len(c.vals)) * c.step) }

// Value returns slot i's value (NaN if unknown).
func (c *Curve) Value(i int) float64 { return c.vals[i] }

// Values returns a copy of the slot values.
func (c *Curve) Values() []float64 { return append([]float64(nil), c.vals...) }

// SlotAt returns the index of the slot containing t; it may be out of range.
func (c *Curve) SlotAt(t time.Time) int {
	d := t.Sub(c.origin)
	i := int(d / c.step)
	if d < 0 && d%c.step != 0 {
		i--
	}
	return i
}

// Until returns the part of the curve whose slots end at or before t: what
// was known at time t. It shares storage with c.
func (c *Curve) Until(t time.Time) *Curve {
	n := int(t.Sub(c.origin) / c.step)
	if t.Before(c.origin) {
		n = 0
	}
	n = min(n, len(c.vals))
	return &Curve{origin: c.origin, step: c.step, vals: c.vals[:n], sum: c.sum[:n+1], gaps: c.gaps[:n+1]}
}

// Mean returns the time-weighted mean over [from, to) and whether every
// instant of it is covered by known slots. Spans within a slot use that
// slot's value.
func (c *Curve) Mean(from, to time.Time) (float64, bool) {
	if !to.After(from) || from.Before(c.origin) || to.After(c.End()) {
		return 0, false
	}
	a, fa := c.pos(from)
	b, fb := c.pos(to)
	if a == b {
		v := c.vals[a]
		return v, !math.IsNaN(v)
	}
	// Whole slots strictly between a and b, plus the partial ends.
	if c.gaps[b]-c.gaps[a+1] > 0 || math.IsNaN(c.vals[a]) || (fb > 0 && math.IsNaN(c.vals[b])) {
		return 0, false
	}
	total := (1-fa)*c.vals[a] + (c.sum[b] - c.sum[a+1])
	if fb > 0 {
		total += fb * c.vals[b]
	}
	return total / (float64(b-a) - fa + fb), true
}

// pos returns the slot of t and t's fraction into it.
func (c *Curve) pos(t time.Time) (int, float64) {
	d := t.Sub(c.origin)
	i := int(d / c.step)
	return i, float64(d%c.step) / float64(c.step)
}

// Readings returns the known slots as readings labelled with kind, signal
// and source.
func (c *Curve) Readings(kind Kind, signal Signal, source string) []Reading {
	out := make([]Reading, 0, len(c.vals))
	for i, v := range c.vals {
		if math.IsNaN(v) {
			continue
		}
		out = append(out, Reading{Start: c.origin.Add(time.Duration(i) * c.step), Duration: c.step, GCO2PerKWh: v, Kind: kind, Signal: signal, Source: source})
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
