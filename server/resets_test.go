package server

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestRapidResetGetsGoaway opens streams and resets each at once (HTTP/2
// rapid reset, CVE-2023-44487) on two connections: each must be sent
// GOAWAY once it has reset MaxResetStreams of them, and no handler may
// outlive its reset by running to completion.
func TestRapidResetGetsGoaway(t *testing.T) {
	ts := startServer(t, Config{
		MaxResetStreams: 5,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// An origin fetch nobody waits for any more: ends with the
			// client's request.
			select {
			case <-r.Context().Done():
			case <-time.After(wait):
				t.Error("handler outlived its reset stream")
			}
		}),
	})
	for conn := range 2 {
		c, err := tls.Dial("tcp", ts.Addr().String(), &tls.Config{RootCAs: ts.pool, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(wait))
		c.Write([]byte(http2.ClientPreface))
		fr := http2.NewFramer(c, c)
		fr.WriteSettings()
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		const streams = 200
		go func() {
			for i := range streams {
				hb.Reset()
				for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "example"}, {":path", "/u/" + strconv.Itoa(i)}} {
					enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
				}
				id := uint32(2*i + 1)
				if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}) != nil ||
					fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
					return // the server hung up
				}
			}
		}()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("connection %d: no GOAWAY after resetting %d streams: %v", conn, streams, err)
			}
			if _, ok := f.(*http2.GoAwayFrame); ok {
				break
			}
		}
	}
}
