package agent

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	ternsync "github.com/tern-edge/tern/sync"
)

// rolloutMetrics count what a rollout controller did.
type rolloutMetrics struct {
	waves    prometheus.Counter
	finished *prometheus.CounterVec // result: done, failed
}

func newRolloutMetrics(reg prometheus.Registerer) *rolloutMetrics {
	m := &rolloutMetrics{
		waves: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tern_rollout_waves_total",
			Help: "Staged rollouts advanced to their next wave.",
		}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tern_rollouts_finished_total",
			Help: "Staged rollouts that ended, by result (done, failed: the fleet went back).",
		}, []string{"result"}),
	}
	m.finished.WithLabelValues("done")
	m.finished.WithLabelValues("failed")
	reg.MustRegister(m.waves, m.finished)
	return m
}

func (m *rolloutMetrics) wave() {
	if m != nil {
		m.waves.Inc()
	}
}

func (m *rolloutMetrics) finish(result string) {
	if m != nil {
		m.finished.WithLabelValues(result).Inc()
	}
}

// heartbeatLookup bounds the bucket lookup one scrape makes.
const heartbeatLookup = 2 * time.Second

// registerHubMetrics exports what a hub sees of its fleet: the agents
// connected as leaf nodes now and the heartbeats stored.
func registerHubMetrics(reg prometheus.Registerer, hub *ternsync.Hub, c *ternsync.Client) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tern_hub_agents_connected",
			Help: "Agents (leaf nodes) connected to this hub server now.",
		}, func() float64 { return float64(hub.Leafs()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tern_hub_heartbeats_total",
			Help: "Heartbeats the fleet bucket has taken since it was created (0 while it cannot be read).",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), heartbeatLookup)
			defer cancel()
			n, err := c.HeartbeatsStored(ctx)
			if err != nil {
				return 0
			}
			return float64(n)
		}),
	)
}
