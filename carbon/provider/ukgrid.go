package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// UKGridConfig configures the National Grid ESO carbon intensity client.
// The API needs no key.
type UKGridConfig struct {
	HTTPConfig
}

// UKGrid reads Great Britain's half-hourly average carbon intensity from
// api.carbonintensity.org.uk. Region "GB" (or "") is the national series,
// with actual values for past half hours and forecasts ahead; "GB-<n>" is
// DNO region n (1–17), for which the API publishes forecasts only.
type UKGrid struct {
	c *client
}

var _ carbon.Provider = (*UKGrid)(nil)

// NewUKGrid returns a National Grid carbon intensity client.
func NewUKGrid(cfg UKGridConfig) (*UKGrid, error) {
	c, err := newClient("ukgrid", "https://api.carbonintensity.org.uk", 2, cfg.HTTPConfig, nil)
	if err != nil {
		return nil, err
	}
	return &UKGrid{c: c}, nil
}

// ukTimeLayout is the API's time format in paths and bodies.
const ukTimeLayout = "2006-01-02T15:04Z"

type ukPeriod struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Intensity struct {
		Forecast *float64 `json:"forecast"`
		Actual   *float64 `json:"actual"`
		Index    string   `json:"index"`
	} `json:"intensity"`
}

type ukRegion struct {
	RegionID  int        `json:"regionid"`
	DNORegion string     `json:"dnoregion"`
	ShortName string     `json:"shortname"`
	Data      []ukPeriod `json:"data"`
}

// regionID returns 0 for the national series, or the DNO region id.
func (u *UKGrid) regionID(region string) (int, error) {
	switch region {
	case "", "GB", "gb", "national":
		return 0, nil
	}
	s, ok := strings.CutPrefix(strings.ToUpper(region), "GB-")
	if !ok {
		return 0, fmt.Errorf("ukgrid: region %q: want GB or GB-<1..17>: %w", region, carbon.ErrInvalid)
	}
	id, err := strconv.Atoi(s)
	if err != nil || id < 1 || id > 17 {
		return 0, fmt.Errorf("ukgrid: region %q: id must be 1..17: %w", region, carbon.ErrInvalid)
	}
	return id, nil
}

func (u *UKGrid) readings(region string, ps []ukPeriod) ([]carbon.Reading, error) {
	var out []carbon.Reading
	for _, p := range ps {
		from, err1 := time.Parse(ukTimeLayout, p.From)
		to, err2 := time.Parse(ukTimeLayout, p.To)
		if err1 != nil || err2 != nil || !to.After(from) {
			return nil, fmt.Errorf("ukgrid %s: period %q–%q: %w", region, p.From, p.To, carbon.ErrUnavailable)
		}
		r := carbon.Reading{Start: from, Duration: to.Sub(from), Signal: carbon.Average, Source: "ukgrid"}
		switch {
		case p.Intensity.Actual != nil:
			r.GCO2PerKWh, r.Kind = *p.Intensity.Actual, carbon.Actual
		case p.Intensity.Forecast != nil:
			r.GCO2PerKWh, r.Kind = *p.Intensity.Forecast, carbon.Forecast
		default:
			continue // neither published yet: missing, not zero
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ukgrid %s: no values: %w", region, carbon.ErrNoData)
	}
	return out, nil
}

// regional decodes a regional body whose "data" is an array of regions
// (/regional/regionid/{id}) or one region (the fw24h form).
func regional(raw json.RawMessage) ([]ukPeriod, error) {
	raw = bytes.TrimSpace(raw)
	var regions []ukRegion
	if len(raw) > 0 && raw[0] == '{' {
		var one ukRegion
		if err := json.Unmarshal(raw, &one); err != nil {
			return nil, err
		}
		regions = []ukRegion{one}
	} else if err := json.Unmarshal(raw, &regions); err != nil {
		return nil, err
	}
	var ps []ukPeriod
	for _, r := range regions {
		ps = append(ps, r.Data...)
	}
	return ps, nil
}

func (u *UKGrid) fetch(ctx context.Context, region, path string, id int) ([]carbon.Reading, error) {
	var resp struct {
		Data json.RawMessage `json:"data"`
	}
	if err := u.c.get(ctx, path, url.Values{}, nil, &resp); err != nil {
		return nil, fmt.Errorf("ukgrid %s: %w", region, err)
	}
	var ps []ukPeriod
	var err error
	if id == 0 {
		err = json.Unmarshal(resp.Data, &ps)
	} else {
		ps, err = regional(resp.Data)
	}
	if err != nil {
		return nil, fmt.Errorf("ukgrid %s GET %s: decode data: %w: %w", region, path, carbon.ErrUnavailable, err)
	}
	return u.readings(region, ps)
}

// Current returns the half hour in progress: the actual value once
// published, else the forecast.
func (u *UKGrid) Current(ctx context.Context, region string) (carbon.Reading, error) {
	id, err := u.regionID(region)
	if err != nil {
		return carbon.Reading{}, err
	}
	path := "/intensity"
	if id > 0 {
		path = "/regional/regionid/" + strconv.Itoa(id)
	}
	rs, err := u.fetch(ctx, region, path, id)
	if err != nil {
		return carbon.Reading{}, err
	}
	now := u.c.now()
	for _, r := range rs {
		if r.Contains(now) {
			return r, nil
		}
	}
	return rs[len(rs)-1], nil
}

// Forecast returns half hours overlapping [from, to), 24 hours per request,
// up to three requests (the API forecasts about 48 hours ahead).
func (u *UKGrid) Forecast(ctx context.Context, region string, from, to time.Time) ([]carbon.Reading, error) {
	id, err := u.regionID(region)
	if err != nil {
		return nil, err
	}
	var out []carbon.Reading
	at := from.UTC().Truncate(30 * time.Minute)
	for i := 0; i < 3 && at.Before(to); i++ {
		path := "/intensity/" + at.Format(ukTimeLayout) + "/fw24h"
		if id > 0 {
			path = "/regional/intensity/" + at.Format(ukTimeLayout) + "/fw24h/regionid/" + strconv.Itoa(id)
		}
		rs, err := u.fetch(ctx, region, path, id)
		if err != nil {
			if len(out) > 0 {
				break // a shorter horizon is still an answer
			}
			return nil, err
		}
		for _, r := range rs {
			if len(out) == 0 || r.Start.After(out[len(out)-1].Start) {
				out = append(out, r)
			}
		}
		next := out[len(out)-1].End()
		if !next.After(at) {
			break
		}
		at = next
	}
	if out = carbon.Clip(out, from, to); len(out) == 0 {
		return nil, fmt.Errorf("ukgrid forecast %s: nothing between %s and %s: %w", region, from.Format(time.RFC3339), to.Format(time.RFC3339), carbon.ErrNoData)
	}
	return out, nil
}
