package routing

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestCleanPath(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{in: "/a/b", want: "/a/b"},
		{in: "/a/./b", want: "/a/b"},
		{in: "/a/../b", want: "/b"},
		{in: "/a/b/..", want: "/a/"},
		{in: "/a/b/.", want: "/a/b/"},
		{in: "/../../x", want: "/x"},
		{in: "/any/%2e%2e/reflect/R", want: "/reflect/R"},
		{in: "/any/%2E./reflect/R", want: "/reflect/R"},
		{in: "/any/.%2e", want: "/"},
		{in: "/a/...", want: "/a/..."},
		{in: "/a/..b/c", want: "/a/..b/c"},
		{in: "/a/b%2fc/../d", want: "/a/d"},    // %2F stays in its segment
		{in: "/a/x%2Fy/z", want: "/a/x%2Fy/z"}, // and is kept as sent
		{in: "//a/../b", want: "//b"},
		{in: "/any/..%2freflect/R", err: `path segment "..%2freflect" holds a dot segment between encoded slashes`},
		{in: "/any/x%2F..%2Fy", err: `path segment "x%2F..%2Fy" holds a dot segment between encoded slashes`},
		{in: "/any/..%5cx", err: `path segment "..%5cx" holds a dot segment between encoded slashes`},
	} {
		got, _, err := cleanPath(c.in)
		switch {
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("cleanPath(%q): %q, %v; want error %q", c.in, got, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("cleanPath(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// TestDotSegmentsNeverLeaveAPrefixRoute sends raw HTTP/1.1 requests whose
// paths climb out of a prefix route with dot segments, plain and over TLS:
// each is routed by its clean path, and the handler sees the clean path
// (or the request is refused), never the dot segments.
func TestDotSegmentsNeverLeaveAPrefixRoute(t *testing.T) {
	seen := make(chan string, 32)
	handler := func(app string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen <- app + " " + r.URL.EscapedPath()
		})
	}
	tbl, err := NewTable([]Route{
		{Path: "/any", App: "any", Handler: handler("any")},
		{Path: "/", App: "root", Handler: handler("root")},
	})
	if err != nil {
		t.Fatal(err)
	}
	router := &Router{}
	router.Swap(tbl)
	plain := httptest.NewServer(router)
	defer plain.Close()
	secure := httptest.NewTLSServer(router)
	defer secure.Close()
	dials := map[string]func() (net.Conn, error){
		"plain": func() (net.Conn, error) { return net.Dial("tcp", plain.Listener.Addr().String()) },
		"TLS": func() (net.Conn, error) {
			return tls.Dial("tcp", secure.Listener.Addr().String(), &tls.Config{RootCAs: secure.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs})
		},
	}
	for name, dial := range dials {
		for _, c := range []struct {
			target string
			code   int
			want   string // what the handler saw
		}{
			{"/any/%2e%2e/reflect/R", 200, "root /reflect/R"},
			{"/any/../reflect/R", 200, "root /reflect/R"},
			{"/any/x/%2E%2E/y", 200, "any /any/y"},
			{"/any/a%2fb/R", 200, "any /any/a%2fb/R"},
			{"/any/..%2freflect/R", 400, ""},
		} {
			t.Run(name+c.target, func(t *testing.T) {
				conn, err := dial()
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(conn, "GET "+c.target+" HTTP/1.1\r\nHost: example\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.code {
					t.Fatalf("status %d (%s), want %d", resp.StatusCode, strings.TrimSpace(string(body)), c.code)
				}
				if c.want == "" {
					return
				}
				select {
				case got := <-seen:
					if got != c.want {
						t.Errorf("handler saw %q, want %q", got, c.want)
					}
				default:
					t.Error("no handler ran")
				}
			})
		}
	}
}
