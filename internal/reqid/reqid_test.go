package reqid

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestErrorNamesTheMiddlewareID checks that an error body, the response
// header and the handler's context agree on one id, and that a client's
// own id is replaced.
func TestErrorNamesTheMiddlewareID(t *testing.T) {
	var seen string
	h := Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = Error(w, r, http.StatusBadGateway, "upstream unavailable")
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set(Header, "client-chosen")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	id := w.Header().Get(Header)
	if id == "" || id == "client-chosen" || id != seen {
		t.Fatalf("header id %q, logged id %q", id, seen)
	}
	if want := "upstream unavailable (request id " + id + ")\n"; w.Body.String() != want || w.Code != http.StatusBadGateway {
		t.Fatalf("%d %q, want 502 %q", w.Code, w.Body.String(), want)
	}
	// Without the middleware a handler still gets an id.
	w = httptest.NewRecorder()
	if got := Error(w, httptest.NewRequest("GET", "/", nil), 500, "x"); got == "" || w.Header().Get(Header) != got || !strings.Contains(w.Body.String(), got) {
		t.Fatalf("id %q, header %q, body %q", got, w.Header().Get(Header), w.Body.String())
	}
}

// BenchmarkMiddleware is what an id costs every request.
func BenchmarkMiddleware(b *testing.B) {
	h := Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	req := httptest.NewRequest("GET", "/", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}
