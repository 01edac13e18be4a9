package cache_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// status serves code with the given header lines and a body.
func status(code int, hdr ...string) func(int64, http.ResponseWriter, *http.Request) {
	return func(n int64, w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Add(hdr[i], hdr[i+1])
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "body %d", n)
	}
}

// TestRFC9111EveryStatus covers RFC 9111 §3: a final response with
// explicit freshness is stored whatever its status, unless the status is
// not understood and must-understand is present (§5.2.2.3); heuristic
// freshness (§4.2.2) only for the statuses RFC 9110 §15.1 lists.
func TestRFC9111EveryStatus(t *testing.T) {
	var cases []rfcCase
	for _, code := range []int{299, 302, 303, 400, 403, 499, 500, 502, 503, 504, 599} {
		cases = append(cases,
			rfcCase{name: fmt.Sprintf("§3 %d with max-age is stored", code), origin: status(code, "Cache-Control", "max-age=60"), steps: []step{
				{wantStatus: code, wantHits: 1}, {advance: time.Second, wantStatus: code, wantHits: 1, wantCS: "hit", wantBody: "body 1"},
			}},
			rfcCase{name: fmt.Sprintf("§3 %d with Expires is stored", code), origin: status(code, "Expires", "Sun, 01 Mar 2026 12:01:00 GMT"), steps: []step{
				{wantStatus: code, wantHits: 1}, {advance: time.Second, wantStatus: code, wantHits: 1, wantCS: "hit"},
			}},
			rfcCase{name: fmt.Sprintf("§4.2.2 %d with only Last-Modified is not stored", code), origin: status(code, "Last-Modified", "Sun, 01 Mar 2026 10:00:00 GMT"), steps: []step{
				{wantStatus: code, wantHits: 1}, {advance: time.Second, wantStatus: code, wantHits: 2},
			}},
		)
	}
	cases = append(cases,
		rfcCase{name: "§4.2.1 a stale stored 599 is fetched again", origin: status(599, "Cache-Control", "max-age=10"), steps: []step{
			{wantStatus: 599, wantHits: 1}, {advance: 11 * time.Second, wantStatus: 599, wantHits: 2, wantCS: "fwd=stale", wantBody: "body 2"},
		}},
		rfcCase{name: "§5.2.2.3 must-understand keeps an unknown status out", origin: status(599, "Cache-Control", "max-age=60, must-understand, no-store"), steps: []step{
			{wantStatus: 599, wantHits: 1}, {wantStatus: 599, wantHits: 2},
		}},
		rfcCase{name: "§5.2.2.3 must-understand with a known status overrides no-store", origin: status(200, "Cache-Control", "max-age=60, must-understand, no-store"), steps: []step{
			{wantHits: 1}, {advance: time.Second, wantHits: 1, wantCS: "hit"},
		}},
		rfcCase{name: "§4.2.2 public 500 gets no heuristic freshness", origin: status(500, "Cache-Control", "public", "Last-Modified", "Sun, 01 Mar 2026 10:00:00 GMT"), steps: []step{
			{wantStatus: 500, wantHits: 1}, {advance: time.Second, wantStatus: 500, wantHits: 2},
		}},
	)
	runRFC(t, cases)
}
