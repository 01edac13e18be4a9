package provider

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tern-edge/tern/carbon"
)

func TestReadForecastArchive(t *testing.T) {
	const good = `issued,time,gco2_per_kwh
2020-06-01T00:00:00Z,2020-06-01T00:00:00Z,100
2020-06-01T00:00:00Z,2020-06-01T00:30:00Z,110
2020-06-01T00:00:00Z,2020-06-01T01:00:00Z,120
2020-06-01T06:00:00+02:00,2020-06-01T05:00:00Z,90
`
	issues, err := ReadForecastArchive(strings.NewReader(good), "fc.csv")
	if err != nil {
		t.Fatal(err)
	}
	if len(issues) != 2 || len(issues[0].Readings) != 3 || len(issues[1].Readings) != 1 {
		t.Fatalf("issues = %+v, want 2 issues of 3 and 1 rows", issues)
	}
	first := issues[0].Readings
	if first[0].Duration != 30*time.Minute || first[2].Duration != 30*time.Minute || first[2].GCO2PerKWh != 120 {
		t.Fatalf("first issue = %+v, want half-hour intervals", first)
	}
	if !issues[1].Issued.Equal(time.Date(2020, 6, 1, 4, 0, 0, 0, time.UTC)) || issues[1].Readings[0].Duration != time.Hour {
		t.Fatalf("second issue = %+v, want issued 04:00 UTC, one hour", issues[1])
	}
	if r := first[0]; r.Kind != carbon.Forecast || r.Source != "archive:fc.csv" {
		t.Fatalf("reading labelled %v %q, want a forecast from archive:fc.csv", r.Kind, r.Source)
	}

	bad := []struct{ name, csv, want string }{
		{"header", "time,gco2_per_kwh\n2020-06-01T00:00:00Z,1\n", "want issued,time,gco2_per_kwh"},
		{"issued backwards", "issued,time,gco2_per_kwh\n2020-06-01T01:00:00Z,2020-06-01T01:00:00Z,1\n2020-06-01T00:00:00Z,2020-06-01T02:00:00Z,1\n", "line 3: issued 2020-06-01T00:00:00Z is before"},
		{"time backwards", "issued,time,gco2_per_kwh\n2020-06-01T00:00:00Z,2020-06-01T02:00:00Z,1\n2020-06-01T00:00:00Z,2020-06-01T01:00:00Z,1\n", "line 3: time 2020-06-01T01:00:00Z is not after"},
		{"negative", "issued,time,gco2_per_kwh\n2020-06-01T00:00:00Z,2020-06-01T00:00:00Z,-1\n", `line 2: intensity "-1"`},
		{"bad time", "issued,time,gco2_per_kwh\nyesterday,2020-06-01T00:00:00Z,1\n", `line 2: issued "yesterday"`},
		{"empty", "issued,time,gco2_per_kwh\n", "no rows"},
	}
	for _, tc := range bad {
		_, err := ReadForecastArchive(strings.NewReader(tc.csv), "fc.csv")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "fc.csv") {
			t.Errorf("%s: %v, want an error naming fc.csv and containing %q", tc.name, err, tc.want)
		}
		if err != nil && !errors.Is(err, carbon.ErrInvalid) && !errors.Is(err, carbon.ErrNoData) {
			t.Errorf("%s: %v wraps neither ErrInvalid nor ErrNoData", tc.name, err)
		}
	}
}
