package cron

import (
	"errors"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNext(t *testing.T) {
	for _, tc := range []struct {
		expr, from string
		want       []string
	}{
		{"0 2 * * *", "2026-11-24T01:59:00Z", []string{"2026-11-24T02:00:00Z", "2026-11-25T02:00:00Z"}},
		{"0 2 * * *", "2026-11-24T02:00:00Z", []string{"2026-11-25T02:00:00Z"}},
		{"0 2 * * *", "2026-11-24T01:59:30Z", []string{"2026-11-24T02:00:00Z"}},
		{"*/15 * * * *", "2026-11-24T10:07:00Z", []string{"2026-11-24T10:15:00Z", "2026-11-24T10:30:00Z", "2026-11-24T10:45:00Z", "2026-11-24T11:00:00Z"}},
		{"5,35 1-3 * * *", "2026-11-24T03:40:00Z", []string{"2026-11-25T01:05:00Z", "2026-11-25T01:35:00Z", "2026-11-25T02:05:00Z"}},
		{"0 0 * * MON-FRI", "2026-11-27T12:00:00Z", []string{"2026-11-30T00:00:00Z"}}, // Friday noon → Monday
		{"0 0 * * 7", "2026-11-24T00:00:00Z", []string{"2026-11-29T00:00:00Z"}},       // 7 is Sunday
		{"0 0 1 jan *", "2026-11-24T00:00:00Z", []string{"2027-01-01T00:00:00Z"}},
		{"0 0 29 2 *", "2026-03-01T00:00:00Z", []string{"2028-02-29T00:00:00Z"}},
		{"0 0 31 * *", "2026-04-01T00:00:00Z", []string{"2026-05-31T00:00:00Z"}},
		{"0 12 13 * FRI", "2026-11-01T00:00:00Z", []string{"2026-11-06T12:00:00Z", "2026-11-13T12:00:00Z"}}, // either day field
		{"30 4 1-7 * *", "2026-11-07T05:00:00Z", []string{"2026-12-01T04:30:00Z"}},
		{"10/20 * * * *", "2026-11-24T00:00:00Z", []string{"2026-11-24T00:10:00Z", "2026-11-24T00:30:00Z", "2026-11-24T00:50:00Z", "2026-11-24T01:10:00Z"}},
		{"1-10/4 0 * * *", "2026-11-24T00:00:00Z", []string{"2026-11-24T00:01:00Z", "2026-11-24T00:05:00Z", "2026-11-24T00:09:00Z", "2026-11-25T00:01:00Z"}},
		{"@hourly", "2026-11-24T00:00:00Z", []string{"2026-11-24T01:00:00Z"}},
		{"@weekly", "2026-11-24T00:00:00Z", []string{"2026-11-29T00:00:00Z"}},
		{"@Daily", "2026-12-31T23:59:00Z", []string{"2027-01-01T00:00:00Z"}},
		{"0 2 * * *", "2026-11-24T03:30:00+02:00", []string{"2026-11-24T02:00:00Z"}}, // 01:30 UTC
	} {
		s, err := Parse(tc.expr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.expr, err)
		}
		from := at(tc.from)
		for _, w := range tc.want {
			got := s.Next(from)
			if !got.Equal(at(w)) {
				t.Fatalf("%q after %s = %s, want %s", tc.expr, from.Format(time.RFC3339), got.Format(time.RFC3339), w)
			}
			if !s.Matches(got) {
				t.Fatalf("%q: Next gave %s, which it does not match", tc.expr, got)
			}
			from = got
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{"0 2 * *", `cron "0 2 * *": want 5 fields (minute hour day-of-month month day-of-week), got 4: invalid cron expression`},
		{"60 * * * *", `cron "60 * * * *": minute field "60": value "60": want 0 to 59: invalid cron expression`},
		{"* 24 * * *", `cron "* 24 * * *": hour field "24": value "24": want 0 to 23: invalid cron expression`},
		{"* * 0 * *", `cron "* * 0 * *": day-of-month field "0": value "0": want 1 to 31: invalid cron expression`},
		{"* * * foo *", `cron "* * * foo *": month field "foo": value "foo": want 1 to 12 or JAN to DEC: invalid cron expression`},
		{"* * * * 8", `cron "* * * * 8": day-of-week field "8": value "8": want 0 to 7 or SUN to SAT: invalid cron expression`},
		{"*/0 * * * *", `cron "*/0 * * * *": minute field "*/0": step "0": want a whole number from 1 to 60: invalid cron expression`},
		{"5-1 * * * *", `cron "5-1 * * * *": minute field "5-1": range "5-1": end before start: invalid cron expression`},
		{"1,,2 * * * *", `cron "1,,2 * * * *": minute field "1,,2": empty list item: invalid cron expression`},
		{"0 0 30 2 *", `cron "0 0 30 2 *": matches no date (day-of-month never falls in the months given): invalid cron expression`},
		{"@reboot", `cron "@reboot": unknown macro (want @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly): invalid cron expression`},
		{"", `cron "": want 5 fields (minute hour day-of-month month day-of-week), got 0: invalid cron expression`},
	} {
		_, err := Parse(tc.expr)
		if err == nil || err.Error() != tc.want || !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v\nwant %s", tc.expr, err, tc.want)
		}
	}
}

// FuzzParse: Parse never panics, and an accepted expression's next time
// lies after the start and matches it.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0 2 * * *", "*/15 1-5 1,15 JAN-MAR mon-fri", "@daily", "0 0 29 2 *", "1-10/4 0 * * 7", "5/7 */3 31 * *"} {
		f.Add(s, int64(1795000000))
	}
	f.Fuzz(func(t *testing.T, expr string, unix int64) {
		s, err := Parse(expr)
		if err != nil {
			return
		}
		from := time.Unix(unix%(1<<34), 0)
		next := s.Next(from)
		if next.IsZero() {
			t.Fatalf("%q: no time after %s", expr, from)
		}
		if !next.After(from) || !s.Matches(next) {
			t.Fatalf("%q after %s: %s", expr, from, next)
		}
	})
}
