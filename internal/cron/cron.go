// Package cron parses standard five-field cron expressions and finds the
// times they name.
//
// An expression is "minute hour day-of-month month day-of-week", each
// field a comma-separated list of "*", a value, a range "a-b", or any of
// those with a step "/n" ("*/15", "1-5/2", "10/20" meaning 10 to the
// field's maximum every 20). Months may be named JAN to DEC and weekdays
// SUN to SAT (case-insensitive); weekday 7 is Sunday, as is 0. The macros
// @yearly (@annually), @monthly, @weekly, @daily (@midnight) and @hourly
// stand for their usual expressions. As in Vixie cron, when both
// day-of-month and day-of-week are restricted (neither starts with "*"),
// a day matches if either does.
//
// Times are matched in UTC, to the minute.
package cron

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrSyntax is wrapped by every error Parse returns.
var ErrSyntax = errors.New("invalid cron expression")

// Schedule is a parsed cron expression. The zero value matches nothing.
type Schedule struct {
	expr                     string
	minute, hour, dom, month uint64
	dow                      uint64
	domStar, dowStar         bool
}

// String returns the expression the schedule was parsed from.
func (s Schedule) String() string { return s.expr }

type field struct {
	name     string
	min, max int
	names    []string // names[i] is value min+i
}

var fields = [5]field{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day-of-month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}},
	{name: "day-of-week", min: 0, max: 7, names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}},
}

var macros = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// maxExpr bounds an expression's length; real ones are a few dozen bytes.
const maxExpr = 256

// Parse parses a five-field expression or a macro. Errors name the field
// and the part that is wrong, and wrap ErrSyntax. An expression that
// matches no time at all ("0 0 30 2 *") is an error too.
func Parse(expr string) (Schedule, error) {
	if len(expr) > maxExpr {
		return Schedule{}, fmt.Errorf("cron expression of %d bytes: longer than %d: %w", len(expr), maxExpr, ErrSyntax)
	}
	s := Schedule{expr: expr}
	text := strings.TrimSpace(expr)
	if m, ok := macros[strings.ToLower(text)]; ok {
		text = m
	} else if strings.HasPrefix(text, "@") {
		return Schedule{}, fmt.Errorf("cron %q: unknown macro (want @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly): %w", expr, ErrSyntax)
	}
	parts := strings.Fields(text)
	if len(parts) != 5 {
		return Schedule{}, fmt.Errorf("cron %q: want 5 fields (minute hour day-of-month month day-of-week), got %d: %w", expr, len(parts), ErrSyntax)
	}
	var bits [5]uint64
	for i, p := range parts {
		b, err := fields[i].parse(p)
		if err != nil {
			return Schedule{}, fmt.Errorf("cron %q: %s field %q: %v: %w", expr, fields[i].name, p, err, ErrSyntax)
		}
		bits[i] = b
	}
	s.minute, s.hour, s.dom, s.month, s.dow = bits[0], bits[1], bits[2], bits[3], bits[4]
	if s.dow&(1<<7) != 0 {
		s.dow |= 1 // 7 is Sunday
	}
	s.domStar, s.dowStar = strings.HasPrefix(parts[2], "*"), strings.HasPrefix(parts[4], "*")
	// Every day-of-month exists in some month of a leap-year cycle
	// unless the months chosen are too short for it.
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return Schedule{}, fmt.Errorf("cron %q: matches no date (day-of-month never falls in the months given): %w", expr, ErrSyntax)
	}
	return s, nil
}

func (f field) parse(s string) (uint64, error) {
	var bits uint64
	for item := range strings.SplitSeq(s, ",") {
		if item == "" {
			return 0, errors.New("empty list item")
		}
		rng, stepText, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 || n > f.max-f.min+1 {
				return 0, fmt.Errorf("step %q: want a whole number from 1 to %d", stepText, f.max-f.min+1)
			}
			step = n
		}
		lo, hi := f.min, f.max
		switch {
		case rng == "*":
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if lo, err = f.value(a); err != nil {
				return 0, err
			}
			if hi, err = f.value(b); err != nil {
				return 0, err
			}
			if hi < lo {
				return 0, fmt.Errorf("range %q: end before start", rng)
			}
		default:
			v, err := f.value(rng)
			if err != nil {
				return 0, err
			}
			lo, hi = v, v
			if hasStep {
				hi = f.max
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << v
		}
	}
	return bits, nil
}

func (f field) value(s string) (int, error) {
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < f.min || v > f.max {
		if f.names != nil {
			return 0, fmt.Errorf("value %q: want %d to %d or %s to %s", s, f.min, f.max, f.names[0], f.names[len(f.names)-1])
		}
		return 0, fmt.Errorf("value %q: want %d to %d", s, f.min, f.max)
	}
	return v, nil
}

// Matches reports whether t (in UTC, to the minute) is one of the
// schedule's times.
func (s Schedule) Matches(t time.Time) bool {
	t = t.UTC()
	return s.month&(1<<int(t.Month())) != 0 && s.dayMatches(t) && s.hour&(1<<t.Hour()) != 0 && s.minute&(1<<t.Minute()) != 0
}

func (s Schedule) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<t.Day()) != 0
	dow := s.dow&(1<<int(t.Weekday())) != 0
	if s.domStar || s.dowStar {
		return dom && dow
	}
	return dom || dow
}

// searchYears bounds Next: every valid expression matches within a
// leap-year cycle.
const searchYears = 8

// Next returns the first of the schedule's times strictly after t, in
// UTC, or the zero time when there is none within eight years (only for
// the zero Schedule).
func (s Schedule) Next(t time.Time) time.Time {
	t = t.UTC().Truncate(time.Minute).Add(time.Minute)
	limit := t.AddDate(searchYears, 0, 0)
	for t.Before(limit) {
		y, mo, d := t.Date()
		switch {
		case s.month&(1<<int(mo)) == 0:
			t = time.Date(y, mo+1, 1, 0, 0, 0, 0, time.UTC)
		case !s.dayMatches(t):
			t = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
		case s.hour&(1<<t.Hour()) == 0:
			t = time.Date(y, mo, d, t.Hour()+1, 0, 0, 0, time.UTC)
		case s.minute&(1<<t.Minute()) == 0:
			t = t.Add(time.Minute)
		default:
			return t
		}
	}
	return time.Time{}
}
