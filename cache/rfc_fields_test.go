package cache_test

import (
	"testing"
	"time"
)

// TestRFC9111StoredFields covers which header fields are stored (RFC 9111
// §3.1): Set-Cookie is stored with the response (§7.3 leaves it to the
// directives), a qualified private="…" (§5.2.2.7) or no-cache="…"
// (§5.2.2.4) keeps the named fields out of a shared cache while the rest
// is stored, and hop-by-hop fields, with those Connection names, are
// never stored (RFC 9110 §7.6.1).
func TestRFC9111StoredFields(t *testing.T) {
	noCookie := map[string]string{"Set-Cookie": "", "X-Kept": "k"}
	runRFC(t, []rfcCase{
		{name: "§3.1 Set-Cookie is stored with the response", origin: lines("Cache-Control", "max-age=60", "Set-Cookie", "id=1"), steps: []step{
			{wantHits: 1}, {advance: time.Second, wantHits: 1, wantCS: "hit", wantHdr: map[string]string{"Set-Cookie": "id=1"}},
		}},
		{name: "§5.2.2.7 private=Set-Cookie: stored without it", origin: lines("Cache-Control", `max-age=60, private="Set-Cookie"`, "Set-Cookie", "id=1", "X-Kept", "k"), steps: []step{
			{wantHits: 1, wantHdr: map[string]string{"Set-Cookie": "id=1"}}, {advance: time.Second, wantHits: 1, wantCS: "hit", wantHdr: noCookie},
		}},
		{name: "§5.2.2.4 no-cache=Set-Cookie: stored without it", origin: lines("Cache-Control", `max-age=60, no-cache="set-cookie"`, "Set-Cookie", "id=1", "X-Kept", "k"), steps: []step{
			{wantHits: 1, wantHdr: map[string]string{"Set-Cookie": "id=1"}}, {advance: time.Second, wantHits: 1, wantCS: "hit", wantHdr: noCookie},
		}},
		{name: "§5.2.2.7 unqualified private: not stored", origin: lines("Cache-Control", "max-age=60, private", "Set-Cookie", "id=1"), steps: []step{
			{wantHits: 1, wantCS: "detail=private"}, {wantHits: 2, wantHdr: map[string]string{"Set-Cookie": "id=1"}},
		}},
		{name: "§7.6.1 Connection-named and hop-by-hop fields are not stored", origin: lines("Cache-Control", "max-age=60", "Connection", "X-Hop, x-other",
			"X-Hop", "1", "X-Other", "2", "Keep-Alive", "timeout=5", "Proxy-Authenticate", "Basic", "Upgrade", "h2c", "X-Kept", "k"), steps: []step{
			{wantHits: 1}, {advance: time.Second, wantHits: 1, wantCS: "hit", wantHdr: map[string]string{
				"Connection": "", "X-Hop": "", "X-Other": "", "Keep-Alive": "", "Proxy-Authenticate": "", "Upgrade": "", "X-Kept": "k",
			}},
		}},
	})
}
