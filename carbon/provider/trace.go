package provider

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// ReadTrace reads a trace in CSV or JSON (chosen by the first non-blank
// byte) and labels each reading with Source "trace:<name>".
//
// CSV: a header "time,gco2_per_kwh", then one row per interval; time is
// RFC 3339 and marks the interval's start; the interval lasts until the
// next row's time (any fixed or changing interval), and the last row lasts
// as long as the one before it (an hour if it is alone). Readings are
// Actual and Average.
//
// JSON:
//
//	{
//	  "region": "DE",                // optional
//	  "signal": "average",           // or "marginal"; default average
//	  "readings": [
//	    {"start": "2020-01-01T00:00:00Z", "duration": "15m",
//	     "gco2_per_kwh": 311.2, "kind": "actual"}   // kind: actual|forecast
//	  ]
//	}
//
// where a missing duration means "until the next start" as in CSV. Rows
// must be sorted by time without duplicates; values must be finite and not
// negative.
func ReadTrace(r io.Reader, name string) ([]carbon.Reading, error) {
	br := bufio.NewReader(r)
	for {
		b, err := br.Peek(1)
		if err != nil {
			return nil, fmt.Errorf("trace %s: empty: %w", name, carbon.ErrNoData)
		}
		if b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n' || b[0] == 0xEF || b[0] == 0xBB || b[0] == 0xBF {
			_, _ = br.ReadByte()
			continue
		}
		if b[0] == '{' {
			return readJSONTrace(br, name)
		}
		return readCSVTrace(br, name)
	}
}

func readCSVTrace(r io.Reader, name string) ([]carbon.Reading, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 2
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("trace %s: header: %w: %w", name, carbon.ErrInvalid, err)
	}
	if strings.TrimSpace(head[0]) != "time" || strings.TrimSpace(head[1]) != "gco2_per_kwh" {
		return nil, fmt.Errorf("trace %s: header %q: want time,gco2_per_kwh: %w", name, strings.Join(head, ","), carbon.ErrInvalid)
	}
	var starts []time.Time
	var vals []float64
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("trace %s: %w: %w", name, carbon.ErrInvalid, err)
		}
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(rec[0]))
		if err != nil {
			return nil, fmt.Errorf("trace %s line %d: time %q: %w", name, line, rec[0], carbon.ErrInvalid)
		}
		v, ok := parseIntensity(rec[1])
		if !ok {
			return nil, fmt.Errorf("trace %s line %d: intensity %q: want a finite number ≥ 0: %w", name, line, rec[1], carbon.ErrInvalid)
		}
		if n := len(starts); n > 0 && !t.After(starts[n-1]) {
			return nil, fmt.Errorf("trace %s line %d: time %s is not after %s: %w", name, line, rec[0], starts[n-1].Format(time.RFC3339), carbon.ErrInvalid)
		}
		starts = append(starts, t.UTC())
		vals = append(vals, v)
	}
	if len(starts) == 0 {
		return nil, fmt.Errorf("trace %s: no rows: %w", name, carbon.ErrNoData)
	}
	out := make([]carbon.Reading, len(starts))
	for i := range starts {
		out[i] = carbon.Reading{Start: starts[i], GCO2PerKWh: vals[i], Kind: carbon.Actual, Signal: carbon.Average, Source: "trace:" + name}
	}
	fillDurations(out, nil)
	return out, nil
}

// parseIntensity parses a CSV intensity field: a finite number ≥ 0.
func parseIntensity(field string) (float64, bool) {
	v, err := strconv.ParseFloat(strings.TrimSpace(field), 64)
	return v, err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) && v >= 0
}

// fillDurations sets each reading without a duration to last until the
// next one; the last lasts as long as the one before (or an hour).
func fillDurations(rs []carbon.Reading, given []bool) {
	for i := range rs {
		if given != nil && given[i] {
			continue
		}
		switch {
		case i+1 < len(rs):
			rs[i].Duration = rs[i+1].Start.Sub(rs[i].Start)
		case i > 0:
			rs[i].Duration = rs[i].Start.Sub(rs[i-1].Start)
		default:
			rs[i].Duration = time.Hour
		}
	}
}

type jsonTrace struct {
	Region   string `json:"region"`
	Signal   string `json:"signal"`
	Readings []struct {
		Start      time.Time `json:"start"`
		Duration   string    `json:"duration"`
		GCO2PerKWh *float64  `json:"gco2_per_kwh"`
		Kind       string    `json:"kind"`
	} `json:"readings"`
}

func readJSONTrace(r io.Reader, name string) ([]carbon.Reading, error) {
	body, err := io.ReadAll(io.LimitReader(r, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("trace %s: %w", name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var jt jsonTrace
	if err := dec.Decode(&jt); err != nil {
		return nil, fmt.Errorf("trace %s: %w: %w", name, carbon.ErrInvalid, err)
	}
	signal := carbon.Average
	switch jt.Signal {
	case "", "average":
	case "marginal":
		signal = carbon.Marginal
	default:
		return nil, fmt.Errorf("trace %s: signal %q: want average or marginal: %w", name, jt.Signal, carbon.ErrInvalid)
	}
	out := make([]carbon.Reading, len(jt.Readings))
	given := make([]bool, len(jt.Readings))
	for i, jr := range jt.Readings {
		if jr.GCO2PerKWh == nil || *jr.GCO2PerKWh < 0 {
			return nil, fmt.Errorf("trace %s reading %d: gco2_per_kwh missing or negative: %w", name, i, carbon.ErrInvalid)
		}
		kind := carbon.Actual
		switch jr.Kind {
		case "", "actual":
		case "forecast":
			kind = carbon.Forecast
		default:
			return nil, fmt.Errorf("trace %s reading %d: kind %q: want actual or forecast: %w", name, i, jr.Kind, carbon.ErrInvalid)
		}
		if i > 0 && !jr.Start.After(out[i-1].Start) {
			return nil, fmt.Errorf("trace %s reading %d: start %s is not after the previous one: %w", name, i, jr.Start.Format(time.RFC3339), carbon.ErrInvalid)
		}
		out[i] = carbon.Reading{Start: jr.Start.UTC(), GCO2PerKWh: *jr.GCO2PerKWh, Kind: kind, Signal: signal, Source: "trace:" + name}
		if jr.Duration != "" {
			d, err := time.ParseDuration(jr.Duration)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("trace %s reading %d: duration %q: want a positive duration such as \"15m\": %w", name, i, jr.Duration, carbon.ErrInvalid)
			}
			out[i].Duration, given[i] = d, true
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("trace %s: no readings: %w", name, carbon.ErrNoData)
	}
	fillDurations(out, given)
	return out, nil
}

// Trace serves a recorded series as a provider, for tests, the simulator
// and as an offline fallback.
//
// With Replay set, a trace from another year stands in for the present:
// times are shifted by whole weeks (so weekday and time of day line up) to
// fall inside the trace, and the readings are labelled Assumed, since they
// are neither measured now nor a forecast. Without it, times outside the
// trace have no data.
type Trace struct {
	// Region, if set, is the only region the trace answers for.
	Region string
	// Replay maps the present into the trace by whole weeks.
	Replay bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	rs  []carbon.Reading
}

var (
	_ carbon.Provider        = (*Trace)(nil)
	_ carbon.HistoryProvider = (*Trace)(nil)
)

// NewTrace returns a provider over readings sorted by Start.
func NewTrace(region string, rs []carbon.Reading) *Trace {
	return &Trace{Region: region, rs: rs}
}

// Readings returns the trace's readings (shared; do not modify).
func (t *Trace) Readings() []carbon.Reading { return t.rs }

func (t *Trace) check(region string) error {
	if len(t.rs) == 0 {
		return fmt.Errorf("trace: empty: %w", carbon.ErrNoData)
	}
	if t.Region != "" && region != t.Region {
		return fmt.Errorf("trace of %s: region %q: %w", t.Region, region, carbon.ErrNoData)
	}
	return nil
}

// shift returns the offset (a whole number of weeks) that moves t into the
// trace when replaying, else 0.
func (t *Trace) shift(at time.Time) time.Duration {
	if !t.Replay {
		return 0
	}
	first, last := t.rs[0].Start, t.rs[len(t.rs)-1].End()
	const week = 7 * 24 * time.Hour
	if !at.Before(first) && at.Before(last) {
		return 0
	}
	// Land in the trace's first week; a trace shorter than a week may then
	// have no data, which is reported as such.
	off := at.Sub(first) / week * week
	if at.Add(-off).Before(first) {
		off -= week
	}
	return off
}

func (t *Trace) window(from, to time.Time, kind carbon.Kind) []carbon.Reading {
	off := t.shift(from)
	f, e := from.Add(-off), to.Add(-off)
	i := sort.Search(len(t.rs), func(i int) bool { return t.rs[i].End().After(f) })
	var out []carbon.Reading
	for ; i < len(t.rs) && t.rs[i].Start.Before(e); i++ {
		r := t.rs[i]
		r.Start = r.Start.Add(off)
		if off != 0 {
			r.Kind = carbon.Assumed
		} else if kind != 0 {
			r.Kind = kind
		}
		out = append(out, r)
	}
	return out
}

// Current returns the reading containing now.
func (t *Trace) Current(_ context.Context, region string) (carbon.Reading, error) {
	if err := t.check(region); err != nil {
		return carbon.Reading{}, err
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	at := now()
	rs := t.window(at, at.Add(time.Nanosecond), 0)
	if len(rs) == 0 {
		return carbon.Reading{}, fmt.Errorf("trace of %s: no reading at %s: %w", region, at.Format(time.RFC3339), carbon.ErrNoData)
	}
	return rs[0], nil
}

// Forecast returns the trace's readings overlapping [from, to) as they are
// recorded (a trace is its own perfect forecast; use a carbon.Forecaster
// over History for an honest one).
func (t *Trace) Forecast(_ context.Context, region string, from, to time.Time) ([]carbon.Reading, error) {
	if err := t.check(region); err != nil {
		return nil, err
	}
	rs := t.window(from, to, 0)
	if len(rs) == 0 {
		return nil, fmt.Errorf("trace of %s: nothing between %s and %s: %w", region, from.Format(time.RFC3339), to.Format(time.RFC3339), carbon.ErrNoData)
	}
	return rs, nil
}

// History returns the trace's readings overlapping [from, to).
func (t *Trace) History(ctx context.Context, region string, from, to time.Time) ([]carbon.Reading, error) {
	return t.Forecast(ctx, region, from, to)
}
