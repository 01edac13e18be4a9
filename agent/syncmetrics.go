package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// syncMetrics are the agent's side of the fleet link: how long installs
// take and when the hub link drops and returns. Releases accepted and
// refused are the watcher's (tern_artifacts_total).
type syncMetrics struct {
	install     prometheus.Histogram
	linkChanges *prometheus.CounterVec // state: up, down
}

func (a *Agent) registerSyncMetrics() {
	a.syncm = &syncMetrics{
		install: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tern_install_seconds",
			Help:    "Time from a verified release to it serving: compile (or cache load), route check, table swap and store write.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 8), // 5 ms to 80 s
		}),
		linkChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tern_hub_link_changes_total",
			Help: "Changes of a leaf agent's hub link, by the state it went to (up, down); ups after the first are reconnects.",
		}, []string{"state"}),
	}
	a.syncm.linkChanges.WithLabelValues("up")
	a.syncm.linkChanges.WithLabelValues("down")
	a.reg.MustRegister(a.syncm.install, a.syncm.linkChanges,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tern_hub_link_up",
			Help: "1 while the agent reaches its hub (always, for the hub tern up embeds), 0 while the link is down.",
		}, func() float64 {
			if a.hubLinked() {
				return 1
			}
			return 0
		}))
}

// observeInstall records an install that began at start.
func (m *syncMetrics) observeInstall(start time.Time) {
	m.install.Observe(time.Since(start).Seconds())
}
