package artifact

import (
	"strings"
	"testing"
)

const schedBase = "name = \"rep\"\nversion = \"1.0.0\"\nwasm = \"rep.wasm\"\n[[routes]]\npath = \"/reports\"\n[[routes]]\nhost = \"batch.example.com\"\npath = \"/batch\"\n" +
	"[deferrable]\nmax_delay = \"12h\"\nexpected_runtime = \"1h\"\n"

// TestSchedules: [[deferrable.schedules]] entries parse, find their
// route, and every mistake is reported naming the entry and the field.
func TestSchedules(t *testing.T) {
	m, err := ParseManifest([]byte(schedBase + "[[deferrable.schedules]]\ncron = \"0 2 * * *\"\nwindow = \"6h\"\npath = \"/reports/rebuild?full=1\"\nbody = \"{}\"\nheaders = { Content-Type = \"application/json\" }\n" +
		"[[deferrable.schedules]]\ncron = \"@hourly\"\nwindow = \"1h\"\nmethod = \"PUT\"\npath = \"/batch/x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := m.Deferrable.Schedules
	if len(s) != 2 || s[0].Cron != "0 2 * * *" || s[0].Window.String() != "6h0m0s" || s[0].Headers["Content-Type"] != "application/json" {
		t.Fatalf("schedules: %+v", s)
	}
	if method, path, r, ok := m.ScheduleRequest(s[0]); !ok || method != "POST" || path != "/reports/rebuild" || r.Path != "/reports" {
		t.Fatalf("first: %s %s %+v %v", method, path, r, ok)
	}
	if method, _, r, ok := m.ScheduleRequest(s[1]); !ok || method != "PUT" || r.Host != "batch.example.com" {
		t.Fatalf("second: %s %+v %v", method, r, ok)
	}

	for _, tc := range []struct{ entry, want string }{
		{"cron = \"0 2 * *\"\nwindow = \"6h\"\npath = \"/reports\"", `deferrable.schedules[0].cron: cron "0 2 * *": want 5 fields (minute hour day-of-month month day-of-week), got 4: invalid cron expression`},
		{"cron = \"0 25 * * *\"\nwindow = \"6h\"\npath = \"/reports\"", `deferrable.schedules[0].cron: cron "0 25 * * *": hour field "25": value "25": want 0 to 23`},
		{"window = \"6h\"\npath = \"/reports\"", `deferrable.schedules[0].cron: required`},
		{"cron = \"@daily\"\npath = \"/reports\"", `deferrable.schedules[0].window 0s: must be positive`},
		{"cron = \"@daily\"\nwindow = \"30m\"\npath = \"/reports\"", `deferrable.schedules[0].window 30m0s: shorter than expected_runtime 1h0m0s`},
		{"cron = \"@daily\"\nwindow = \"200h\"\npath = \"/reports\"", `deferrable.schedules[0].window 200h0m0s: exceeds the maximum 168h0m0s`},
		{"cron = \"@daily\"\nwindow = \"6h\"\npath = \"/elsewhere\"", `deferrable.schedules[0].path "/elsewhere": under none of the app's routes`},
		{"cron = \"@daily\"\nwindow = \"6h\"\npath = \"reports\"", `deferrable.schedules[0].path "reports": want a path starting with "/"`},
		{"cron = \"@daily\"\nwindow = \"6h\"\npath = \"/reports\"\nmethod = \"post\"", `deferrable.schedules[0].method "post": want POST, PUT, PATCH, DELETE or GET`},
		{"cron = \"@daily\"\nwindow = \"6h\"\npath = \"/reports\"\nhost = \"*.example.com\"", `deferrable.schedules[0].host "*.example.com": want an exact host name`},
		{"cron = \"@daily\"\nwindow = \"6h\"\npath = \"/reports\"\nheaders = { \"Bad Header\" = \"x\" }", `deferrable.schedules[0].headers "Bad Header": not a valid header`},
		{"cron = \"@daily\"\nwindow = \"6h\"\npath = \"/reports\"\nbody = \"" + strings.Repeat("x", MaxScheduleBody+1) + "\"", `deferrable.schedules[0].body: 16385 bytes, at most 16384`},
	} {
		_, err := ParseManifest([]byte(schedBase + "[[deferrable.schedules]]\n" + tc.entry + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\n got %v\nwant %s", tc.entry, err, tc.want)
		}
	}
}
