package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// replay is an httptest server answering each path from a fixture file
// (or a status), recording what it was asked.
type replay struct {
	t      *testing.T
	mu     gosync.Mutex
	routes map[string]route
	hits   map[string]int
	seen   []*http.Request
}

type route struct {
	status  int
	fixture string
	header  map[string]string
	check   func(*http.Request) int // optional: returns a status to answer instead
}

func newReplay(t *testing.T, routes map[string]route) (*replay, *httptest.Server) {
	r := &replay{t: t, routes: routes, hits: map[string]int{}}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv
}

func (r *replay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	rt, ok := r.routes[req.URL.Path]
	r.hits[req.URL.Path]++
	r.seen = append(r.seen, req)
	r.mu.Unlock()
	if !ok {
		http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		return
	}
	status := rt.status
	if rt.check != nil {
		if s := rt.check(req); s != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(s)
			_, _ = fmt.Fprintf(w, `{"error": %q}`, http.StatusText(s))
			return
		}
	}
	for k, v := range rt.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	if rt.fixture != "" {
		b, err := os.ReadFile(filepath.Join("..", "testdata", rt.fixture))
		if err != nil {
			r.t.Error(err)
		}
		_, _ = w.Write(b)
	}
}

func (r *replay) count(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits[path]
}

var fixedNow = time.Date(2024, 2, 27, 16, 42, 0, 0, time.UTC)

// logBuffer captures debug logs so tests can check no secret reaches them.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

func httpCfg(srv *httptest.Server, log *slog.Logger, now *time.Time) HTTPConfig {
	return HTTPConfig{BaseURL: srv.URL, Client: srv.Client(), RequestsPerSecond: 1000, Now: func() time.Time { return *now }, Logger: log}
}

const (
	wtPassword = "hunter2-wt-password"
	wtToken    = "eyJhbGciOiJIUzI1NiJ9.wt-test-token.c2lnbmF0dXJl"
	emToken    = "em-secret-token-123"
)

func TestWattTime(t *testing.T) {
	now := fixedNow
	bearer := func(r *http.Request) int {
		if r.Header.Get("Authorization") != "Bearer "+wtToken {
			return http.StatusUnauthorized
		}
		if r.URL.Query().Get("region") != "CAISO_NORTH" || r.URL.Query().Get("signal_type") != "co2_moer" {
			return http.StatusBadRequest
		}
		return 0
	}
	rp, srv := newReplay(t, map[string]route{
		"/login": {fixture: "watttime/login.json", check: func(r *http.Request) int {
			if u, p, ok := r.BasicAuth(); !ok || u != "tern" || p != wtPassword {
				return http.StatusUnauthorized
			}
			return 0
		}},
		"/v3/forecast":     {fixture: "watttime/forecast.json", check: bearer},
		"/v3/signal-index": {fixture: "watttime/signal-index.json", check: bearer},
	})
	log, buf := logBuffer()
	w, err := NewWattTime(WattTimeConfig{HTTPConfig: httpCfg(srv, log, &now), Username: "tern", Password: wtPassword})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cur, err := w.Current(ctx, "CAISO_NORTH")
	if err != nil {
		t.Fatal(err)
	}
	// 16:42 lies in the 16:40 point: 870 lbs/MWh = 394.6 g/kWh, marginal.
	if !cur.Start.Equal(time.Date(2024, 2, 27, 16, 40, 0, 0, time.UTC)) || math.Abs(cur.GCO2PerKWh-870*0.45359237) > 1e-9 ||
		cur.Signal != carbon.Marginal || cur.Kind != carbon.Forecast || cur.Source != "watttime" || cur.Duration != 5*time.Minute {
		t.Fatalf("current = %+v", cur)
	}
	fc, err := w.Forecast(ctx, "CAISO_NORTH", fixedNow, fixedNow.Add(10*time.Minute))
	if err != nil || len(fc) != 3 {
		t.Fatalf("forecast = %+v, %v", fc, err)
	}
	idx, err := w.SignalIndex(ctx, "CAISO_NORTH")
	if err != nil || idx.Percentile != 62 {
		t.Fatalf("index = %+v, %v", idx, err)
	}
	if n := rp.count("/login"); n != 1 {
		t.Errorf("logged in %d times, want once for three calls", n)
	}
	now = now.Add(26 * time.Minute)
	if _, err := w.Current(ctx, "CAISO_NORTH"); err != nil || rp.count("/login") != 2 {
		t.Errorf("expired token not renewed: %v, %d logins", err, rp.count("/login"))
	}
	// Wrong password: unauthorized, and neither the password nor the token
	// appear in the error or the logs.
	bad, _ := NewWattTime(WattTimeConfig{HTTPConfig: httpCfg(srv, log, &now), Username: "tern", Password: "wrong-" + wtPassword})
	_, err = bad.Current(ctx, "CAISO_NORTH")
	if !errors.Is(err, carbon.ErrUnauthorized) || !strings.Contains(err.Error(), "watttime login as tern") {
		t.Fatalf("bad password: %v", err)
	}
	for _, leak := range []string{wtPassword, wtToken} {
		if strings.Contains(buf.String(), leak) || strings.Contains(err.Error(), leak) {
			t.Fatalf("secret %q leaked into logs or errors:\n%s\n%v", leak, buf.String(), err)
		}
	}
	if !strings.Contains(buf.String(), "path=/v3/forecast") {
		t.Errorf("requests not logged at debug:\n%s", buf.String())
	}
}

func TestWattTimeEmptyAndUnits(t *testing.T) {
	now := fixedNow
	_, srv := newReplay(t, map[string]route{
		"/login":       {fixture: "watttime/login.json"},
		"/v3/forecast": {fixture: "watttime/forecast-empty.json"},
	})
	w, _ := NewWattTime(WattTimeConfig{HTTPConfig: httpCfg(srv, nil, &now), Username: "tern", Password: wtPassword})
	if _, err := w.Current(context.Background(), "CAISO_NORTH"); !errors.Is(err, carbon.ErrNoData) {
		t.Fatalf("empty forecast: %v", err)
	}
	if _, err := NewWattTime(WattTimeConfig{Username: "tern"}); !errors.Is(err, carbon.ErrInvalid) {
		t.Fatalf("no password: %v", err)
	}
}

func TestElectricityMaps(t *testing.T) {
	now := fixedNow
	auth := func(r *http.Request) int {
		if r.Header.Get("auth-token") != emToken {
			return http.StatusUnauthorized
		}
		return 0
	}
	_, srv := newReplay(t, map[string]route{
		"/v3/carbon-intensity/latest":   {fixture: "electricitymaps/latest.json", check: auth},
		"/v3/carbon-intensity/history":  {fixture: "electricitymaps/history.json", check: auth},
		"/v3/carbon-intensity/forecast": {fixture: "electricitymaps/forecast.json", check: auth},
	})
	log, buf := logBuffer()
	e, err := NewElectricityMaps(ElectricityMapsConfig{HTTPConfig: httpCfg(srv, log, &now), Token: emToken})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cur, err := e.Current(ctx, "DE")
	if err != nil || cur.GCO2PerKWh != 302 || cur.Kind != carbon.Actual || cur.Signal != carbon.Average || cur.Source != "electricitymaps:estimated" || cur.Duration != time.Hour {
		t.Fatalf("latest = %+v, %v", cur, err)
	}
	h, err := e.History(ctx, "DE", fixedNow.Add(-24*time.Hour), fixedNow)
	if err != nil || len(h) != 2 || h[0].GCO2PerKWh != 331 || h[1].GCO2PerKWh != 318 {
		t.Fatalf("history (null hour skipped) = %+v, %v", h, err)
	}
	fc, err := e.Forecast(ctx, "DE", fixedNow, fixedNow.Add(2*time.Hour))
	if err != nil || len(fc) != 2 || fc[0].Kind != carbon.Forecast || fc[0].GCO2PerKWh != 290 {
		t.Fatalf("forecast = %+v, %v", fc, err)
	}
	bad, _ := NewElectricityMaps(ElectricityMapsConfig{HTTPConfig: httpCfg(srv, log, &now), Token: "nope-" + emToken})
	_, err = bad.Current(ctx, "DE")
	if !errors.Is(err, carbon.ErrUnauthorized) || strings.Contains(buf.String()+err.Error(), emToken) {
		t.Fatalf("bad token: %v\nlogs:\n%s", err, buf.String())
	}
}

func TestUKGrid(t *testing.T) {
	now := fixedNow
	_, srv := newReplay(t, map[string]route{
		"/intensity":                         {fixture: "ukgrid/intensity.json"},
		"/intensity/2024-02-27T16:30Z/fw24h": {fixture: "ukgrid/fw24h.json"},
		"/regional/regionid/3":               {fixture: "ukgrid/regional.json"},
		"/regional/intensity/2024-02-27T16:30Z/fw24h/regionid/3": {fixture: "ukgrid/regional-fw24h.json"},
		"/intensity/2024-03-01T00:00Z/fw24h":                     {status: http.StatusBadRequest, fixture: "ukgrid/error-400.json"},
	})
	u, err := NewUKGrid(UKGridConfig{HTTPConfig: httpCfg(srv, nil, &now)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cur, err := u.Current(ctx, "GB")
	if err != nil || cur.GCO2PerKWh != 190 || cur.Kind != carbon.Actual || cur.Duration != 30*time.Minute || cur.Source != "ukgrid" {
		t.Fatalf("national = %+v, %v", cur, err)
	}
	fc, err := u.Forecast(ctx, "GB", fixedNow, fixedNow.Add(2*time.Hour))
	if err != nil || len(fc) != 3 || fc[0].Kind != carbon.Actual || fc[1].Kind != carbon.Forecast || fc[2].GCO2PerKWh != 171 {
		t.Fatalf("national forecast (missing half hour skipped) = %+v, %v", fc, err)
	}
	reg, err := u.Current(ctx, "GB-3")
	if err != nil || reg.GCO2PerKWh != 83 || reg.Kind != carbon.Forecast {
		t.Fatalf("regional = %+v, %v", reg, err)
	}
	rf, err := u.Forecast(ctx, "GB-3", fixedNow, fixedNow.Add(time.Hour))
	if err != nil || len(rf) != 2 || rf[1].GCO2PerKWh != 95 {
		t.Fatalf("regional forecast = %+v, %v", rf, err)
	}
	_, err = u.Forecast(ctx, "GB", time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2024, 3, 1, 1, 0, 0, 0, time.UTC))
	if !errors.Is(err, carbon.ErrInvalid) || !strings.Contains(err.Error(), "HTTP 400") || !strings.Contains(err.Error(), "valid ISO 8601 date") {
		t.Fatalf("bad request: %v", err)
	}
	for _, bad := range []string{"FR", "GB-0", "GB-18", "GB-x"} {
		if _, err := u.Current(ctx, bad); !errors.Is(err, carbon.ErrInvalid) {
			t.Errorf("region %q: %v", bad, err)
		}
	}
}

func TestHTTPErrors(t *testing.T) {
	now := fixedNow
	rp, srv := newReplay(t, map[string]route{
		"/intensity/2024-02-27T16:30Z/fw24h": {status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": "120"}},
		"/intensity":                         {status: http.StatusBadGateway, fixture: "ukgrid/error-400.json"},
		"/regional/regionid/4":               {status: http.StatusOK},
	})
	u, _ := NewUKGrid(UKGridConfig{HTTPConfig: httpCfg(srv, nil, &now)})
	ctx := context.Background()
	_, err := u.Forecast(ctx, "GB", fixedNow, fixedNow.Add(time.Hour))
	if !errors.Is(err, carbon.ErrRateLimited) || carbon.RetryAfter(err) != 2*time.Minute {
		t.Fatalf("429: %v (retry after %v)", err, carbon.RetryAfter(err))
	}
	// While the pause lasts, no request is sent at all.
	_, err = u.Forecast(ctx, "GB", fixedNow, fixedNow.Add(time.Hour))
	if !errors.Is(err, carbon.ErrRateLimited) || rp.count("/intensity/2024-02-27T16:30Z/fw24h") != 1 {
		t.Fatalf("request sent during the pause: %v, %d", err, rp.count("/intensity/2024-02-27T16:30Z/fw24h"))
	}
	now = now.Add(2*time.Minute + time.Second)
	_, _ = u.Forecast(ctx, "GB", fixedNow, fixedNow.Add(time.Hour))
	if rp.count("/intensity/2024-02-27T16:30Z/fw24h") != 2 {
		t.Fatal("not retried after the pause")
	}
	now = now.Add(2*time.Minute + time.Second) // the retry was limited again
	if _, err := u.Current(ctx, "GB"); !errors.Is(err, carbon.ErrUnavailable) || !strings.Contains(err.Error(), "ukgrid GET /intensity: HTTP 502") {
		t.Fatalf("502: %v", err)
	}
	if _, err := u.Current(ctx, "GB-4"); !errors.Is(err, carbon.ErrUnavailable) || !strings.Contains(err.Error(), "decode") {
		t.Fatalf("empty body: %v", err)
	}
	if d := parseRetryAfter(now.Add(90*time.Second).Format(http.TimeFormat), now); d != 90*time.Second {
		t.Errorf("HTTP-date Retry-After = %v", d)
	}
	if _, err := NewUKGrid(UKGridConfig{HTTPConfig: HTTPConfig{BaseURL: "ftp://x"}}); !errors.Is(err, carbon.ErrInvalid) {
		t.Errorf("bad base URL: %v", err)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	cfg := ElectricityMapsConfig{Token: emToken}
	js, _ := json.Marshal(cfg)
	log, buf := logBuffer()
	log.Info("config", "token", cfg.Token, "cfg", cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), string(js), buf.String()} {
		if strings.Contains(s, emToken) {
			t.Fatalf("secret printed: %s", s)
		}
	}
	if cfg.Token.Reveal() != emToken {
		t.Fatal("Reveal lost the value")
	}
}

func TestReadTrace(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "testdata", "traces", "gb-2020-10-29_11-01.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rs, err := ReadTrace(f, "gb.csv")
	if err != nil {
		t.Fatal(err)
	}
	// 30-min rows, then 15-min rows from 31 October: each lasts until the next.
	if rs[0].Duration != 30*time.Minute || rs[len(rs)-1].Duration != 15*time.Minute || rs[0].Source != "trace:gb.csv" || rs[0].Kind != carbon.Actual {
		t.Fatalf("durations %v … %v, source %s", rs[0].Duration, rs[len(rs)-1].Duration, rs[0].Source)
	}
	j, err := os.Open(filepath.Join("..", "testdata", "traces", "synthetic-2020-06-01_05.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	js, err := ReadTrace(j, "syn.json")
	if err != nil || len(js) != 120 || js[0].Duration != time.Hour {
		t.Fatalf("json trace: %d readings, %v", len(js), err)
	}
	bad := []struct{ name, body, want string }{
		{"header", "when,value\n", "want time,gco2_per_kwh"},
		{"time", "time,gco2_per_kwh\nyesterday,1\n", `line 2: time "yesterday"`},
		{"value", "time,gco2_per_kwh\n2020-01-01T00:00:00Z,-3\n", "want a finite number ≥ 0"},
		{"order", "time,gco2_per_kwh\n2020-01-01T01:00:00Z,1\n2020-01-01T00:00:00Z,1\n", "is not after"},
		{"empty", "time,gco2_per_kwh\n", "no rows"},
		{"json field", `{"readings":[],"colour":1}`, "unknown field"},
		{"json duration", `{"readings":[{"start":"2020-01-01T00:00:00Z","duration":"soon","gco2_per_kwh":1}]}`, `duration "soon"`},
		{"json kind", `{"readings":[{"start":"2020-01-01T00:00:00Z","gco2_per_kwh":1,"kind":"guess"}]}`, `kind "guess"`},
	}
	for _, b := range bad {
		if _, err := ReadTrace(strings.NewReader(b.body), b.name); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: %v, want %q", b.name, err, b.want)
		}
	}
}

func TestTraceProvider(t *testing.T) {
	rs := []carbon.Reading{
		{Start: time.Date(2020, 6, 1, 0, 0, 0, 0, time.UTC), Duration: 7 * 24 * time.Hour, GCO2PerKWh: 5, Kind: carbon.Actual, Source: "trace:t"},
		{Start: time.Date(2020, 6, 8, 0, 0, 0, 0, time.UTC), Duration: 7 * 24 * time.Hour, GCO2PerKWh: 7, Kind: carbon.Actual, Source: "trace:t"},
	}
	now := time.Date(2026, 11, 24, 21, 0, 0, 0, time.UTC)
	tr := NewTrace("DE", rs)
	tr.Now = func() time.Time { return now }
	ctx := context.Background()
	if _, err := tr.Current(ctx, "DE"); !errors.Is(err, carbon.ErrNoData) {
		t.Fatalf("outside the trace without replay: %v", err)
	}
	tr.Replay = true
	r, err := tr.Current(ctx, "DE")
	if err != nil || r.Kind != carbon.Assumed || !r.Contains(now) || r.Source != "trace:t" {
		t.Fatalf("replayed = %+v, %v", r, err)
	}
	if r.Start.Weekday() != rs[0].Start.Weekday() && r.Start.Weekday() != rs[1].Start.Weekday() {
		t.Errorf("replay did not keep the weekday")
	}
	if _, err := tr.Current(ctx, "FR"); !errors.Is(err, carbon.ErrNoData) {
		t.Fatalf("other region: %v", err)
	}
}
