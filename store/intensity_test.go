package store

import (
	"math"
	"testing"
	"time"
)

func TestIntensityHistory(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	h0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	add := func(region string, start, end time.Time, v float64) {
		t.Helper()
		if err := s.AddIntensity(region, start, end, v, 1, "fake"); err != nil {
			t.Fatal(err)
		}
	}
	// Two half hours make one hourly mean; the first seen again counts once.
	add("eu", h0, h0.Add(30*time.Minute), 100)
	add("eu", h0, h0.Add(30*time.Minute), 100)
	add("eu", h0.Add(30*time.Minute), h0.Add(time.Hour), 300)
	// A span over two hours is split between them.
	add("eu", h0.Add(90*time.Minute), h0.Add(150*time.Minute), 50)
	add("us", h0, h0.Add(time.Hour), 999)
	if err := s.AddIntensity("eu", h0, h0, 1, 1, "fake"); err == nil {
		t.Fatal("empty span accepted")
	}

	got, err := s.IntensityHistory("eu", h0, h0.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := []IntensityHour{
		{Start: h0, Mean: 200, Seconds: 3600},
		{Start: h0.Add(time.Hour), Mean: 50, Seconds: 1800},
		{Start: h0.Add(2 * time.Hour), Mean: 50, Seconds: 1800},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i, w := range want {
		g := got[i]
		if !g.Start.Equal(w.Start) || math.Abs(g.Mean-w.Mean) > 1e-9 || g.Seconds != w.Seconds || g.Source != "fake" || g.Signal != 1 {
			t.Fatalf("hour %d: got %+v, want %+v", i, g, w)
		}
	}
	// The range is half-open and per region.
	if got, _ := s.IntensityHistory("eu", h0.Add(time.Hour), h0.Add(2*time.Hour)); len(got) != 1 || !got[0].Start.Equal(h0.Add(time.Hour)) {
		t.Fatalf("middle hour: %+v", got)
	}
	if got, _ := s.IntensityHistory("us", h0.Add(-time.Hour), h0.Add(9*time.Hour)); len(got) != 1 || got[0].Mean != 999 {
		t.Fatalf("us: %+v", got)
	}

	// Records older than IntensityKeep go when newer ones arrive; other
	// regions are left alone. The history survives a reopen.
	late := h0.Add(IntensityKeep + time.Hour)
	add("eu", late, late.Add(time.Hour), 70)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	got, err = s.IntensityHistory("eu", h0.Add(-24*time.Hour), late.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].Start.Equal(h0.Add(2*time.Hour)) || !got[1].Start.Equal(late) || got[1].Mean != 70 {
		t.Fatalf("after pruning and reopening: %+v", got)
	}
	if got, _ := s.IntensityHistory("us", h0, h0.Add(time.Hour)); len(got) != 1 {
		t.Fatalf("other region pruned: %+v", got)
	}
}
