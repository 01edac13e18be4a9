package provider

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// ElectricityMapsConfig configures the Electricity Maps v3 client.
type ElectricityMapsConfig struct {
	HTTPConfig
	// Token is the API key, sent in the auth-token header.
	Token Secret
	// EmissionFactorType is "lifecycle" or "direct"; "" leaves Electricity
	// Maps' default (lifecycle). The shared traces are direct emissions.
	EmissionFactorType string
}

// ElectricityMaps reads average carbon intensity (gCO2eq/kWh, hourly) for
// a zone such as "DE" from the Electricity Maps v3 API: latest, history
// (the past 24 hours) and forecast.
type ElectricityMaps struct {
	c     *client
	token Secret
	eft   string
}

var (
	_ carbon.Provider        = (*ElectricityMaps)(nil)
	_ carbon.HistoryProvider = (*ElectricityMaps)(nil)
)

// NewElectricityMaps returns an Electricity Maps client.
func NewElectricityMaps(cfg ElectricityMapsConfig) (*ElectricityMaps, error) {
	if cfg.Token == "" {
		return nil, fmt.Errorf("electricitymaps: token is required: %w", carbon.ErrInvalid)
	}
	switch cfg.EmissionFactorType {
	case "", "lifecycle", "direct":
	default:
		return nil, fmt.Errorf("electricitymaps: emission factor type %q: want lifecycle or direct: %w", cfg.EmissionFactorType, carbon.ErrInvalid)
	}
	e := &ElectricityMaps{token: cfg.Token, eft: cfg.EmissionFactorType}
	c, err := newClient("electricitymaps", "https://api.electricitymap.org", 5, cfg.HTTPConfig, func() []string { return []string{e.token.Reveal()} })
	if err != nil {
		return nil, err
	}
	e.c = c
	return e, nil
}

// emPoint is one value as Electricity Maps sends it; carbonIntensity is
// null when the zone has no data for the hour.
type emPoint struct {
	Zone               string    `json:"zone"`
	CarbonIntensity    *float64  `json:"carbonIntensity"`
	Datetime           time.Time `json:"datetime"`
	UpdatedAt          string    `json:"updatedAt"`
	EmissionFactorType string    `json:"emissionFactorType"`
	IsEstimated        bool      `json:"isEstimated"`
	EstimationMethod   *string   `json:"estimationMethod"`
}

func (e *ElectricityMaps) get(ctx context.Context, path, zone string, out any) error {
	q := url.Values{"zone": {zone}}
	if e.eft != "" {
		q.Set("emissionFactorType", e.eft)
	}
	return e.c.get(ctx, path, q, func(r *http.Request) { r.Header.Set("auth-token", e.token.Reveal()) }, out)
}

func (e *ElectricityMaps) reading(p emPoint, kind carbon.Kind) carbon.Reading {
	src := "electricitymaps"
	if p.IsEstimated {
		// Estimated hours are labelled so that reports can tell them apart.
		src += ":estimated"
	}
	return carbon.Reading{Start: p.Datetime.UTC(), Duration: time.Hour, GCO2PerKWh: *p.CarbonIntensity, Kind: kind, Signal: carbon.Average, Source: src}
}

// Current returns the latest hour from /v3/carbon-intensity/latest.
func (e *ElectricityMaps) Current(ctx context.Context, zone string) (carbon.Reading, error) {
	var p emPoint
	if err := e.get(ctx, "/v3/carbon-intensity/latest", zone, &p); err != nil {
		return carbon.Reading{}, fmt.Errorf("electricitymaps latest %s: %w", zone, err)
	}
	if p.CarbonIntensity == nil {
		return carbon.Reading{}, fmt.Errorf("electricitymaps latest %s: carbonIntensity is null: %w", zone, carbon.ErrNoData)
	}
	return e.reading(p, carbon.Actual), nil
}

func (e *ElectricityMaps) series(ctx context.Context, what, zone string, from, to time.Time, kind carbon.Kind, pick func(*emSeries) []emPoint) ([]carbon.Reading, error) {
	var resp emSeries
	if err := e.get(ctx, "/v3/carbon-intensity/"+what, zone, &resp); err != nil {
		return nil, fmt.Errorf("electricitymaps %s %s: %w", what, zone, err)
	}
	var out []carbon.Reading
	for _, p := range pick(&resp) {
		if p.CarbonIntensity != nil {
			out = append(out, e.reading(p, kind))
		}
	}
	if out = carbon.Clip(out, from, to); len(out) == 0 {
		return nil, fmt.Errorf("electricitymaps %s %s: no values between %s and %s: %w", what, zone, from.Format(time.RFC3339), to.Format(time.RFC3339), carbon.ErrNoData)
	}
	return out, nil
}

type emSeries struct {
	Zone      string    `json:"zone"`
	History   []emPoint `json:"history"`
	Forecast  []emPoint `json:"forecast"`
	UpdatedAt string    `json:"updatedAt"`
}

// History returns hours overlapping [from, to) from
// /v3/carbon-intensity/history, which covers the past 24 hours.
func (e *ElectricityMaps) History(ctx context.Context, zone string, from, to time.Time) ([]carbon.Reading, error) {
	return e.series(ctx, "history", zone, from, to, carbon.Actual, func(s *emSeries) []emPoint { return s.History })
}

// Forecast returns hours overlapping [from, to) from
// /v3/carbon-intensity/forecast (a paid endpoint).
func (e *ElectricityMaps) Forecast(ctx context.Context, zone string, from, to time.Time) ([]carbon.Reading, error) {
	return e.series(ctx, "forecast", zone, from, to, carbon.Forecast, func(s *emSeries) []emPoint { return s.Forecast })
}
