package carbon

import (
	"fmt"
	"time"
)

// RemoteSite is another site the planner may send jobs to, as its
// heartbeat describes it: the site, its forecast and the apps it can run.
type RemoteSite struct {
	Site
	// Forecast is the site's forecast, labelled Source; nil plans no job
	// there by emissions.
	Forecast *Curve
	Source   string
	// Apps are the apps whose jobs the site can take (it runs the same
	// signed release); nil means any.
	Apps []string
}

// SetRemote replaces every site but the first (the local one) with
// remote and re-plans every queued job. A site that stays keeps the
// capacity held by jobs already handed out to it; capacity is counted
// for this planner's jobs only, so a remote site's Capacity should be
// what it has free.
func (p *Planner) SetRemote(remote []RemoteSite) error {
	seen := map[string]bool{}
	p.mu.Lock()
	defer p.mu.Unlock()
	seen[p.sites[0].Name] = true
	for _, r := range remote {
		if err := r.Site.validate(); err != nil {
			return fmt.Errorf("set remote sites: %w", err)
		}
		if seen[r.Name] {
			return fmt.Errorf("set remote sites: site %s listed twice: %w", r.Name, ErrInvalid)
		}
		seen[r.Name] = true
	}
	for _, q := range p.queued {
		p.release(q)
	}
	old := map[string]*siteState{}
	for _, s := range p.sites[1:] {
		old[s.Name] = s
	}
	p.sites = p.sites[:1]
	p.byName = map[string]int{p.sites[0].Name: 0}
	for _, r := range remote {
		s := &siteState{Site: r.Site, curve: r.Forecast, source: r.Source}
		if o := old[r.Name]; o != nil {
			s.occ = o.occ
		}
		if r.Apps != nil {
			s.apps = make(map[string]bool, len(r.Apps))
			for _, a := range r.Apps {
				s.apps[a] = true
			}
		}
		p.byName[r.Name] = len(p.sites)
		p.sites = append(p.sites, s)
	}
	p.replan(p.now())
	return nil
}

// Sites returns the names of the sites the planner places jobs on, the
// local one first.
func (p *Planner) Sites() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.sites))
	for i, s := range p.sites {
		out[i] = s.Name
	}
	return out
}

// CurveFromValues builds a curve of values on a regular grid of step from
// start (a forecast summary as sites advertise it), labelled source.
func CurveFromValues(start time.Time, step time.Duration, values []float64, kind Kind, signal Signal, source string) (*Curve, error) {
	rs := make([]Reading, len(values))
	for i, v := range values {
		rs[i] = Reading{Start: start.Add(time.Duration(i) * step), Duration: step, GCO2PerKWh: v, Kind: kind, Signal: signal, Source: source}
	}
	return Resample(rs, step)
}
