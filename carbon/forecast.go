package carbon

import (
	"fmt"
	"math"
	"time"
)

// Forecaster predicts intensity from history alone, for sources without a
// forecast of their own (trace files, Electricity Maps' free tier, history
// kept by the agent).
//
// A Forecaster receives only what was known at the decision time: callers
// pass hist.Until(at), so a forecaster cannot read the future even by
// mistake, and the simulator's tests shuffle the future to check that.
type Forecaster interface {
	// Forecast returns a curve on hist's grid covering [at, at+horizon),
	// built only from hist (whose slots all end at or before at).
	Forecast(hist *Curve, at time.Time, horizon time.Duration) (*Curve, error)
	// Name identifies the method in reports, such as "seasonal-naive-24h".
	Name() string
}

// SeasonalNaive is a day-ahead seasonal naive forecaster: the value of a
// slot is the value of the same time of day Period earlier, or one more
// Period back when that is still in the future, averaged over the last Days
// such values. Level, when set, shifts the whole profile by how far the
// latest known slot is from what the profile says it should have been, so
// a windy or a still day moves the level while the daily shape is kept.
//
// The zero value (Period 24h, Days 1, no level correction) is the textbook
// seasonal naive method; its error on the shared traces is in docs/CARBON.md.
type SeasonalNaive struct {
	// Period is the season length; 0 means 24h.
	Period time.Duration
	// Days is how many past periods are averaged; 0 means 1.
	Days int
	// Level is the weight (0..1) of the latest deviation added to the
	// profile; it decays over Decay.
	Level float64
	// Decay is how long the level correction takes to fade to 1/e; 0 means
	// it never fades.
	Decay time.Duration
}

var _ Forecaster = SeasonalNaive{}

// Name returns a short description such as "seasonal-naive-24h" or
// "seasonal-mean-24hx7+level".
func (f SeasonalNaive) Name() string {
	p, d := f.period(), f.days()
	name := fmt.Sprintf("seasonal-naive-%s", shortDur(p))
	if d > 1 {
		name = fmt.Sprintf("seasonal-mean-%sx%d", shortDur(p), d)
	}
	if f.Level > 0 {
		name += "+level"
	}
	return name
}

func (f SeasonalNaive) period() time.Duration {
	if f.Period <= 0 {
		return 24 * time.Hour
	}
	return f.Period
}

func (f SeasonalNaive) days() int {
	if f.Days <= 0 {
		return 1
	}
	return f.Days
}

// Forecast implements [Forecaster].
func (f SeasonalNaive) Forecast(hist *Curve, at time.Time, horizon time.Duration) (*Curve, error) {
	step := hist.Step()
	p := f.period()
	if p%step != 0 {
		return nil, fmt.Errorf("seasonal forecast: period %v is not a multiple of the %v step: %w", p, step, ErrInvalid)
	}
	if hist.Len() > 0 && hist.End().After(at) {
		// The caller passed the future; refuse rather than leak it.
		return nil, fmt.Errorf("seasonal forecast at %s: history runs to %s, past the decision time: %w", at.Format(time.RFC3339), hist.End().Format(time.RFC3339), ErrInvalid)
	}
	ps := int(p / step)
	// Start at the slot containing at: when at is mid-slot, that slot is
	// still in progress and is forecast like the rest.
	first := hist.SlotAt(at)
	n := int((horizon + step - 1) / step)
	known := hist.Len()
	vals := make([]float64, n)
	for i := range vals {
		vals[i] = f.profile(hist, first+i, known, ps)
	}
	if f.Level > 0 && known > 0 {
		last := known - 1
		dev := hist.Value(last) - f.profile(hist, last, last, ps)
		if !math.IsNaN(dev) {
			for i := range vals {
				w := f.Level
				if f.Decay > 0 {
					age := time.Duration(first+i-last) * step
					w *= math.Exp(-float64(age) / float64(f.Decay))
				}
				vals[i] += w * dev
			}
		}
	}
	return NewCurve(hist.Origin().Add(time.Duration(first)*step), step, vals)
}

// profile returns the mean of up to Days values at slot k minus whole
// periods, using only slots below known.
func (f SeasonalNaive) profile(hist *Curve, k, known, ps int) float64 {
	back := k - ps
	for back >= known {
		back -= ps
	}
	var sum float64
	var cnt int
	for d := 0; d < f.days() && back >= 0; back -= ps {
		if v := hist.Value(back); !math.IsNaN(v) {
			sum += v
			cnt++
		}
		d++
	}
	if cnt == 0 {
		return math.NaN()
	}
	return sum / float64(cnt)
}

// MAPE returns the mean absolute percentage error of forecast against
// actual over the slots both know, in percent, and how many slots it used.
// Slots whose actual value is zero are skipped.
func MAPE(forecast, actual *Curve) (float64, int) {
	var sum float64
	var n int
	for i := 0; i < forecast.Len(); i++ {
		t := forecast.Origin().Add(time.Duration(i) * forecast.Step())
		a, ok := actual.Mean(t, t.Add(forecast.Step()))
		fv := forecast.Value(i)
		if !ok || a == 0 || math.IsNaN(fv) {
			continue
		}
		sum += math.Abs(fv-a) / math.Abs(a)
		n++
	}
	if n == 0 {
		return math.NaN(), 0
	}
	return 100 * sum / float64(n), n
}

func shortDur(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0 && d >= 7*24*time.Hour && d%(7*24*time.Hour) == 0:
		return fmt.Sprintf("%dw", d/(7*24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}
