package provider

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// ReadForecastArchive reads forecasts as a provider issued them, for
// carbon.Archive: CSV with the header issued,time,gco2_per_kwh, where
// issued is when the forecast was published and time the start of the
// interval it forecasts (both RFC 3339). Rows of one issue share issued
// and are in time order; issues are in issued order. Each interval lasts
// until the next row of its issue (the last as long as the one before).
// name labels errors and the readings' source.
func ReadForecastArchive(r io.Reader, name string) ([]carbon.Issue, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // the header is checked by name below
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("forecast archive %s: header: %w: %w", name, carbon.ErrInvalid, err)
	}
	if len(head) != 3 || strings.TrimSpace(head[0]) != "issued" || strings.TrimSpace(head[1]) != "time" || strings.TrimSpace(head[2]) != "gco2_per_kwh" {
		return nil, fmt.Errorf("forecast archive %s: header %q: want issued,time,gco2_per_kwh: %w", name, strings.Join(head, ","), carbon.ErrInvalid)
	}
	cr.FieldsPerRecord = 3
	var out []carbon.Issue
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("forecast archive %s: %w: %w", name, carbon.ErrInvalid, err)
		}
		issued, err := time.Parse(time.RFC3339, strings.TrimSpace(rec[0]))
		if err != nil {
			return nil, fmt.Errorf("forecast archive %s line %d: issued %q: %w", name, line, rec[0], carbon.ErrInvalid)
		}
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(rec[1]))
		if err != nil {
			return nil, fmt.Errorf("forecast archive %s line %d: time %q: %w", name, line, rec[1], carbon.ErrInvalid)
		}
		v, ok := parseIntensity(rec[2])
		if !ok {
			return nil, fmt.Errorf("forecast archive %s line %d: intensity %q: want a finite number ≥ 0: %w", name, line, rec[2], carbon.ErrInvalid)
		}
		issued, t = issued.UTC(), t.UTC()
		n := len(out)
		switch {
		case n == 0 || issued.After(out[n-1].Issued):
			out = append(out, carbon.Issue{Issued: issued})
			n++
		case issued.Before(out[n-1].Issued):
			return nil, fmt.Errorf("forecast archive %s line %d: issued %s is before %s: %w", name, line, rec[0], out[n-1].Issued.Format(time.RFC3339), carbon.ErrInvalid)
		}
		rs := out[n-1].Readings
		if m := len(rs); m > 0 && !t.After(rs[m-1].Start) {
			return nil, fmt.Errorf("forecast archive %s line %d: time %s is not after %s in the issue of %s: %w", name, line, rec[1], rs[m-1].Start.Format(time.RFC3339), rec[0], carbon.ErrInvalid)
		}
		out[n-1].Readings = append(rs, carbon.Reading{Start: t, GCO2PerKWh: v, Kind: carbon.Forecast, Signal: carbon.Average, Source: "archive:" + name})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("forecast archive %s: no rows: %w", name, carbon.ErrNoData)
	}
	for _, is := range out {
		fillDurations(is.Readings, nil)
	}
	return out, nil
}
