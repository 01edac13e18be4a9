package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// Defaults for BodyLimits and the stream limits of Config.
const (
	// DefaultMaxBodyBytes bounds a request body. Functions have their own,
	// usually smaller, cap in their manifest; this one protects the agent.
	DefaultMaxBodyBytes = 64 << 20
	// DefaultBodyMinRate and DefaultBodyGrace follow Apache's
	// mod_reqtimeout (body=20,MinRate=500): a client must send its body at
	// 500 bytes/s on average once 20 s have passed.
	DefaultBodyMinRate = 500
	DefaultBodyGrace   = 20 * time.Second
	// DefaultMaxConcurrentStreams bounds the requests in flight on one
	// HTTP/2 or HTTP/3 connection.
	DefaultMaxConcurrentStreams = 250
)

// BodyLimits bound request bodies. Zero values take the defaults above.
type BodyLimits struct {
	// MaxBytes is the largest body accepted. A request announcing more
	// gets 413 before its handler runs; a body that turns out larger
	// fails the handler's read with an *http.MaxBytesError.
	MaxBytes int64
	// MinRate, in bytes per second, and Grace cut off slow senders: after
	// Grace, a body read fails unless the body so far has arrived at
	// MinRate on average since the request began. Together with the
	// header timeout this defeats slowloris clients, which hold a
	// connection by sending a byte now and then.
	MinRate int64
	Grace   time.Duration
}

func (l BodyLimits) withDefaults() BodyLimits {
	setDefault(&l.MaxBytes, DefaultMaxBodyBytes)
	setDefault(&l.MinRate, DefaultBodyMinRate)
	setDefault(&l.Grace, DefaultBodyGrace)
	return l
}

// ErrBodyTooSlow reports a request body that arrived below the minimum
// rate.
var ErrBodyTooSlow = errors.New("request body too slow")

// wrap applies the limits to every request h serves.
func (l BodyLimits) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > l.MaxBytes {
			if r.ProtoMajor == 1 {
				// The unread body would have to be drained first.
				w.Header().Set("Connection", "close")
			}
			http.Error(w, fmt.Sprintf("request body of %d bytes exceeds the limit of %d", r.ContentLength, l.MaxBytes), http.StatusRequestEntityTooLarge)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &rateBody{
				body:  http.MaxBytesReader(w, r.Body, l.MaxBytes),
				rc:    http.NewResponseController(w),
				start: time.Now(),
				l:     l,
			}
		}
		h.ServeHTTP(w, r)
	})
}

// rateBody enforces BodyLimits' minimum rate with read deadlines: before
// each read the deadline is the time by which the bytes received so far
// plus nothing more would fall under the rate, so a stalled sender is cut
// off by the deadline rather than by a check that would only run once its
// next byte arrived.
type rateBody struct {
	body  io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	l     BodyLimits
	n     int64
	done  bool // EOF, an error, or Close: the deadline is cleared
}

func (b *rateBody) Read(p []byte) (int, error) {
	if b.done {
		return b.body.Read(p)
	}
	deadline := b.start.Add(b.l.Grace + time.Duration(b.n*int64(time.Second)/b.l.MinRate))
	// Writers that cannot set deadlines (tests' recorders) still get
	// the size limit.
	_ = b.rc.SetReadDeadline(deadline)
	n, err := b.body.Read(p)
	b.n += int64(n)
	if err != nil {
		b.finish()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w: %d bytes in %s, under %d bytes/s after %s", ErrBodyTooSlow, b.n, time.Since(b.start).Round(time.Millisecond), b.l.MinRate, b.l.Grace)
		}
	}
	return n, err
}

// finish clears the read deadline once the body is done with, so that it
// cannot cut the connection while the handler is still writing, nor the
// next request on it.
func (b *rateBody) finish() {
	if !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

func (b *rateBody) Close() error {
	b.finish()
	return b.body.Close()
}
