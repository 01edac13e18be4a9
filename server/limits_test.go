package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
)

// bodyHandler reads the whole body and reports what happened: 200 with
// the size, or 413 for a body over the limit, or 408 for a slow one. Every
// read error is also sent on errs when it is not nil.
func bodyHandler(errs chan<- error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if errs != nil {
			errs <- err
		}
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		case errors.Is(err, ErrBodyTooSlow):
			http.Error(w, err.Error(), http.StatusRequestTimeout)
		case err != nil:
			http.Error(w, err.Error(), http.StatusBadRequest)
		default:
			fmt.Fprintf(w, "%d", n)
		}
	})
}

func TestOversizedHeaders(t *testing.T) {
	ts := startServer(t, Config{Handler: bodyHandler(nil), MaxHeaderBytes: 4 << 10})
	for _, c := range clients(t, ts.pool) {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", ts.url, nil)
			req.Header.Set("X-Small", "fine")
			resp, err := c.rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("small headers: status %d", resp.StatusCode)
			}
			req, _ = http.NewRequest("GET", ts.url, nil)
			req.Header.Set("X-Big", strings.Repeat("x", 64<<10))
			resp, err = c.rt.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Fatalf("64 KiB of headers over a 4 KiB limit: status %d", resp.StatusCode)
				}
				return
			}
			// HTTP/2 and HTTP/3 clients learn the server's limit from
			// its settings and refuse to send, which is also a pass.
			if !strings.Contains(err.Error(), "header") {
				t.Fatalf("oversized headers: %v", err)
			}
		})
	}
}

func TestOversizedBodies(t *testing.T) {
	ts := startServer(t, Config{Handler: bodyHandler(nil), Limits: BodyLimits{MaxBytes: 1000}})
	for _, c := range clients(t, ts.pool) {
		t.Run(c.name, func(t *testing.T) {
			post := func(body io.Reader, size int64) (int, string) {
				t.Helper()
				req, _ := http.NewRequest("POST", ts.url, body)
				req.ContentLength = size
				resp, err := c.rt.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, strings.TrimSpace(string(b))
			}
			if code, body := post(strings.NewReader(strings.Repeat("a", 1000)), 1000); code != 200 || body != "1000" {
				t.Errorf("body at the limit: %d %q", code, body)
			}
			// Announced: refused before the handler runs.
			if code, body := post(strings.NewReader(strings.Repeat("a", 1001)), 1001); code != 413 || body != "request body of 1001 bytes exceeds the limit of 1000" {
				t.Errorf("announced oversized body: %d %q", code, body)
			}
			// Not announced (chunked, or no length in HTTP/2 and 3): the
			// handler's read fails at the limit.
			if code, body := post(io.MultiReader(strings.NewReader(strings.Repeat("a", 5000))), -1); code != 413 || body != "http: request body too large" {
				t.Errorf("unannounced oversized body: %d %q", code, body)
			}
		})
	}
}

func TestSlowBodyCutOff(t *testing.T) {
	errs := make(chan error, 10)
	ts := startServer(t, Config{
		Handler: bodyHandler(errs),
		Limits:  BodyLimits{MinRate: 10 << 10, Grace: 200 * time.Millisecond},
	})
	for _, c := range clients(t, ts.pool) {
		t.Run(c.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			defer pw.Close()
			go func() {
				pw.Write([]byte("x")) // then stall, as a slowloris does
			}()
			req, _ := http.NewRequest("POST", ts.url, pr)
			req.ContentLength = 1 << 20
			start := time.Now()
			done := make(chan struct{})
			go func() {
				defer close(done)
				if resp, err := c.rt.RoundTrip(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
			err := recv(t, "the handler's read to fail", errs)
			if !errors.Is(err, ErrBodyTooSlow) {
				t.Fatalf("handler read: %v, want ErrBodyTooSlow", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("cut off after %s, want about the 200ms grace", d)
			}
			pw.CloseWithError(errors.New("test over"))
			recv(t, "the client to finish", done)
		})
	}
}

func TestSlowHeadersCutOff(t *testing.T) {
	ts := startServer(t, Config{Handler: bodyHandler(nil), ReadHeaderTimeout: 200 * time.Millisecond})
	conn, err := tls.Dial("tcp", ts.Addr().String(), &tls.Config{RootCAs: ts.pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	// Half a request line, then nothing: the server must hang up.
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(wait))
	_, err = bufio.NewReader(conn).ReadString('\n')
	if err == nil {
		t.Fatal("server answered a request whose headers never ended")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cut off after %s (%v), want about the 200ms header timeout", d, err)
	}
}

// TestMaxConcurrentStreams checks what the server tells HTTP/2 and QUIC
// peers: the HTTP/2 SETTINGS frame, and the QUIC stream limit a client
// runs into when it opens one stream too many.
func TestMaxConcurrentStreams(t *testing.T) {
	ts := startServer(t, Config{MaxConcurrentStreams: 2, Handler: bodyHandler(nil)})

	t.Run("HTTP/2", func(t *testing.T) {
		conn, err := tls.Dial("tcp", ts.Addr().String(), &tls.Config{RootCAs: ts.pool, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(wait))
		if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		fr := http2.NewFramer(conn, conn)
		if err := fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		sf, ok := f.(*http2.SettingsFrame)
		if !ok {
			t.Fatalf("first frame %T, want SETTINGS", f)
		}
		if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != 2 {
			t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, %v; want 2", v, ok)
		}
	})

	t.Run("HTTP/3", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		conn, err := quic.DialAddr(ctx, ts.Addr().String(), &tls.Config{RootCAs: ts.pool, NextProtos: []string{http3.NextProtoH3}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.CloseWithError(0, "")
		for i := range 2 {
			if _, err := conn.OpenStream(); err != nil {
				t.Fatalf("stream %d: %v", i+1, err)
			}
		}
		var limit *quic.StreamLimitReachedError
		if _, err := conn.OpenStream(); !errors.As(err, &limit) {
			t.Fatalf("third stream: %v, want the stream limit", err)
		}
	})
}
