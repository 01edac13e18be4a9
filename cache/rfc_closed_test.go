package cache_test

import (
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
)

// cutting serves cc with a body on the first request and, from the
// second on, drops the connection without a response: closed, or reset
// when reset is set.
func cutting(cc string, reset bool) func(int64, http.ResponseWriter, *http.Request) {
	return func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.Header().Set("Cache-Control", cc)
			fmt.Fprintf(w, "body %d", n)
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		if tc, ok := conn.(*net.TCPConn); ok && reset {
			tc.SetLinger(0) // close sends RST
		}
		conn.Close()
	}
}

// TestRFC9111StaleOnClosedConnection covers RFC 9111 §4.2.4 with the
// origin closing or resetting the connection while an entry is stale:
// stale is served only where stale-if-error (RFC 5861 §4) or the offline
// policy allows it, never under must-revalidate, proxy-revalidate,
// no-cache (§5.2.2.2, §5.2.2.8, §5.2.2.4) or, for the offline policy,
// s-maxage (§5.2.2.10).
func TestRFC9111StaleOnClosedConnection(t *testing.T) {
	offline := cache.Config{MaxStale: time.Hour}
	var cases []rfcCase
	for _, reset := range []bool{false, true} {
		how := "closed"
		if reset {
			how = "reset"
		}
		served := func(cs string) []step {
			return []step{{wantHits: 1}, {advance: 20 * time.Second, wantHits: 3, wantStatus: 200, wantBody: "body 1", wantCS: cs}}
		}
		// The second request reaches the origin twice: the transport
		// retries a GET once when a reused connection drops it.
		refused := []step{{wantHits: 1}, {advance: 20 * time.Second, wantHits: 3, wantStatus: 504}}
		cases = append(cases,
			rfcCase{name: "§4.2.4 stale-if-error serves stale, " + how, origin: cutting("max-age=10, stale-if-error=60", reset), steps: served("detail=stale-if-error")},
			rfcCase{name: "§4.2.4 offline policy serves stale, " + how, cfg: offline, origin: cutting("max-age=10", reset), steps: served("detail=offline")},
			rfcCase{name: "§5.2.2.2 must-revalidate refuses stale, " + how, cfg: offline, origin: cutting("max-age=10, must-revalidate, stale-if-error=60", reset), steps: refused},
			rfcCase{name: "§5.2.2.8 proxy-revalidate refuses stale, " + how, cfg: offline, origin: cutting("max-age=10, proxy-revalidate, stale-if-error=60", reset), steps: refused},
			rfcCase{name: "§5.2.2.4 no-cache refuses stale, " + how, cfg: offline, origin: cutting("max-age=10, no-cache, stale-if-error=60", reset), steps: refused},
			rfcCase{name: "§5.2.2.10 s-maxage refuses the offline policy, " + how, cfg: offline, origin: cutting("s-maxage=10", reset), steps: refused},
		)
	}
	runRFC(t, cases)
}
