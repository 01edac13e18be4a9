package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	gosync "sync"
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

// BodyError is a request body that could not be read whole: malformed
// framing, over the size limit, or too slow. The connection it came on is
// closed after the response, since what follows on it cannot be trusted to
// be the next request; Status is the response that answers it.
type BodyError struct {
	Status int // 400, 408 or 413
	Err    error
}

func (e *BodyError) Error() string { return e.Err.Error() }

// Unwrap returns the read error, such as an *http.MaxBytesError.
func (e *BodyError) Unwrap() error { return e.Err }

// HTTPStatus is the status that answers the request.
func (e *BodyError) HTTPStatus() int { return e.Status }

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
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		b := &rateBody{
			body:  http.MaxBytesReader(w, r.Body, l.MaxBytes),
			rc:    http.NewResponseController(w),
			start: time.Now(),
			l:     l,
		}
		// The deadline holds from the start: a handler that never reads
		// the body still leaves net/http to drain it after the response.
		_ = b.rc.SetReadDeadline(b.deadline())
		r.Body = b
		h.ServeHTTP(w, r)
		if b.broken() && r.ProtoMajor == 1 {
			closeAfterReply(w)
		}
	})
}

// closeAfterReply makes net/http close an HTTP/1 connection once the
// response is written, whether or not its header is. net/http does so by
// itself when the handler's body is its own and failed; behind a wrapper
// it cannot tell, and a failed chunked body would leave the rest of the
// body to be parsed as the next request. A MaxBytesReader that goes over
// its limit is the documented way to ask for the close.
func closeAfterReply(w http.ResponseWriter) {
	var p [1]byte
	_, _ = http.MaxBytesReader(w, io.NopCloser(strings.NewReader("x")), 0).Read(p[:])
}

// rateBody enforces BodyLimits' minimum rate with read deadlines: before
// each read the deadline is the time by which the bytes received so far
// plus nothing more would fall under the rate, so a stalled sender is cut
// off by the deadline rather than by a check that would only run once its
// next byte arrived. The deadline is cleared only at the end of the body:
// while any of it is unread, net/http may still read it, after the
// handler, to find the next request.
//
// Read and Close may run on another goroutine than the handler's (an
// upstream transport writing the body), hence the mutex.
type rateBody struct {
	body  io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	l     BodyLimits

	mu     gosync.Mutex
	n      int64
	eof    bool  // the whole body was read; the deadline is cleared
	err    error // the first read error other than EOF
	closed bool
}

func (b *rateBody) deadline() time.Time {
	return b.start.Add(b.l.Grace + time.Duration(b.n*int64(time.Second)/b.l.MinRate))
}

func (b *rateBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if b.eof || b.closed {
		return b.body.Read(p)
	}
	// Writers that cannot set deadlines (tests' recorders) still get
	// the size limit.
	_ = b.rc.SetReadDeadline(b.deadline())
	n, err := b.body.Read(p)
	b.n += int64(n)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		b.eof = true
		_ = b.rc.SetReadDeadline(time.Time{})
	default:
		b.err = b.fail(err)
		err = b.err
	}
	return n, err
}

// fail classifies a read error. The deadline stays as it is, so that
// nothing waits on the rest of this body.
func (b *rateBody) fail(err error) error {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return &BodyError{Status: http.StatusRequestEntityTooLarge, Err: err}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &BodyError{Status: http.StatusRequestTimeout, Err: fmt.Errorf("%w: %d bytes in %s, under %d bytes/s after %s", ErrBodyTooSlow, b.n, time.Since(b.start).Round(time.Millisecond), b.l.MinRate, b.l.Grace)}
	default:
		return &BodyError{Status: http.StatusBadRequest, Err: fmt.Errorf("read request body: %w", err)}
	}
}

// ReadErr returns the error that ended the body early, a *BodyError, or
// nil. A handler whose body was read elsewhere (by a transport sending it
// upstream) asks it which status to answer with: the failure also cancels
// the request's context, so the transport may report only that.
func (b *rateBody) ReadErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// broken reports whether the body failed or was closed unfinished: what
// follows it on the connection is not known to be a request.
func (b *rateBody) broken() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err != nil || b.closed && !b.eof
}

func (b *rateBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return b.body.Close()
}
