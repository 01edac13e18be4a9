package carbon

import (
	"fmt"
	"math"
	gosync "sync"
	"time"
)

// Combined forecasts from a provider's forecast and Tern's own together,
// rather than the provider's where it has values and Tern's after them.
//
// At every forecast it records what both said, and scores both, per
// horizon, against what was then measured over the last Window. For a
// slot the provider covers, the forecast is the weighted mean of the
// provider's value, corrected for its recent bias and for its latest
// error (the latest measured value minus what the provider said of it,
// weighted by how much of such an error has persisted that far ahead),
// and Tern's own value; the weights minimise the error of the mean given
// the two errors' recent variances and covariance. Past the end of the
// provider's issue the combination's last offset from Tern's own is
// carried on, fading over Carry, so that today's level and tomorrow's do
// not come from two models that disagree.
//
// It keeps the forecasts it made, one per slot, so it is meant to be asked
// in time order (as the simulator and the agent do); a forecast for an
// earlier time than the last one starts its record again. It is safe for
// concurrent use.
type Combined struct {
	// Provider is the provider's forecast; slots it does not know are NaN
	// (an [Archive] without Fallback, or a live provider's readings).
	Provider Forecaster
	// Own is Tern's forecaster; nil means [SeasonalRegression]'s defaults.
	Own Forecaster
	// Window is how much recent history the errors are measured on; 0
	// means 14 days.
	Window time.Duration
	// Carry is how long the offset past the provider's issue takes to
	// fade to 1/e; 0 means 24 hours.
	Carry time.Duration

	mu   gosync.Mutex
	past []combinedRecord // newest last
}

// combinedRecord is what both forecasts said at one decision.
type combinedRecord struct {
	at       time.Time
	origin   time.Time // of the history's grid
	slot     int       // index on that grid of the first slot
	own, pro []float64
}

var _ Forecaster = (*Combined)(nil)

// Name describes the two forecasts combined.
func (c *Combined) Name() string {
	return "combined:" + c.Provider.Name() + "+" + c.own().Name()
}

func (c *Combined) own() Forecaster {
	if c.Own == nil {
		return SeasonalRegression{}
	}
	return c.Own
}

func (c *Combined) window() time.Duration {
	if c.Window <= 0 {
		return 14 * 24 * time.Hour
	}
	return c.Window
}

func (c *Combined) carry() time.Duration {
	if c.Carry <= 0 {
		return 24 * time.Hour
	}
	return c.Carry
}

// Forecast implements [Forecaster].
func (c *Combined) Forecast(hist *Curve, at time.Time, horizon time.Duration) (*Curve, error) {
	if hist.Len() > 0 && hist.End().After(at) {
		return nil, fmt.Errorf("combined forecast at %s: history runs to %s, past the decision time: %w", at.Format(time.RFC3339), hist.End().Format(time.RFC3339), ErrInvalid)
	}
	pf, err := c.Provider.Forecast(hist, at, horizon)
	if err != nil {
		return nil, fmt.Errorf("combined forecast: provider: %w", err)
	}
	of, err := c.own().Forecast(hist, at, horizon)
	if err != nil {
		return nil, fmt.Errorf("combined forecast: own: %w", err)
	}
	step := hist.Step()
	first := hist.SlotAt(at)
	start := hist.Origin().Add(time.Duration(first) * step)
	n := int((horizon + step - 1) / step)
	pro, own := onGrid(pf, start, step, n), onGrid(of, start, step, n)

	c.mu.Lock()
	defer c.mu.Unlock()
	if k := len(c.past); k > 0 && at.Before(c.past[k-1].at) {
		c.past = nil
	}
	if k := len(c.past); k > 0 && c.past[k-1].slot == first && hist.Origin().Equal(c.past[k-1].origin) {
		// Asked again within a slot: the newer forecast replaces the
		// record, which keeps one per slot.
		c.past = c.past[:k-1]
	}
	if k := len(c.past); k > 0 && !hist.Origin().Equal(c.past[k-1].origin) {
		// Another grid origin (a history read afresh): re-index the
		// records on it.
		shift := int(c.past[k-1].origin.Sub(hist.Origin()) / step)
		for i := range c.past {
			c.past[i].slot += shift
			c.past[i].origin = hist.Origin()
		}
	}
	keep := int(c.window()/step) + n
	for len(c.past) > 0 && c.past[0].at.Before(at.Add(-time.Duration(keep)*step)) {
		c.past = c.past[1:]
	}
	rec := combinedRecord{at: at, origin: hist.Origin(), slot: first, own: own, pro: pro}
	vals := c.combine(hist, rec, step)
	c.past = append(c.past, rec)
	return NewCurve(start, step, vals)
}

// onGrid returns f's mean over n slots from start, NaN where unknown.
func onGrid(f *Curve, start time.Time, step time.Duration, n int) []float64 {
	vals := make([]float64, n)
	for i := range vals {
		t := start.Add(time.Duration(i) * step)
		v, ok := f.Mean(t, t.Add(step))
		if !ok {
			v = math.NaN()
		}
		vals[i] = v
	}
	return vals
}

// combine returns the combined values for rec, from the errors of the
// records kept so far against hist.
func (c *Combined) combine(hist *Curve, rec combinedRecord, step time.Duration) []float64 {
	n := len(rec.own)
	known := hist.Len()
	// latest returns the provider's latest error as known at a record: the
	// value measured in the slot before it minus what the provider said
	// of that slot at the record just before.
	latestErr := func(i int) float64 {
		if i <= 0 {
			return math.NaN()
		}
		prev, r := c.past[i-1], c.past[i]
		k := r.slot - 1
		j := k - prev.slot
		if k < 0 || k >= known || j < 0 || j >= len(prev.pro) {
			return math.NaN()
		}
		return hist.Value(k) - prev.pro[j]
	}
	e0 := math.NaN()
	if m := len(c.past); m > 0 {
		prev := c.past[m-1]
		if k, j := rec.slot-1, rec.slot-1-prev.slot; k >= 0 && k < known && j >= 0 && j < len(prev.pro) {
			e0 = hist.Value(k) - prev.pro[j]
		}
	}
	vals := make([]float64, n)
	lastOffset, lastCovered := 0.0, -1
	for h := range n {
		o := rec.own[h]
		p := rec.pro[h]
		if math.IsNaN(p) {
			switch {
			case math.IsNaN(o):
				vals[h] = math.NaN()
			case lastCovered >= 0:
				age := time.Duration(h-lastCovered) * step
				vals[h] = o + lastOffset*math.Exp(-float64(age)/float64(c.carry()))
			default:
				vals[h] = o
			}
			continue
		}
		// Fit, over the records with this horizon known, the provider's
		// error on its latest error (with an intercept: its bias), then
		// the variances of the corrected provider's and the own errors.
		var sn, se, sy, see, sey float64
		type pair struct{ ep, eo, x float64 }
		var pairs []pair
		for i, r := range c.past {
			k := r.slot + h
			if k < 0 || k >= known || h >= len(r.pro) {
				continue
			}
			a := hist.Value(k)
			if math.IsNaN(a) || math.IsNaN(r.pro[h]) || math.IsNaN(r.own[h]) {
				continue
			}
			x := latestErr(i)
			if math.IsNaN(x) {
				x = 0
			}
			y := a - r.pro[h]
			sn++
			se += x
			sy += y
			see += x * x
			sey += x * y
			pairs = append(pairs, pair{y, a - r.own[h], x})
		}
		if sn < 24 {
			// Too little record: the provider as it is.
			vals[h] = p
			if !math.IsNaN(o) {
				lastOffset, lastCovered = p-o, h
			}
			continue
		}
		slope := 0.0
		if d := see - se*se/sn; d > 0 {
			slope = min(max((sey-se*sy/sn)/d, 0), 1)
		}
		bias := (sy - slope*se) / sn
		var vp, vo, cov float64
		for _, q := range pairs {
			r := q.ep - bias - slope*q.x
			vp += r * r
			vo += q.eo * q.eo
			cov += r * q.eo
		}
		x := e0
		if math.IsNaN(x) {
			x = 0
		}
		pc := p + bias + slope*x
		if math.IsNaN(o) {
			vals[h] = pc
			continue
		}
		// Weight of the provider minimising the variance of the mean.
		w := 1.0
		if d := vp + vo - 2*cov; d > 0 {
			w = min(max((vo-cov)/d, 0), 1)
		}
		vals[h] = w*pc + (1-w)*o
		lastOffset, lastCovered = vals[h]-o, h
	}
	return vals
}
