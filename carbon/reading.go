package carbon

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors that callers branch on. Errors from this package and from
// carbon/provider wrap at most one of them, with context naming the provider,
// region and limit involved.
var (
	// ErrNoData means the source has no value for that region and time (absent, not broken).
	ErrNoData = errors.New("no intensity data")
	// ErrUnauthorized means the source rejected the credentials.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrRateLimited means the source asked us to slow down; see [RetryAfter].
	ErrRateLimited = errors.New("rate limited")
	// ErrUnavailable means the source failed (5xx, network, malformed response).
	ErrUnavailable = errors.New("source unavailable")
	// ErrInvalid means an argument or configuration is not valid.
	ErrInvalid = errors.New("invalid")
)

// Kind says how a value was obtained.
type Kind uint8

// The kinds of a value.
const (
	// Actual is a measured (or, for a provider, published as measured) value.
	Actual Kind = iota + 1
	// Forecast is a predicted value.
	Forecast
	// Assumed is a configured constant used when nothing better is known.
	Assumed
)

// String returns "actual", "forecast" or "assumed".
func (k Kind) String() string {
	switch k {
	case Actual:
		return "actual"
	case Forecast:
		return "forecast"
	case Assumed:
		return "assumed"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Signal says what a value measures.
type Signal uint8

// The signals a provider can return.
const (
	// Average is the average intensity of the electricity produced in the
	// interval (Electricity Maps, UK National Grid, the shared traces).
	Average Signal = iota + 1
	// Marginal is the intensity of the generator that would respond to one
	// more unit of load (WattTime's MOER). It is usually higher than the
	// average and must not be added to or compared with average values.
	Marginal
)

// String returns "average" or "marginal".
func (s Signal) String() string {
	switch s {
	case Average:
		return "average"
	case Marginal:
		return "marginal"
	}
	return fmt.Sprintf("signal(%d)", uint8(s))
}

// Reading is one labelled carbon-intensity value for the interval
// [Start, Start+Duration).
type Reading struct {
	Start    time.Time
	Duration time.Duration
	// GCO2PerKWh is the intensity in grams of CO2 (or CO2eq) per kWh.
	GCO2PerKWh float64
	Kind       Kind
	Signal     Signal
	// Source names where the value came from, such as "watttime",
	// "electricitymaps", "ukgrid", "trace:de.csv", "cache:ukgrid" or
	// "constant".
	Source string
}

// End returns the end of the reading's interval.
func (r Reading) End() time.Time { return r.Start.Add(r.Duration) }

// Contains reports whether t lies in the reading's interval.
func (r Reading) Contains(t time.Time) bool {
	return !t.Before(r.Start) && t.Before(r.End())
}

// Provider returns carbon intensity for a region.
//
// Implementations are safe for concurrent use. A region or time they have no
// data for is reported as an error wrapping [ErrNoData]; credentials refused
// as [ErrUnauthorized]; throttling as [ErrRateLimited]; other failures as
// [ErrUnavailable]. Every returned reading carries its Source and Kind.
type Provider interface {
	// Current returns the reading whose interval contains now, or the most
	// recent one the source has.
	Current(ctx context.Context, region string) (Reading, error)
	// Forecast returns readings overlapping [from, to), sorted by Start.
	// A source may return fewer than asked (a shorter horizon); it returns
	// ErrNoData only if it has none.
	Forecast(ctx context.Context, region string, from, to time.Time) ([]Reading, error)
}

// HistoryProvider is implemented by providers that also serve past values,
// and by the history a site records of what it observed: the input of
// [FromHistory] when a source has no forecast of its own.
type HistoryProvider interface {
	// History returns readings overlapping [from, to), sorted by Start,
	// under the same error rules as [Provider].
	History(ctx context.Context, region string, from, to time.Time) ([]Reading, error)
}

// RetryAfterError is implemented by errors that carry how long a source asked
// us to wait before the next request.
type RetryAfterError interface {
	error
	RetryAfter() time.Duration
}

// RetryAfter returns the wait a rate-limited source asked for, or 0 if err
// does not say.
func RetryAfter(err error) time.Duration {
	var ra RetryAfterError
	if errors.As(err, &ra) {
		return ra.RetryAfter()
	}
	return 0
}

// Clip returns the readings that overlap [from, to), in their order.
func Clip(rs []Reading, from, to time.Time) []Reading {
	var out []Reading
	for _, r := range rs {
		if r.End().After(from) && r.Start.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// Relabel returns a copy of rs with Source set to source.
func Relabel(rs []Reading, source string) []Reading {
	out := make([]Reading, len(rs))
	for i, r := range rs {
		r.Source = source
		out[i] = r
	}
	return out
}
