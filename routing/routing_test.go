package routing

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

func named(app string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, app) })
}

func TestMatch(t *testing.T) {
	tbl, err := NewTable([]Route{
		{Path: "/", App: "root"},
		{Path: "/api", App: "api"},
		{Path: "/api/v2/", App: "api2"},
		{Host: "example.com", Path: "/", App: "ex"},
		{Host: "example.com", Path: "/img", App: "eximg"},
		{Host: "*.example.com", Path: "/", App: "wild"},
		{Host: "*.eu.example.com", Path: "/", App: "wildeu"},
		{Host: "Shop.Example.com", Path: "/cart", App: "cart"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ host, path, want string }{
		{"localhost:8443", "/", "root"},
		{"localhost", "/apix", "root"},
		{"localhost", "/api", "api"},
		{"localhost", "/api/users", "api"},
		{"localhost", "/api/v2", "api2"},
		{"localhost", "/api/v2/x", "api2"},
		{"example.com", "/x", "ex"},
		{"EXAMPLE.com.", "/img/a.png", "eximg"},
		{"example.com:443", "/img", "eximg"},
		{"a.example.com", "/", "wild"},
		{"a.b.example.com", "/", "wild"},
		{"x.eu.example.com", "/", "wildeu"},
		{"shop.example.com", "/cart/1", "cart"},
		{"shop.example.com", "/other", "wild"},
		{"notexample.com", "/img", "root"},
	}
	for _, tt := range tests {
		r, ok := tbl.Match(tt.host, tt.path)
		if !ok || r.App != tt.want {
			t.Errorf("Match(%q, %q) = %q, %v; want %q", tt.host, tt.path, r.App, ok, tt.want)
		}
	}
	var empty Table
	if _, ok := empty.Match("x", "/"); ok {
		t.Error("empty table matched")
	}
}

func TestConflicts(t *testing.T) {
	tests := []struct {
		name    string
		routes  []Route
		wantErr string
	}{
		{"same app twice is fine", []Route{{Path: "/a", App: "x"}, {Path: "/a/", App: "x"}}, ""},
		{"two apps same path", []Route{{Path: "/a", App: "x"}, {Path: "/a/", App: "y"}},
			`route conflict: apps x and y both claim host "" path "/a"`},
		{"two apps same host and path", []Route{{Host: "H.com", Path: "/", App: "x"}, {Host: "h.com", App: "y"}},
			`route conflict: apps x and y both claim host "h.com" path "/"`},
		{"different hosts", []Route{{Host: "a.com", App: "x"}, {Host: "b.com", App: "y"}}, ""},
		{"relative path", []Route{{Path: "a", App: "x"}}, `app x: route path "a" must start with /`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTable(tt.routes)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if len(tt.routes) == 2 && !errors.Is(err, ErrConflict) {
				t.Fatalf("err %v is not ErrConflict", err)
			}
		})
	}
}

// TestSwapUnderLoad swaps tables while requests run: every response must
// come from one whole table, never a torn or missing one.
func TestSwapUnderLoad(t *testing.T) {
	var router Router
	mk := func(v string) *Table {
		tbl, err := NewTable([]Route{{Path: "/a", App: v, Handler: named(v)}, {Path: "/b", App: v, Handler: named(v)}})
		if err != nil {
			t.Fatal(err)
		}
		return tbl
	}
	router.Swap(mk("v0"))
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 2000 && !stop.Load(); n++ {
				rec := httptest.NewRecorder()
				router.ServeHTTP(rec, httptest.NewRequest("GET", "/a", nil))
				if rec.Code != 200 || len(rec.Body.String()) < 2 {
					bad.Add(1)
				}
			}
		}()
	}
	for v := 1; v <= 500; v++ {
		router.Swap(mk(fmt.Sprintf("v%d", v)))
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d requests failed during swaps", bad.Load())
	}
	rec := httptest.NewRecorder()
	router.ServeHTTP(rec, httptest.NewRequest("GET", "/a", nil))
	if got := rec.Body.String(); got != "v500" {
		t.Fatalf("after swaps served %q, want v500", got)
	}
	rec = httptest.NewRecorder()
	router.ServeHTTP(rec, httptest.NewRequest("GET", "/zzz", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("unrouted path: %d, want 404", rec.Code)
	}
}
