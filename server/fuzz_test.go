package server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzRequestFraming sends a chunked POST with a fuzzed body, followed by a
// second request, through the whole stack (plain listener, body limits, a
// forwarding handler) to a recording origin. The second request may reach
// the origin only when the first was answered as a whole request (2xx): if
// its body failed, whatever followed was not sent as a request.
func FuzzRequestFraming(f *testing.F) {
	for _, c := range smuggling {
		f.Add(c.body)
	}
	f.Add("3\r\nabc\r\n0\r\n\r\n")
	f.Add("0\r\n\r\n")
	f.Add("3\r\nabc\r\n0\r\nX-Trailer: y\r\n\r\n")
	rec := newRecorder(f)
	p, err := NewPlain(PlainConfig{Addr: "127.0.0.1:0", Handler: forwarder(f, rec.URL), Limits: BodyLimits{MaxBytes: 1 << 16, Grace: time.Second}})
	if err != nil {
		f.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		f.Fatal(err)
	}
	ctx := f.Context() // cancelled before cleanups run
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	f.Cleanup(func() { <-done })
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, body string) {
		next := "/next-" + strconv.FormatInt(n.Add(1), 10)
		c, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "POST /first HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n"+body+"GET "+next+" HTTP/1.1\r\nHost: example\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return // the server hung up: nothing was forwarded after it
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		whole := resp.StatusCode/100 == 2
		// Read what else comes, until the server closes or goes quiet.
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			r, err := http.ReadResponse(br, nil)
			if err != nil {
				break
			}
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}
		if whole {
			return
		}
		for _, r := range rec.requests() {
			if strings.HasSuffix(r, next) {
				t.Fatalf("POST answered %d, yet the origin was sent %q", resp.StatusCode, r)
			}
		}
	})
}
