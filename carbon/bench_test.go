package carbon

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// benchPlanner returns a planner over a 10-day hourly forecast with queued
// jobs already placed, 1-h jobs with 24-h windows spread over 8 days.
func benchPlanner(b *testing.B, queued, capacity int) (*Planner, *time.Time) {
	b.Helper()
	vals := make([]float64, 24*10)
	for i := range vals {
		vals[i] = 250 + 100*math.Sin(float64(i)/24*2*math.Pi) + float64(i%7)
	}
	now := t0
	p, err := NewPlanner(PlannerConfig{Sites: []Site{{Name: "here", Capacity: capacity}}, Step: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	c, _ := NewCurve(t0, time.Hour, vals)
	if err := p.SetForecast("here", c, "bench"); err != nil {
		b.Fatal(err)
	}
	for i := range queued {
		a := t0.Add(time.Duration(i%(24*8)) * time.Hour)
		if _, err := p.Submit(Job{ID: fmt.Sprintf("q%d", i), Arrival: a, Runtime: time.Hour, Deadline: a.Add(25 * time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	return p, &now
}

// BenchmarkPlannerSubmit is the cost of planning one more job when 100,000
// are queued (capacity-limited, so every candidate's slots are checked).
func BenchmarkPlannerSubmit(b *testing.B) {
	p, _ := benchPlanner(b, 100_000, 1000)
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("n%d", i)
		a := t0.Add(time.Duration(i%(24*8)) * time.Hour)
		if _, err := p.Submit(Job{ID: id, Arrival: a, Runtime: time.Hour, Deadline: a.Add(25 * time.Hour)}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		p.Cancel(id)
		b.StartTimer()
		i++
	}
}

// BenchmarkPlannerReplan re-plans 100,000 queued jobs after a forecast
// change; ns/job is the cost per job.
func BenchmarkPlannerReplan(b *testing.B) {
	const n = 100_000
	p, _ := benchPlanner(b, n, 1000)
	for b.Loop() {
		p.Replan()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/job")
}

// BenchmarkForecast is the cost of one forecast as the agent makes it: 35
// days of hourly history (FromHistory's lookback), 48 hours ahead.
func BenchmarkForecast(b *testing.B) {
	const days = 35
	vals := make([]float64, days*24)
	for i := range vals {
		vals[i] = 250 + 100*math.Sin(float64(i)/24*2*math.Pi) + 40*math.Sin(float64(i)/97) + float64(i%7)
	}
	c, err := NewCurve(t0, time.Hour, vals)
	if err != nil {
		b.Fatal(err)
	}
	at := t0.Add(days * 24 * time.Hour)
	for _, f := range []Forecaster{SeasonalBlend{}, SeasonalRegression{}} {
		b.Run(f.Name(), func(b *testing.B) {
			for b.Loop() {
				if _, err := f.Forecast(c, at, 48*time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
