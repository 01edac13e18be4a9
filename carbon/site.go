package carbon

import (
	"fmt"
	"time"
)

// Site is a place that can run jobs: its grid region, how many jobs it runs
// at once, how long a job takes to reach it, its PUE and any heat reuse.
type Site struct {
	// Name identifies the site in assignments, metrics and reports.
	Name string
	// Region is the grid region whose intensity applies, and what a job's
	// allowed regions are matched against.
	Region string
	// Capacity is how many planned jobs may run at once; 0 means unlimited.
	Capacity int
	// Transfer is the one-way time to move a job (and its result back) to
	// the site; 0 for the local site. A job must start Transfer after it
	// could start locally and finish Transfer before its deadline.
	Transfer time.Duration
	// PUE is the site's power usage effectiveness (total / IT energy); 0
	// means 1.
	PUE float64
	// Heat describes heat reused outside the site, if any.
	Heat *HeatReuse
}

// pue returns the PUE, defaulting to 1.
func (s Site) pue() float64 {
	if s.PUE <= 0 {
		return 1
	}
	return s.PUE
}

// HeatReuse says how much of a site's IT heat displaces other heating, per
// notes/gpu.md §3: heat_delivered = E·f·u (capped by the sink), avoided =
// heat_delivered × EF_heat.
type HeatReuse struct {
	// Captured is f, the fraction of IT energy captured as useful heat (0..1).
	Captured float64
	// Demand is u, the fraction of that heat there is demand for (0..1);
	// 0 when the sink is already at temperature or the heat is dumped.
	Demand float64
	// DisplacedGCO2PerKWh is EF_heat, the emissions of the heating the reused
	// heat replaces, per kWh of heat (about 203 g for a gas boiler at 90 %).
	DisplacedGCO2PerKWh float64
	// HeatPumpCOP, when positive, says the displaced heating is a heat pump:
	// EF_heat is then the grid intensity divided by the COP, replacing
	// DisplacedGCO2PerKWh.
	HeatPumpCOP float64
	// SinkKW caps the heat the sink can take; 0 means no cap.
	SinkKW float64
}

// Avoided returns the heat delivered (kWh) and the emissions it avoids (g)
// for a job using itKWh of IT energy over runtime on a grid at intensity.
func (h *HeatReuse) Avoided(itKWh float64, runtime time.Duration, intensity float64) (heatKWh, grams float64) {
	if h == nil {
		return 0, 0
	}
	heatKWh = itKWh * h.Captured * h.Demand
	if h.SinkKW > 0 {
		heatKWh = min(heatKWh, h.SinkKW*runtime.Hours())
	}
	ef := h.DisplacedGCO2PerKWh
	if h.HeatPumpCOP > 0 {
		ef = intensity / h.HeatPumpCOP
	}
	return heatKWh, heatKWh * ef
}

func (s Site) validate() error {
	switch {
	case s.Name == "":
		return fmt.Errorf("site with region %q: no name: %w", s.Region, ErrInvalid)
	case s.Capacity < 0:
		return fmt.Errorf("site %s: capacity %d is negative: %w", s.Name, s.Capacity, ErrInvalid)
	case s.Transfer < 0:
		return fmt.Errorf("site %s: transfer %v is negative: %w", s.Name, s.Transfer, ErrInvalid)
	case s.PUE != 0 && s.PUE < 1:
		return fmt.Errorf("site %s: PUE %g is below 1: %w", s.Name, s.PUE, ErrInvalid)
	}
	if h := s.Heat; h != nil {
		if h.Captured < 0 || h.Captured > 1 || h.Demand < 0 || h.Demand > 1 {
			return fmt.Errorf("site %s: heat captured %g and demand %g must lie in [0, 1]: %w", s.Name, h.Captured, h.Demand, ErrInvalid)
		}
		if h.DisplacedGCO2PerKWh < 0 || h.HeatPumpCOP < 0 || h.SinkKW < 0 {
			return fmt.Errorf("site %s: heat factors must not be negative: %w", s.Name, ErrInvalid)
		}
	}
	return nil
}

// occupancy counts planned jobs per planner slot (Unix time / step).
type occupancy struct {
	base   int64
	counts []int32
}

func (o *occupancy) get(k int64) int32 {
	if k < o.base || k >= o.base+int64(len(o.counts)) {
		return 0
	}
	return o.counts[k-o.base]
}

// add adds d to slots [a, b].
func (o *occupancy) add(a, b int64, d int32) {
	if len(o.counts) == 0 {
		o.base = a
	}
	if a < o.base {
		grown := make([]int32, int(o.base-a)+len(o.counts))
		copy(grown[o.base-a:], o.counts)
		o.counts, o.base = grown, a
	}
	if need := int(b-o.base) + 1; need > len(o.counts) {
		if need <= cap(o.counts) {
			// The tail past len may hold counts that trim shifted away.
			n := len(o.counts)
			o.counts = o.counts[:need]
			clear(o.counts[n:])
		} else {
			grown := make([]int32, need, need*2)
			copy(grown, o.counts)
			o.counts = grown
		}
	}
	for k := a; k <= b; k++ {
		o.counts[k-o.base] += d
	}
}

// fits reports whether every slot in [a, b] is below capacity.
func (o *occupancy) fits(a, b int64, capacity int) bool {
	if capacity <= 0 {
		return true
	}
	for k := a; k <= b; k++ {
		if int(o.get(k)) >= capacity {
			return false
		}
	}
	return true
}

// trim forgets slots before k, which no future plan can touch.
func (o *occupancy) trim(k int64) {
	if k <= o.base {
		return
	}
	n := int(k - o.base)
	if n >= len(o.counts) {
		o.counts, o.base = o.counts[:0], k
		return
	}
	// Shift only when the dead prefix is large, so trimming every step is cheap.
	if n < len(o.counts)/2 && n < 4096 {
		return
	}
	o.counts = append(o.counts[:0], o.counts[n:]...)
	o.base = k
}
