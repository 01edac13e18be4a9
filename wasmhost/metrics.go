package wasmhost

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Failure reasons, the values of tern_function_failures_total's reason
// label. docs/GUEST_ABI.md lists the status each one answers with.
const (
	reasonTrap             = "trap"              // the guest trapped (unreachable, out of bounds, ...)
	reasonExit             = "exit"              // proc_exit with a non-zero code
	reasonDeadline         = "deadline"          // the request timeout passed
	reasonMemory           = "memory"            // a trap or exit with memory at its cap
	reasonOversizeResponse = "oversize_response" // stdout passed max_response
	reasonOversizeRequest  = "oversize_request"  // the body passed max_request (413)
	reasonBadRequest       = "bad_request"       // the body could not be read (400)
	reasonInvalidOutput    = "invalid_output"    // stdout is not a CGI response
	reasonInstantiate      = "instantiate"       // the instance could not be created
	reasonCanceled         = "canceled"          // the client went away first
	reasonClosed           = "closed"            // the app was closed before the request ran
)

// metrics are the runtime's Prometheus collectors; a nil *metrics records
// nothing.
type metrics struct {
	seconds  *prometheus.HistogramVec
	failures *prometheus.CounterVec
}

// newMetrics registers the collectors with reg. A collector that reg
// already holds (a second Runtime on the same registry) is reused.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "tern_function_seconds",
		Help: "Time to instantiate and run a function for one request.",
		// 10µs to about 10s: cold starts of small guests through timeouts.
		Buckets: prometheus.ExponentialBuckets(10e-6, 4, 11),
	}, []string{"app"})
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tern_function_failures_total",
		Help: "Function requests that failed, by app and reason.",
	}, []string{"app", "reason"})
	var err error
	if seconds, err = register(reg, seconds); err != nil {
		return nil, err
	}
	if failures, err = register(reg, failures); err != nil {
		return nil, err
	}
	return &metrics{seconds: seconds, failures: failures}, nil
}

// register registers c, or returns the equal collector reg already has.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register metrics: %w", err)
}

// appMetrics are one app's curried collectors, looked up once at Load so
// that a request pays no label lookup.
type appMetrics struct {
	seconds  prometheus.Observer
	failures *prometheus.CounterVec
	app      string
}

func (m *metrics) forApp(app string) *appMetrics {
	if m == nil {
		return nil
	}
	return &appMetrics{seconds: m.seconds.WithLabelValues(app), failures: m.failures, app: app}
}

func (m *appMetrics) observe(d time.Duration) {
	if m != nil {
		m.seconds.Observe(d.Seconds())
	}
}

func (m *appMetrics) fail(reason string) {
	if m != nil {
		m.failures.WithLabelValues(m.app, reason).Inc()
	}
}
