package gpu

import (
	"github.com/prometheus/client_golang/prometheus"
)

// appMetrics are the per-app and per-site collectors; a nil one records
// nothing.
type appMetrics struct {
	leases    *prometheus.CounterVec
	seconds   *prometheus.CounterVec
	wait      *prometheus.HistogramVec
	appEnergy *prometheus.CounterVec
	tokensVec *prometheus.CounterVec
	heat      *prometheus.CounterVec
	avoided   *prometheus.CounterVec
	gross     *prometheus.CounterVec
}

func newAppMetrics(reg prometheus.Registerer) (*appMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	c := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &appMetrics{
		leases:    c("tern_gpu_leases_total", "GPU lease requests by app and outcome (ok, queue_full, timeout, backend_error, ...).", "app", "outcome"),
		seconds:   c("tern_gpu_lease_seconds_total", "GPU-seconds held by app.", "app"),
		appEnergy: c("tern_gpu_app_energy_joules_total", "Device energy attributed to the app's leases.", "app"),
		tokensVec: c("tern_gpu_tokens_total", "Tokens processed, by app, model and kind (prompt, generated).", "app", "model", "kind"),
		heat:      c("tern_gpu_heat_reused_joules_total", "Heat delivered to the site's heat sink from attributed GPU energy.", "site"),
		avoided:   c("tern_gpu_avoided_co2e_grams_total", "Emissions avoided by reused heat, by what it displaced; never netted against gross.", "site", "displaced"),
		gross:     c("tern_gpu_gross_co2e_grams_total", "Gross emissions of attributed GPU energy at the site's PUE.", "site"),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tern_gpu_queue_wait_seconds", Help: "Time from asking for a GPU lease to getting it.",
			// 1µs to about 16s: uncontended grants through MaxQueueWait.
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 13),
		}, []string{"app"}),
	}
	var err error
	for _, p := range []**prometheus.CounterVec{&m.leases, &m.seconds, &m.appEnergy, &m.tokensVec, &m.heat, &m.avoided, &m.gross} {
		if *p, err = register(reg, *p); err != nil {
			return nil, err
		}
	}
	if m.wait, err = register(reg, m.wait); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *appMetrics) outcome(app string, err error) {
	if m != nil {
		m.leases.WithLabelValues(app, Reason(err)).Inc()
	}
}

func (m *appMetrics) lease(app string, u Usage, err error) {
	if m == nil {
		return
	}
	m.outcome(app, err)
	m.seconds.WithLabelValues(app).Add(u.Held.Seconds())
	m.wait.WithLabelValues(app).Observe(u.Wait.Seconds())
}

func (m *appMetrics) tokens(app, model string, prompt, generated uint32) {
	if m == nil {
		return
	}
	m.tokensVec.WithLabelValues(app, model, "prompt").Add(float64(prompt))
	if generated > 0 {
		m.tokensVec.WithLabelValues(app, model, "generated").Add(float64(generated))
	}
}

func (m *appMetrics) energy(app, site, displaced string, joules float64, e Emissions) {
	if m == nil {
		return
	}
	if displaced == "" {
		displaced = DisplacedNone
	}
	m.appEnergy.WithLabelValues(app).Add(joules)
	m.heat.WithLabelValues(site).Add(e.HeatDeliveredKWh * 3.6e6)
	m.avoided.WithLabelValues(site, displaced).Add(e.AvoidedG)
	m.gross.WithLabelValues(site).Add(e.GrossG)
}
