package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tern-edge/tern/carbon"
	"github.com/tern-edge/tern/store"
)

// recordingProvider passes a live provider's answers through and records
// every current reading in the store's intensity history, so that the
// agent can forecast from what it observed when the provider has no
// forecast. Only the part of a reading up to now is recorded: nothing is
// written about the future.
type recordingProvider struct {
	carbon.Provider
	store  *store.Store
	now    func() time.Time
	logger *slog.Logger
}

// Current implements carbon.Provider.
func (p *recordingProvider) Current(ctx context.Context, region string) (carbon.Reading, error) {
	r, err := p.Provider.Current(ctx, region)
	if err != nil || r.Kind == carbon.Assumed || r.Duration <= 0 {
		return r, err
	}
	end := r.End()
	if now := p.now(); now.Before(end) {
		end = now
	}
	if end.After(r.Start) {
		if err := p.store.AddIntensity(region, r.Start, end, r.GCO2PerKWh, uint8(r.Signal), r.Source); err != nil {
			p.logger.Warn("recording intensity", "region", region, "err", err)
		}
	}
	return r, nil
}

// storeHistory serves the store's intensity history as actual hourly
// readings.
type storeHistory struct{ store *store.Store }

var _ carbon.HistoryProvider = storeHistory{}

// History implements carbon.HistoryProvider.
func (h storeHistory) History(_ context.Context, region string, from, to time.Time) ([]carbon.Reading, error) {
	hs, err := h.store.IntensityHistory(region, from, to)
	if err != nil {
		return nil, fmt.Errorf("recorded intensity: %w", err)
	}
	rs := make([]carbon.Reading, len(hs))
	for i, x := range hs {
		rs[i] = carbon.Reading{Start: x.Start, Duration: time.Hour, GCO2PerKWh: x.Mean, Kind: carbon.Actual, Signal: carbon.Signal(x.Signal), Source: x.Source}
	}
	return rs, nil
}
