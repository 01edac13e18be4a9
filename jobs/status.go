package jobs

import (
	"cmp"
	"slices"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// maxStatusPoints bounds the forecast Status returns (4 days of hours, one
// day of 15-minute values).
const maxStatusPoints = 96

// Status returns the site's intensity now, the forecast ahead, and the
// queue.
func (s *Scheduler) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st := Status{Site: s.cfg.Site.Name, Region: s.cfg.Site.Region, Capacity: s.cfg.Site.Capacity}
	if s.current != nil {
		p := point(*s.current)
		st.Now = &p
	}
	for _, r := range s.readings {
		if r.End().After(now) && len(st.Forecast) < maxStatusPoints {
			st.Forecast = append(st.Forecast, point(r))
		}
	}
	var queued []*record
	off := map[[2]string]*OffloadedTotals{}
	for _, r := range s.jobs {
		if res := r.Result; res != nil && res.Site != "" {
			k := [2]string{r.App, res.Site}
			t := off[k]
			if t == nil {
				t = &OffloadedTotals{App: r.App, Site: res.Site}
				off[k] = t
			}
			t.Runs++
			if res.Grams != nil && res.RunNowGrams != nil {
				t.Accounted++
				t.Grams += *res.Grams
				t.RunNowGrams += *res.RunNowGrams
			}
		}
		switch r.State {
		case StateScheduled:
			st.Queued++
			queued = append(queued, r)
		case StateRunning:
			st.Running++
		}
	}
	slices.SortFunc(queued, func(a, b *record) int {
		return cmp.Or(planStart(a).Compare(planStart(b)), cmp.Compare(a.ID, b.ID))
	})
	for _, r := range queued[:min(len(queued), 20)] {
		st.Next = append(st.Next, r.view())
	}
	for _, t := range off {
		st.Offloaded = append(st.Offloaded, *t)
	}
	slices.SortFunc(st.Offloaded, func(a, b OffloadedTotals) int { return cmp.Or(cmp.Compare(a.App, b.App), cmp.Compare(a.Site, b.Site)) })
	return st
}

func planStart(r *record) time.Time {
	if r.Plan == nil {
		return r.Accepted
	}
	return r.Plan.Start
}

func point(r carbon.Reading) Point {
	return Point{Start: r.Start, Duration: r.Duration, GCO2PerKWh: r.GCO2PerKWh, Kind: r.Kind.String(), Signal: r.Signal.String(), Source: r.Source}
}

// Intensity returns the site region's intensity as last read (every
// Refresh), and false before the first successful read.
func (s *Scheduler) Intensity() (carbon.Reading, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == nil {
		return carbon.Reading{}, false
	}
	return *s.current, true
}
