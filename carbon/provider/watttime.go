package provider

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	gosync "sync"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// WattTimeConfig configures the WattTime v3 client.
type WattTimeConfig struct {
	HTTPConfig
	// Username and Password are the WattTime account's; /login trades them
	// for a bearer token.
	Username string
	Password Secret
	// SignalType is the signal to request; "" means "co2_moer".
	SignalType string
}

// WattTime reads marginal emissions (MOER) from the WattTime v3 API.
//
// Its values are marginal, not average, intensity: the emissions of the
// generator that responds to extra load. They are returned as
// carbon.Marginal readings, converted from lbs/MWh to g/kWh. Current uses
// the first point of the forecast, which WattTime publishes every five
// minutes and which is the value it calls real time; it is labelled
// carbon.Forecast because that is what it is.
type WattTime struct {
	c      *client
	user   string
	pass   Secret
	signal string

	mu      gosync.Mutex
	token   Secret
	tokenAt time.Time
}

var _ carbon.Provider = (*WattTime)(nil)

// wattTimeTokenTTL is how long a login token is reused; WattTime's expire
// after 30 minutes.
const wattTimeTokenTTL = 25 * time.Minute

// NewWattTime returns a WattTime client.
func NewWattTime(cfg WattTimeConfig) (*WattTime, error) {
	if cfg.Username == "" || cfg.Password == "" {
		return nil, fmt.Errorf("watttime: username and password are required: %w", carbon.ErrInvalid)
	}
	w := &WattTime{user: cfg.Username, pass: cfg.Password, signal: cfg.SignalType}
	if w.signal == "" {
		w.signal = "co2_moer"
	}
	// 3,000 requests per 5 minutes is WattTime's published limit; stay below.
	c, err := newClient("watttime", "https://api.watttime.org", 8, cfg.HTTPConfig, w.secrets)
	if err != nil {
		return nil, err
	}
	w.c = c
	return w, nil
}

func (w *WattTime) secrets() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return []string{w.pass.Reveal(), w.token.Reveal()}
}

// login returns a valid token, logging in when there is none or it is old.
func (w *WattTime) login(ctx context.Context, force bool) (Secret, error) {
	now := w.c.now()
	w.mu.Lock()
	tok, at := w.token, w.tokenAt
	w.mu.Unlock()
	if !force && tok != "" && now.Sub(at) < wattTimeTokenTTL {
		return tok, nil
	}
	var resp struct {
		Token string `json:"token"`
	}
	err := w.c.get(ctx, "/login", nil, func(r *http.Request) { r.SetBasicAuth(w.user, w.pass.Reveal()) }, &resp)
	if err != nil {
		return "", fmt.Errorf("watttime login as %s: %w", w.user, err)
	}
	if resp.Token == "" {
		return "", fmt.Errorf("watttime login as %s: no token in response: %w", w.user, carbon.ErrUnavailable)
	}
	w.mu.Lock()
	w.token, w.tokenAt = Secret(resp.Token), now
	w.mu.Unlock()
	return Secret(resp.Token), nil
}

// call performs an authenticated GET, logging in again once on a 401 (the
// token may have expired early).
func (w *WattTime) call(ctx context.Context, path string, q url.Values, out any) error {
	for attempt := 0; ; attempt++ {
		tok, err := w.login(ctx, attempt > 0)
		if err != nil {
			return err
		}
		err = w.c.get(ctx, path, q, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok.Reveal()) }, out)
		var se *StatusError
		if attempt == 0 && errors.As(err, &se) && se.Status == http.StatusUnauthorized {
			continue
		}
		return err
	}
}

type wattTimeResponse struct {
	Data []struct {
		PointTime time.Time `json:"point_time"`
		Value     *float64  `json:"value"`
	} `json:"data"`
	Meta struct {
		Region                  string `json:"region"`
		SignalType              string `json:"signal_type"`
		Units                   string `json:"units"`
		DataPointPeriodSeconds  int    `json:"data_point_period_seconds"`
		GeneratedAt             string `json:"generated_at"`
		GeneratedAtPeriodSecond int    `json:"generated_at_period_seconds"`
	} `json:"meta"`
}

// lbsPerMWhToGPerKWh converts WattTime's lbs CO2/MWh to g CO2/kWh.
const lbsPerMWhToGPerKWh = 0.45359237

func (w *WattTime) readings(region string, resp *wattTimeResponse) ([]carbon.Reading, error) {
	var factor float64
	switch resp.Meta.Units {
	case "lbs_co2_per_mwh":
		factor = lbsPerMWhToGPerKWh
	case "g_co2_per_kwh":
		factor = 1
	default:
		return nil, fmt.Errorf("watttime %s: units %q are not an intensity: %w", region, resp.Meta.Units, carbon.ErrUnavailable)
	}
	period := time.Duration(resp.Meta.DataPointPeriodSeconds) * time.Second
	if period <= 0 {
		period = 5 * time.Minute
	}
	var out []carbon.Reading
	for _, d := range resp.Data {
		if d.Value == nil || math.IsNaN(*d.Value) {
			continue
		}
		out = append(out, carbon.Reading{Start: d.PointTime.UTC(), Duration: period, GCO2PerKWh: *d.Value * factor, Kind: carbon.Forecast, Signal: carbon.Marginal, Source: "watttime"})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("watttime %s: no data points: %w", region, carbon.ErrNoData)
	}
	return out, nil
}

func (w *WattTime) forecast(ctx context.Context, region string, hours int) ([]carbon.Reading, error) {
	q := url.Values{"region": {region}, "signal_type": {w.signal}, "horizon_hours": {strconv.Itoa(hours)}}
	var resp wattTimeResponse
	if err := w.call(ctx, "/v3/forecast", q, &resp); err != nil {
		return nil, fmt.Errorf("watttime forecast %s: %w", region, err)
	}
	return w.readings(region, &resp)
}

// Current returns the MOER now: the forecast point containing now, else
// the first point.
func (w *WattTime) Current(ctx context.Context, region string) (carbon.Reading, error) {
	rs, err := w.forecast(ctx, region, 1)
	if err != nil {
		return carbon.Reading{}, err
	}
	now := w.c.now()
	for _, r := range rs {
		if r.Contains(now) {
			return r, nil
		}
	}
	return rs[0], nil
}

// Forecast returns MOER forecast points overlapping [from, to); WattTime
// forecasts at most 72 hours ahead.
func (w *WattTime) Forecast(ctx context.Context, region string, from, to time.Time) ([]carbon.Reading, error) {
	hours := int(math.Ceil(to.Sub(w.c.now()).Hours()))
	hours = min(max(hours, 1), 72)
	rs, err := w.forecast(ctx, region, hours)
	if err != nil {
		return nil, err
	}
	if rs = carbon.Clip(rs, from, to); len(rs) == 0 {
		return nil, fmt.Errorf("watttime forecast %s: nothing between %s and %s: %w", region, from.Format(time.RFC3339), to.Format(time.RFC3339), carbon.ErrNoData)
	}
	return rs, nil
}

// Index is WattTime's relative signal: where the current MOER sits among
// the region's values of the recent past, as a percentile (0 cleanest,
// 100 dirtiest). It is not an intensity.
type Index struct {
	Time       time.Time
	Percentile float64
	Region     string
	SignalType string
}

// SignalIndex returns the current percentile from /v3/signal-index, which
// every account may read (the forecast needs a subscription).
func (w *WattTime) SignalIndex(ctx context.Context, region string) (Index, error) {
	q := url.Values{"region": {region}, "signal_type": {w.signal}}
	var resp wattTimeResponse
	if err := w.call(ctx, "/v3/signal-index", q, &resp); err != nil {
		return Index{}, fmt.Errorf("watttime signal index %s: %w", region, err)
	}
	if len(resp.Data) == 0 || resp.Data[0].Value == nil {
		return Index{}, fmt.Errorf("watttime signal index %s: no data points: %w", region, carbon.ErrNoData)
	}
	return Index{Time: resp.Data[0].PointTime.UTC(), Percentile: *resp.Data[0].Value, Region: resp.Meta.Region, SignalType: resp.Meta.SignalType}, nil
}
