package carbon

import (
	"fmt"
	"math"
	"time"
)

// SeasonalBlend forecasts a slot as its seasonal profile plus the latest
// deviation from the profile, weighted by how much of such a deviation has
// persisted that far ahead in the recent past. [SeasonalRegression], the
// default forecaster from history, shares its profile and falls back to it;
// docs/CARBON.md compares them on the shared traces.
//
// The profile of a slot is the mean of the same time of day over the
// previous Days periods, the j-th most recent weighted DayWeight^(j−1), so
// that recent days count more. The deviation is the latest known slot's
// value minus its own profile. Its weight k slots ahead, β_k, is the
// least-squares slope of the deviation k slots later on the deviation at
// the time, over the last Fit of history, clamped to [0, 1]. Where a windy
// or a still spell lasts for hours, β stays near 1 for hours and the
// forecast follows the current level; where deviations fade quickly, β
// falls to 0 and the forecast is the profile. The profile keeps the daily
// shape, which ranks the hours of a window; the blended deviation tells
// whether waiting pays off at all.
//
// The profile, the deviation and the fit all use only hist, whose slots end
// at or before the decision time; a history running past it is refused.
// The zero value uses the defaults the comment of each field names, which
// were chosen on the first half of 2020 of the shared traces.
type SeasonalBlend struct {
	// Period is the season length; 0 means 24h.
	Period time.Duration
	// Days is how many past periods make the profile; 0 means 14.
	Days int
	// DayWeight is the weight of each period relative to the next more
	// recent one, in (0, 1]; 0 means 0.85, 1 an equal-weight mean.
	DayWeight float64
	// Fit is how much recent history the deviation weights are fitted on;
	// 0 means 28 days.
	Fit time.Duration
}

var _ Forecaster = SeasonalBlend{}

// Name returns a short description such as "seasonal-blend-24hx14".
func (f SeasonalBlend) Name() string {
	return fmt.Sprintf("seasonal-blend-%sx%d", shortDur(f.period()), f.days())
}

func (f SeasonalBlend) period() time.Duration {
	if f.Period <= 0 {
		return 24 * time.Hour
	}
	return f.Period
}

func (f SeasonalBlend) days() int {
	if f.Days <= 0 {
		return 14
	}
	return f.Days
}

func (f SeasonalBlend) dayWeight() float64 {
	if f.DayWeight == 0 {
		return 0.85
	}
	return f.DayWeight
}

func (f SeasonalBlend) fit() time.Duration {
	if f.Fit <= 0 {
		return 28 * 24 * time.Hour
	}
	return f.Fit
}

// Forecast implements [Forecaster].
func (f SeasonalBlend) Forecast(hist *Curve, at time.Time, horizon time.Duration) (*Curve, error) {
	step := hist.Step()
	p := f.period()
	if p%step != 0 {
		return nil, fmt.Errorf("seasonal blend forecast: period %v is not a multiple of the %v step: %w", p, step, ErrInvalid)
	}
	if w := f.dayWeight(); w < 0 || w > 1 || math.IsNaN(w) {
		return nil, fmt.Errorf("seasonal blend forecast: day weight %v: want a value in (0, 1]: %w", w, ErrInvalid)
	}
	if hist.Len() > 0 && hist.End().After(at) {
		return nil, fmt.Errorf("seasonal blend forecast at %s: history runs to %s, past the decision time: %w", at.Format(time.RFC3339), hist.End().Format(time.RFC3339), ErrInvalid)
	}
	ps := int(p / step)
	// The slot containing at is still in progress and is forecast like the
	// rest; last is the latest known slot, k = slot − last its horizon.
	first := hist.SlotAt(at)
	n := int((horizon + step - 1) / step)
	last := hist.Len() - 1
	vals := make([]float64, n)
	for i := range vals {
		vals[i] = f.profile(hist, first+i, lagPeriods(first+i-last, ps), ps)
	}
	if last < 0 {
		return NewCurve(hist.Origin().Add(time.Duration(first)*step), step, vals)
	}
	dev := hist.Value(last) - f.profile(hist, last, 1, ps)
	if !math.IsNaN(dev) {
		betas := f.weights(hist, first+n-1-last, ps)
		for i := range vals {
			vals[i] += betas[first+i-last] * dev
		}
	}
	return NewCurve(hist.Origin().Add(time.Duration(first)*step), step, vals)
}

// lagPeriods returns how many whole periods back a slot k slots after the
// latest known one can look: the fewest that reach a known slot.
func lagPeriods(k, ps int) int {
	if k < 1 {
		return 1
	}
	return (k + ps - 1) / ps
}

// profile returns the weighted mean of slot k's values lag, lag+1, …,
// lag+Days−1 periods back, skipping unknown ones, or NaN if none is known.
func (f SeasonalBlend) profile(hist *Curve, k, lag, ps int) float64 {
	var num, den float64
	w := 1.0
	for d := range f.days() {
		back := k - (lag+d)*ps
		if back < 0 {
			break
		}
		if v := hist.Value(back); !math.IsNaN(v) {
			num += w * v
			den += w
		}
		w *= f.dayWeight()
	}
	if den == 0 {
		return math.NaN()
	}
	return num / den
}

// weights returns β_k for k = 0…kmax (β_0 unused): for every origin slot o
// in the fit window with o+k known, the slope through zero of the
// deviation at o+k (from the profile as known at o) on the deviation at o.
func (f SeasonalBlend) weights(hist *Curve, kmax, ps int) []float64 {
	last := hist.Len() - 1
	betas := make([]float64, kmax+1)
	lo := max(0, last-int(f.fit()/hist.Step()))
	if lo >= last {
		return betas
	}
	// prof[m][t−lo] is slot t's profile from m or more periods back: what
	// was known about t k slots earlier, for every k with lagPeriods = m.
	prof := make([][]float64, lagPeriods(kmax, ps)+1)
	for m := 1; m < len(prof); m++ {
		prof[m] = make([]float64, last-lo+1)
		for t := lo; t <= last; t++ {
			prof[m][t-lo] = f.profile(hist, t, m, ps)
		}
	}
	for k := 1; k <= kmax; k++ {
		m := lagPeriods(k, ps)
		var sxy, sxx float64
		for o := lo; o+k <= last; o++ {
			d := hist.Value(o) - prof[1][o-lo]
			e := hist.Value(o+k) - prof[m][o+k-lo]
			if math.IsNaN(d) || math.IsNaN(e) {
				continue
			}
			sxy += d * e
			sxx += d * d
		}
		if sxx > 0 {
			betas[k] = min(max(sxy/sxx, 0), 1)
		}
	}
	return betas
}
