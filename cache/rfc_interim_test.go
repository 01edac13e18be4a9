package cache

import (
	"net/http"
	"testing"
)

// TestRFC9111InterimNotStored covers RFC 9111 §3: only a final response
// is stored. An upstream round tripper can hand back a 1xx (101, or a
// 103 from a transport that surfaces interim responses); with explicit
// freshness it must still be refused.
func TestRFC9111InterimNotStored(t *testing.T) {
	req, _ := http.NewRequest("GET", "http://example.com/x", nil)
	for _, code := range []int{100, 101, 102, 103, 199} {
		h := http.Header{"Cache-Control": {"public, max-age=60"}}
		resp := &http.Response{StatusCode: code, Header: h}
		if ok, why := storable(req, parseCacheControl(req.Header), resp, parseCacheControl(h), true); ok {
			t.Errorf("§3: status %d stored, want refused", code)
		} else if why == "" {
			t.Errorf("status %d: no reason given", code)
		}
	}
}
