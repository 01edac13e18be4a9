package carbon

import (
	"fmt"
	"math"
	"time"
)

// SeasonalRegression forecasts a slot as its seasonal profile plus a
// correction fitted separately for every horizon, by least squares on the
// recent past. It is the default forecaster from history; docs/CARBON.md
// compares it with [SeasonalBlend] and [SeasonalNaive] on the shared
// traces.
//
// The profile is [SeasonalBlend]'s: the weighted mean of the same time of
// day over the previous Days periods, from as far back as needed to use
// only known slots. For a slot k slots after the latest known one, the
// correction is a linear function, with coefficients of its own for that
// k, of
//
//   - the latest deviation: the latest known value minus its profile;
//   - its change: the latest deviation minus the one a slot earlier, so
//     that a spell that is building up or fading is told apart from one
//     that holds;
//   - the profile's change: the slot's profile minus the latest known
//     slot's, so that the fit can deepen or flatten a daily shape that
//     recent days exaggerate or understate;
//   - whether the slot falls on a Saturday or a Sunday (UTC), for grids
//     whose demand drops at weekends.
//
// The coefficients for horizon k are refitted at every forecast over the
// last Fit of history: each past slot o gives the features as known at o
// and, as the target, the deviation k slots later from the profile as
// known at o. A grid whose spells last gets corrections that persist; a
// grid whose deviations fade gets ones that vanish, without configuration.
// With a single feature, the latest deviation, the correction is
// [SeasonalBlend]'s β_k (without its clamp).
//
// The profile, the features and the fit all use only hist, whose slots end
// at or before the decision time; a history running past it is refused.
// Horizons with too little history to fit fall back to [SeasonalBlend].
// The zero value uses the defaults the comment of each field names, which
// were chosen on the first half of 2020 of the shared traces.
type SeasonalRegression struct {
	// Period is the season length; 0 means 24h.
	Period time.Duration
	// Days is how many past periods make the profile; 0 means 14.
	Days int
	// DayWeight is the weight of each period relative to the next more
	// recent one, in (0, 1]; 0 means 0.85, 1 an equal-weight mean.
	DayWeight float64
	// Fit is how much recent history the corrections are fitted on; 0
	// means 28 days.
	Fit time.Duration
	// Ridge shrinks the coefficients towards zero (the profile alone), as
	// a fraction of each feature's sum of squares; 0 means none, which
	// the defaults use.
	Ridge float64
}

var _ Forecaster = SeasonalRegression{}

// regressionFeatures is how many features each horizon's fit uses.
const regressionFeatures = 4

// Name returns a short description such as "seasonal-regression-24hx14".
func (f SeasonalRegression) Name() string {
	return fmt.Sprintf("seasonal-regression-%sx%d", shortDur(f.blend().period()), f.blend().days())
}

// blend is the forecaster whose profile this one shares and to which it
// falls back.
func (f SeasonalRegression) blend() SeasonalBlend {
	return SeasonalBlend{Period: f.Period, Days: f.Days, DayWeight: f.DayWeight, Fit: f.Fit}
}

// Forecast implements [Forecaster].
func (f SeasonalRegression) Forecast(hist *Curve, at time.Time, horizon time.Duration) (*Curve, error) {
	b := f.blend()
	step := hist.Step()
	p := b.period()
	if p%step != 0 {
		return nil, fmt.Errorf("seasonal regression forecast: period %v is not a multiple of the %v step: %w", p, step, ErrInvalid)
	}
	if w := b.dayWeight(); w < 0 || w > 1 || math.IsNaN(w) {
		return nil, fmt.Errorf("seasonal regression forecast: day weight %v: want a value in (0, 1]: %w", w, ErrInvalid)
	}
	if f.Ridge < 0 || math.IsNaN(f.Ridge) {
		return nil, fmt.Errorf("seasonal regression forecast: ridge %v: want a value of 0 or more: %w", f.Ridge, ErrInvalid)
	}
	if hist.Len() > 0 && hist.End().After(at) {
		return nil, fmt.Errorf("seasonal regression forecast at %s: history runs to %s, past the decision time: %w", at.Format(time.RFC3339), hist.End().Format(time.RFC3339), ErrInvalid)
	}
	fallback, err := b.Forecast(hist, at, horizon)
	if err != nil {
		return nil, fmt.Errorf("seasonal regression forecast: %w", err)
	}
	ps := int(p / step)
	last := hist.Len() - 1
	// Fitting origins start one period in, where a deviation has a profile,
	// and one slot more, where it has a change.
	lo := max(last-int(b.fit()/step), ps+1)
	if lo >= last {
		return fallback, nil
	}
	first := hist.SlotAt(at)
	n := fallback.Len()
	kmax := first + n - 1 - last
	r := newRegression(b, hist, lo, kmax, ps)
	vals := fallback.Values()
	var sys normalEquations
	for i := range vals {
		k := first + i - last
		if k < 1 {
			continue
		}
		coef, ok := r.fit(k, f.Ridge, &sys)
		pt := r.profile(last+k, k)
		if !ok || math.IsNaN(pt) {
			continue // the blend's value stands
		}
		x, ok := r.features(last, k)
		if !ok {
			continue
		}
		v := pt
		for j := range x {
			v += coef[j] * x[j]
		}
		vals[i] = v
	}
	return NewCurve(fallback.Origin(), step, vals)
}

// regression holds what every horizon's fit shares: the profiles of the
// fitting window and the forecast slots, computed once per forecast.
type regression struct {
	hist     *Curve
	last, lo int
	ps       int
	// base is the first slot prof covers; prof[m][t−base] is slot t's
	// profile from m or more periods back, NaN where that is not known.
	base int
	prof [][]float64
	// devs[t−base] is slot t's deviation from its profile as known at t;
	// weekend[t−base] is 1 when slot t starts on a Saturday or a Sunday.
	devs, weekend []float64
}

func newRegression(b SeasonalBlend, hist *Curve, lo, kmax, ps int) *regression {
	last := hist.Len() - 1
	r := &regression{hist: hist, last: last, lo: lo, ps: ps, base: lo - 1}
	r.prof = make([][]float64, lagPeriods(kmax, ps)+1)
	for m := 1; m < len(r.prof); m++ {
		r.prof[m] = make([]float64, last+kmax-r.base+1)
		for t := r.base; t <= last+kmax; t++ {
			r.prof[m][t-r.base] = math.NaN()
			if t-m*ps <= last {
				r.prof[m][t-r.base] = b.profile(hist, t, m, ps)
			}
		}
	}
	r.devs = make([]float64, last-r.base+1)
	for t := r.base; t <= last; t++ {
		r.devs[t-r.base] = hist.Value(t) - r.prof[1][t-r.base]
	}
	r.weekend = make([]float64, last+kmax-r.base+1)
	for t := range r.weekend {
		ts := hist.Origin().Add(time.Duration(r.base+t) * hist.Step())
		if wd := ts.Weekday(); wd == time.Saturday || wd == time.Sunday {
			r.weekend[t] = 1
		}
	}
	return r
}

// profile returns slot t's profile as known k slots before it.
func (r *regression) profile(t, k int) float64 {
	return r.prof[lagPeriods(k, r.ps)][t-r.base]
}

// features returns the features at origin o for the slot k slots later,
// and whether they are all known.
func (r *regression) features(o, k int) ([regressionFeatures]float64, bool) {
	d0, d1 := r.devs[o-r.base], r.devs[o-1-r.base]
	x := [regressionFeatures]float64{d0, d0 - d1, r.profile(o+k, k) - r.prof[1][o-r.base], r.weekend[o+k-r.base]}
	for _, v := range x {
		if math.IsNaN(v) {
			return x, false
		}
	}
	return x, true
}

// normalEquations is XᵀX and Xᵀy of one fit, reused across horizons.
type normalEquations struct {
	xtx  [regressionFeatures * regressionFeatures]float64
	xty  [regressionFeatures]float64
	coef [regressionFeatures]float64
}

// fit returns the least-squares coefficients for horizon k over the
// origins whose target is known, and false when there are too few of them
// to trust.
func (r *regression) fit(k int, ridge float64, s *normalEquations) ([regressionFeatures]float64, bool) {
	const p = regressionFeatures
	*s = normalEquations{}
	cnt := 0
	for o := r.lo; o+k <= r.last; o++ {
		e := r.hist.Value(o+k) - r.profile(o+k, k)
		if math.IsNaN(e) {
			continue
		}
		x, ok := r.features(o, k)
		if !ok {
			continue
		}
		cnt++
		for a := range p {
			s.xty[a] += x[a] * e
			for c := range a + 1 {
				s.xtx[a*p+c] += x[a] * x[c]
			}
		}
	}
	// Fewer than a few samples per coefficient would fit noise.
	if cnt < 4*p {
		return s.coef, false
	}
	// Only the lower triangle is filled and read.
	for a := range p {
		// A feature that never varies (no weekend in the window, a flat
		// profile) would make the system singular; a tiny ridge gives it a
		// zero coefficient instead.
		s.xtx[a*p+a] += ridge*s.xtx[a*p+a] + 1e-9
	}
	return s.coef, cholesky(s.xtx[:], s.xty[:], s.coef[:], p)
}

// cholesky solves the symmetric positive definite system a·x = b of size n,
// overwriting a with its Cholesky factor; it reports false when a is not
// positive definite.
func cholesky(a, b, x []float64, n int) bool {
	for j := range n {
		s := a[j*n+j]
		for k := range j {
			s -= a[j*n+k] * a[j*n+k]
		}
		if s <= 0 {
			return false
		}
		a[j*n+j] = math.Sqrt(s)
		for i := j + 1; i < n; i++ {
			s := a[i*n+j]
			for k := range j {
				s -= a[i*n+k] * a[j*n+k]
			}
			a[i*n+j] = s / a[j*n+j]
		}
	}
	for i := range n {
		s := b[i]
		for k := range i {
			s -= a[i*n+k] * x[k]
		}
		x[i] = s / a[i*n+i]
	}
	for i := n - 1; i >= 0; i-- {
		s := x[i]
		for k := i + 1; k < n; k++ {
			s -= a[k*n+i] * x[k]
		}
		x[i] = s / a[i*n+i]
	}
	return true
}
