package sim

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

// PlotOptions selects what [Report.WriteSVG] draws.
type PlotOptions struct {
	// From and To bound the time axis; zero values mean the first 7 days
	// of the first site's trace, since a year of start marks is unreadable.
	From, To time.Time
	// Width and Height in pixels; 0 means 1200 × 420.
	Width, Height int
}

// WriteSVG draws the first site's intensity over time, with Tern's chosen
// start times (green) and the oracle's (grey) marked on it. It needs the
// sites the report was made from.
func (r Report) WriteSVG(w io.Writer, sites []Site, opt PlotOptions) error {
	if len(sites) == 0 || len(sites[0].Readings) == 0 {
		return fmt.Errorf("plot: no site readings")
	}
	rs := sites[0].Readings
	if opt.From.IsZero() {
		opt.From = rs[0].Start
	}
	if opt.To.IsZero() {
		opt.To = opt.From.Add(7 * 24 * time.Hour)
	}
	if opt.Width <= 0 {
		opt.Width = 1200
	}
	if opt.Height <= 0 {
		opt.Height = 420
	}
	const ml, mr, mt, mb = 60.0, 20.0, 30.0, 50.0
	pw, ph := float64(opt.Width)-ml-mr, float64(opt.Height)-mt-mb
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range rs {
		if x.End().After(opt.From) && x.Start.Before(opt.To) {
			lo, hi = math.Min(lo, x.GCO2PerKWh), math.Max(hi, x.GCO2PerKWh)
		}
	}
	if math.IsInf(lo, 0) {
		return fmt.Errorf("plot: no readings between %s and %s", opt.From.Format(time.RFC3339), opt.To.Format(time.RFC3339))
	}
	lo, hi = math.Max(0, lo-0.05*(hi-lo)), hi+0.05*(hi-lo)+1
	span := opt.To.Sub(opt.From).Seconds()
	xOf := func(t time.Time) float64 { return ml + pw*t.Sub(opt.From).Seconds()/span }
	yOf := func(v float64) float64 { return mt + ph*(1-(v-lo)/(hi-lo)) }
	valueAt := func(t time.Time) float64 {
		for _, x := range rs {
			if x.Contains(t) {
				return x.GCO2PerKWh
			}
		}
		return math.NaN()
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", opt.Width, opt.Height, opt.Width, opt.Height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%g" y="18">%s: intensity (gCO2/kWh) with start times; tern %.1f %% saved, oracle %.1f %%</text>`+"\n",
		ml, html.EscapeString(sites[0].Name), r.SavedPct(r.Tern), r.SavedPct(r.Oracle))
	// Axes and a few labelled gridlines.
	fmt.Fprintf(&b, `<g stroke="#ccc">`)
	for i := 0; i <= 4; i++ {
		v := lo + (hi-lo)*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%.1f" y2="%.1f"/>`, ml, ml+pw, yOf(v), yOf(v))
	}
	fmt.Fprintf(&b, "</g>\n")
	for i := 0; i <= 4; i++ {
		v := lo + (hi-lo)*float64(i)/4
		fmt.Fprintf(&b, `<text x="%g" y="%.1f" text-anchor="end">%.0f</text>`, ml-6, yOf(v)+4, v)
	}
	for t := opt.From.Truncate(24 * time.Hour); !t.After(opt.To); t = t.Add(24 * time.Hour) {
		if t.Before(opt.From) {
			continue
		}
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%g" y2="%g" stroke="#eee"/><text x="%.1f" y="%g" text-anchor="middle">%s</text>`,
			xOf(t), xOf(t), mt, mt+ph, xOf(t), mt+ph+18, t.Format("Jan 2"))
	}
	b.WriteString("\n")
	// The intensity as a step line.
	var pts []string
	for _, x := range rs {
		if !x.End().After(opt.From) || !x.Start.Before(opt.To) {
			continue
		}
		s, e := maxT(x.Start, opt.From), minT(x.End(), opt.To)
		pts = append(pts, fmt.Sprintf("%.1f,%.1f %.1f,%.1f", xOf(s), yOf(x.GCO2PerKWh), xOf(e), yOf(x.GCO2PerKWh)))
	}
	fmt.Fprintf(&b, `<polyline fill="none" stroke="#333" stroke-width="1.2" points="%s"/>`+"\n", strings.Join(pts, " "))
	marks := func(o Outcome, color string, r float64, dy float64) {
		fmt.Fprintf(&b, `<g fill="%s" fill-opacity="0.8">`, color)
		for _, p := range o.Placements {
			if p.Site != sites[0].Name || p.Start.Before(opt.From) || !p.Start.Before(opt.To) {
				continue
			}
			if v := valueAt(p.Start); !math.IsNaN(v) {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="%g"/>`, xOf(p.Start), yOf(v)+dy, r)
			}
		}
		b.WriteString("</g>\n")
	}
	marks(r.Oracle, "#999", 3, 0)
	marks(r.Tern, "#1a9850", 4, 0)
	fmt.Fprintf(&b, `<g font-size="11"><circle cx="%g" cy="%g" r="4" fill="#1a9850"/><text x="%g" y="%g">tern start</text><circle cx="%g" cy="%g" r="3" fill="#999"/><text x="%g" y="%g">oracle start</text></g>`+"\n",
		ml+pw-170, mt+ph+36, ml+pw-162, mt+ph+40, ml+pw-80, mt+ph+36, ml+pw-72, mt+ph+40)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func maxT(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minT(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
