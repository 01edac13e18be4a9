package cache_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// lines serves the same body with the given header lines, added in
// order so that a name may repeat.
func lines(hdr ...string) func(int64, http.ResponseWriter, *http.Request) {
	return func(n int64, w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Add(hdr[i], hdr[i+1])
		}
		fmt.Fprintf(w, "body %d", n)
	}
}

// freshThenHit expects the second request to be a hit, staleThenRefetch
// to go to the origin again.
var (
	freshThenHit     = []step{{wantHits: 1}, {advance: time.Second, wantHits: 1, wantCS: "hit"}}
	staleThenRefetch = []step{{wantHits: 1}, {advance: time.Second, wantHits: 2, wantCS: "fwd=stale"}}
)

// TestRFC9111StrictFreshness covers RFC 9111 §5.3 with RFC 9110 §5.6.7
// (Expires is one HTTP-date in one of three exact formats, anything else
// is already expired) and §5.1 (an Age that is not one non-negative
// integer leaves the response stale). The clock starts at
// Sun, 01 Mar 2026 12:00:00 GMT.
func TestRFC9111StrictFreshness(t *testing.T) {
	runRFC(t, []rfcCase{
		{name: "§5.6.7 IMF-fixdate Expires is fresh", origin: lines("Expires", "Mon, 02 Mar 2026 01:00:00 GMT"), steps: freshThenHit},
		{name: "§5.6.7 obsolete RFC 850 Expires is fresh", origin: lines("Expires", "Monday, 02-Mar-26 01:00:00 GMT"), steps: freshThenHit},
		{name: "§5.6.7 obsolete asctime Expires is fresh", origin: lines("Expires", "Mon Mar  2 01:00:00 2026"), steps: freshThenHit},
		{name: "§5.6.7 one-digit hour in Expires is stale", origin: lines("Expires", "Mon, 02 Mar 2026 1:00:00 GMT"), steps: staleThenRefetch},
		{name: "§5.6.7 several spaces in Expires is stale", origin: lines("Expires", "Mon, 02 Mar 2026  01:00:00 GMT"), steps: staleThenRefetch},
		{name: "§5.6.7 one-digit day in IMF-fixdate Expires is stale", origin: lines("Expires", "Mon, 2 Mar 2026 01:00:00 GMT"), steps: staleThenRefetch},
		{name: "§5.6.7 several spaces in RFC 850 Expires is stale", origin: lines("Expires", "Monday,  02-Mar-26 01:00:00 GMT"), steps: staleThenRefetch},
		{name: "§5.3 two Expires lines are stale", origin: lines("Expires", "Mon, 02 Mar 2026 01:00:00 GMT", "Expires", "Mon, 02 Mar 2026 01:00:00 GMT"), steps: staleThenRefetch},
		{name: "§5.3 max-age wins over a bad Expires", origin: lines("Cache-Control", "max-age=60", "Expires", "Mon, 02 Mar 2026 1:00:00 GMT"), steps: freshThenHit},
		{name: "§5.1 Age list is stale", origin: lines("Cache-Control", "max-age=3600", "Age", "old, 0"), steps: staleThenRefetch},
		{name: "§5.1 two Age lines are stale", origin: lines("Cache-Control", "max-age=3600", "Age", "0", "Age", "0"), steps: staleThenRefetch},
		{name: "§5.1 negative Age is stale", origin: lines("Cache-Control", "max-age=3600", "Age", "-10"), steps: staleThenRefetch},
		{name: "§5.1 fractional Age is stale", origin: lines("Cache-Control", "max-age=3600", "Age", "1.5"), steps: staleThenRefetch},
		{name: "§5.1 integer Age is used", origin: lines("Cache-Control", "max-age=3600", "Age", "10"), steps: []step{
			{wantHits: 1, wantHdr: map[string]string{"Age": "10"}}, {advance: time.Second, wantHits: 1, wantCS: "hit", wantHdr: map[string]string{"Age": "11"}},
		}},
	})
}
