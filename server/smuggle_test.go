package server

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	gosync "sync"
	"testing"
	"time"
)

// recorder is an origin that records every request it is sent, as
// "METHOD /path", and answers 200.
type recorder struct {
	*httptest.Server
	mu   gosync.Mutex
	seen []string
}

func newRecorder(t testing.TB) *recorder {
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		rec.mu.Lock()
		rec.seen = append(rec.seen, r.Method+" "+r.URL.RequestURI())
		rec.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) requests() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.seen...)
}

// forwarder sends every request on to origin over an http.Transport, as an
// origin route does: the transport reads the client's body and closes it
// when it fails. A failed client body is answered with its own status.
func forwarder(t testing.TB, origin string) http.Handler {
	u, err := url.Parse(origin)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = u.Scheme, u.Host
		resp, err := tr.RoundTrip(out)
		if err != nil {
			code := http.StatusBadGateway
			var be *BodyError
			if rb, ok := r.Body.(*rateBody); ok && errors.As(rb.ReadErr(), &be) {
				code = be.HTTPStatus()
			}
			http.Error(w, err.Error(), code)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
}

// door is one way to reach a handler with a raw HTTP/1.1 connection.
type door struct {
	name string
	dial func(t *testing.T) net.Conn
}

// frontDoors serves h on the TLS server (HTTP/1.1 by ALPN) and on a plain
// listener, both with limits l.
func frontDoors(t *testing.T, h http.Handler, l BodyLimits) []door {
	ts := startServer(t, Config{Handler: h, Limits: l})
	p, err := NewPlain(PlainConfig{Addr: "127.0.0.1:0", Handler: h, Limits: l})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(t.Context()) }() // cancelled before cleanups run
	t.Cleanup(func() { recv(t, "the plain listener to stop", done) })
	return []door{
		{"TLS", func(t *testing.T) net.Conn {
			c, err := tls.Dial("tcp", ts.Addr().String(), &tls.Config{RootCAs: ts.pool, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}},
		{"plain", func(t *testing.T) net.Conn {
			c, err := net.Dial("tcp", p.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}},
	}
}

// exchange writes raw on a new connection through d and reads one
// response. It reports the status and whether the server then closed the
// connection instead of answering anything more.
func exchange(t *testing.T, d door, raw string) (int, bool) {
	t.Helper()
	c := d.dial(t)
	c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("%d %s", resp.StatusCode, b)
	more, err := br.ReadString('\n')
	if err == nil {
		t.Logf("after the response the server sent %q", more)
	}
	var ne net.Error
	closed := err != nil && !(errors.As(err, &ne) && ne.Timeout())
	return resp.StatusCode, closed
}

// smuggling holds request bodies whose chunked framing is broken, each
// followed by what a lenient parser would take for a second request.
var smuggling = []struct{ name, body string }{
	{"bad chunk end", "3\r\nabcX0\r\n\r\n"},
	{"chunk size overflow", "ffffffffffffffffff1\r\nabc\r\n0\r\n\r\n"},
	{"bare LF after extension", "3;x\nabc\r\n0\r\n\r\n"},
}

const smuggled = "GET /smuggled HTTP/1.1\r\nHost: example\r\n\r\n"

// TestMalformedChunkedBodyClosesConnection sends bodies with broken chunked
// framing to an origin route (whose transport closes the failed body) and
// to a function-like handler (which reads it itself): each must be
// answered 400 with the connection closed, and what follows the body must
// never reach the origin as a request.
func TestMalformedChunkedBodyClosesConnection(t *testing.T) {
	rec := newRecorder(t)
	handlers := []struct {
		name string
		h    http.Handler
	}{
		{"origin route", forwarder(t, rec.URL)},
		{"function route", bodyHandler(nil)},
	}
	for _, hc := range handlers {
		for _, d := range frontDoors(t, hc.h, BodyLimits{}) {
			for _, c := range smuggling {
				t.Run(hc.name+"/"+d.name+"/"+c.name, func(t *testing.T) {
					raw := "POST /upload HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n" + c.body + smuggled
					code, closed := exchange(t, d, raw)
					if code != http.StatusBadRequest {
						t.Errorf("status %d, want 400", code)
					}
					if !closed {
						t.Error("connection kept open after a malformed body")
					}
				})
			}
		}
	}
	for _, r := range rec.requests() {
		if strings.Contains(r, "smuggled") {
			t.Errorf("the origin was sent %q, which no client sent as a request", r)
		}
	}
}

// TestOversizedChunkedBodyClosesConnection: a chunked body over MaxBytes
// fails at the limit; the rest of it must not be read as a request.
func TestOversizedChunkedBodyClosesConnection(t *testing.T) {
	rec := newRecorder(t)
	for _, d := range frontDoors(t, forwarder(t, rec.URL), BodyLimits{MaxBytes: 10}) {
		t.Run(d.name, func(t *testing.T) {
			raw := "POST /upload HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"20\r\n" + strings.Repeat("a", 32) + "\r\n0\r\n\r\n" + smuggled
			code, closed := exchange(t, d, raw)
			if code != http.StatusRequestEntityTooLarge || !closed {
				t.Errorf("status %d, closed %v; want 413 and closed", code, closed)
			}
		})
	}
	for _, r := range rec.requests() {
		if strings.Contains(r, "smuggled") {
			t.Errorf("the origin was sent %q", r)
		}
	}
}

// TestSlowBodyAnswered408AndClosed holds back a body the headers announce:
// the request is answered 408 soon after the grace period and the
// connection closed, whether the handler forwards the body, reads it
// itself, or never reads it at all.
func TestSlowBodyAnswered408AndClosed(t *testing.T) {
	rec := newRecorder(t)
	l := BodyLimits{MinRate: 10 << 10, Grace: 200 * time.Millisecond}
	handlers := []struct {
		name string
		h    http.Handler
		want int
	}{
		{"origin route", forwarder(t, rec.URL), http.StatusRequestTimeout},
		{"function route", bodyHandler(nil), http.StatusRequestTimeout},
		// net/http drains an unread body before answering; the
		// deadline cuts that short.
		{"body ignored", http.NotFoundHandler(), http.StatusNotFound},
	}
	for _, hc := range handlers {
		for _, d := range frontDoors(t, hc.h, l) {
			for _, sent := range []string{"", "x"} {
				t.Run(hc.name+"/"+d.name+"/"+strings.Repeat("one byte", len(sent)), func(t *testing.T) {
					raw := "POST /upload HTTP/1.1\r\nHost: example\r\nContent-Length: 1000\r\n\r\n" + sent
					code, closed := exchange(t, d, raw)
					if code != hc.want || !closed {
						t.Errorf("status %d, closed %v; want %d and closed", code, closed, hc.want)
					}
				})
			}
		}
	}
}
