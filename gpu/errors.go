package gpu

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors that callers branch on. Errors returned by this package
// wrap at most one of them, with context naming the app, model, device or
// limit involved.
var (
	// ErrNoNVML means NVML cannot be used here: built without cgo, no
	// NVIDIA library, or no loaded driver. It means "no GPUs", not a fault.
	ErrNoNVML = errors.New("no NVML")
	// ErrDeviceLost means a device stopped answering (NVML's GPU_IS_LOST);
	// the caller rediscovers.
	ErrDeviceLost = errors.New("gpu lost")
	// ErrQueueFull means an app's or the site's queue is at its depth limit.
	ErrQueueFull = errors.New("gpu queue full")
	// ErrQueueTimeout means a request waited the longest queue wait allowed.
	ErrQueueTimeout = errors.New("gpu queue wait timed out")
	// ErrModelNotAllowed means the app's manifest does not grant the model.
	ErrModelNotAllowed = errors.New("model not allowed")
	// ErrModelNotSupported means no backend on this site serves the model.
	ErrModelNotSupported = errors.New("model not supported")
	// ErrNoDevice means the model is served here but every device serving
	// it is lost or unavailable.
	ErrNoDevice = errors.New("no device available")
	// ErrInvalidInput means the request itself is unacceptable (empty
	// prompt, parameter out of range, oversized input).
	ErrInvalidInput = errors.New("invalid input")
	// ErrBackend means the backend failed to run the request.
	ErrBackend = errors.New("backend error")
	// ErrClosed means the service or scheduler has been closed.
	ErrClosed = errors.New("gpu service closed")
)

// BusyError is returned when a request could not get a lease in time:
// it wraps [ErrQueueFull] or [ErrQueueTimeout] and says when a retry is
// worth trying, for an HTTP 503 with Retry-After.
type BusyError struct {
	Err        error         // ErrQueueFull or ErrQueueTimeout
	App        string        // the app that was refused
	Model      string        // the model it asked for
	Depth      int           // requests queued for the model's devices when refused
	Limit      string        // the limit that refused it, e.g. "app queue depth 64"
	RetryAfter time.Duration // whole seconds, at least 1s
}

// Error names the app, model, the limit that refused it and the retry delay.
func (e *BusyError) Error() string {
	return fmt.Sprintf("gpu lease for %s (model %s): %v (%s, %d queued, retry after %s)",
		e.App, e.Model, e.Err, e.Limit, e.Depth, e.RetryAfter)
}

// Unwrap returns ErrQueueFull or ErrQueueTimeout.
func (e *BusyError) Unwrap() error { return e.Err }

// Reason maps an error to a short, stable label for metrics and logs:
// "ok" for nil, then "queue_full", "timeout", "not_allowed",
// "not_supported", "no_device", "invalid_input", "deadline", "canceled",
// "closed", "backend_error".
func Reason(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrQueueFull):
		return "queue_full"
	case errors.Is(err, ErrQueueTimeout):
		return "timeout"
	case errors.Is(err, ErrModelNotAllowed):
		return "not_allowed"
	case errors.Is(err, ErrModelNotSupported):
		return "not_supported"
	case errors.Is(err, ErrNoDevice):
		return "no_device"
	case errors.Is(err, ErrInvalidInput):
		return "invalid_input"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, ErrClosed):
		return "closed"
	default:
		return "backend_error"
	}
}
