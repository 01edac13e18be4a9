package sync

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
)

func goodHeartbeat() Heartbeat {
	now := 400.0
	return Heartbeat{
		Agent: "gw1", Site: "berlin", Labels: map[string]string{"tier": "edge"}, Version: "v1.2.3",
		Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Interval: 10 * time.Second,
		Apps:     []AppState{{App: "hello", Version: "1.0.0", Sequence: 3, Digest: "sha256:aa"}},
		Refusals: []Refusal{{App: "x", Sequence: 2, Reason: "signature", Error: "verify x@2: bad signature\nmore"}},
		Load:     Load{InFlight: 2, RPS: 10.5},
		GPU:      json.RawMessage(`{"models":["det-llm"]}`),
		Carbon:   &CarbonOffer{Region: "DE", Now: &now, Step: time.Hour, Forecast: []float64{1, 2, 3}},
	}
}

// TestDecodeHeartbeat refuses, with a reason, what a compromised agent
// could write, and takes what agents write.
func TestDecodeHeartbeat(t *testing.T) {
	enc := func(edit func(*Heartbeat)) []byte {
		hb := goodHeartbeat()
		edit(&hb)
		b, err := json.Marshal(hb)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		key  string
		b    []byte
		want string // error substring; "" for accepted
	}{
		{"good", "gw1", enc(func(*Heartbeat) {}), ""},
		{"truncated", "gw1", enc(func(*Heartbeat) {})[:40], "unexpected end of JSON input"},
		{"another agent's key", "gw2", enc(func(*Heartbeat) {}), `names agent "gw1"`},
		{"escape in site", "gw1", enc(func(h *Heartbeat) { h.Site = "ber\x1b[2Jlin" }), "control character"},
		{"long app name", "gw1", enc(func(h *Heartbeat) { h.Apps[0].App = strings.Repeat("a", 2000) }), "2000-byte name"},
		{"many apps", "gw1", enc(func(h *Heartbeat) { h.Apps = make([]AppState, 5000) }), "5000 apps"},
		{"negative interval", "gw1", enc(func(h *Heartbeat) { h.Interval = -time.Second }), "interval -1s is negative"},
		{"forecast without step", "gw1", enc(func(h *Heartbeat) { h.Carbon.Step = 0 }), "step 0s"},
		{"long forecast", "gw1", enc(func(h *Heartbeat) { h.Carbon.Forecast = make([]float64, 49) }), "49 values, over 48"},
		{"huge", "gw1", make([]byte, 2<<20), "over the 1048576-byte limit"},
	} {
		_, err := DecodeHeartbeat(tc.key, tc.b)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzDecodeHeartbeat checks that any bytes under any key decode to a
// heartbeat that keeps DecodeHeartbeat's promises, or to an error, never
// a panic; and that an accepted heartbeat survives the hub's re-encoding.
func FuzzDecodeHeartbeat(f *testing.F) {
	good, _ := json.Marshal(goodHeartbeat())
	f.Add("gw1", good)
	f.Add("gw1", []byte(`{"agent":"gw1","carbon":{"step":-1,"forecast":[1]}}`))
	f.Add("", []byte(`{"agent":"","apps":null,"gpu":"x"}`))
	f.Fuzz(func(t *testing.T, key string, b []byte) {
		hb, err := DecodeHeartbeat(key, b)
		if err != nil {
			return
		}
		if hb.Agent != key || hb.Interval < 0 || strings.ContainsFunc(hb.Site, unicode.IsControl) {
			t.Fatalf("accepted %+v under key %q", hb, key)
		}
		if o := hb.Carbon; o != nil && (len(o.Forecast) > MaxOfferPoints || len(o.Forecast) > 0 && o.Step <= 0) {
			t.Fatalf("accepted forecast %v step %s", o.Forecast, o.Step)
		}
		hb.Stale(time.Now())
		again, err := json.Marshal(hb)
		if err != nil {
			t.Fatalf("accepted heartbeat does not encode: %v", err)
		}
		back, err := DecodeHeartbeat(key, again)
		if err != nil {
			t.Fatalf("re-encoded heartbeat refused: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(normal(t, back), normal(t, hb)) {
			t.Fatalf("re-encoding changed the heartbeat:\n%+v\n%+v", hb, back)
		}
	})
}

// normal is hb as JSON, so that nil and empty lists and raw JSON
// spacing compare equal.
func normal(t *testing.T, hb Heartbeat) string {
	b, err := json.Marshal(hb)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
