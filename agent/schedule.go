package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tern-edge/tern/internal/cron"
	"github.com/tern-edge/tern/jobs"
	ternsync "github.com/tern-edge/tern/sync"
)

// schedules returns the [[deferrable.schedules]] of every installed app
// as the job scheduler takes them. A schedule's key is its app and a hash
// of its entry, so a release that changes the entry starts it afresh and
// one that keeps it continues where it was.
func (a *Agent) schedules() []jobs.Scheduled {
	var out []jobs.Scheduled
	for _, rel := range a.Apps() {
		d := rel.Manifest.Deferrable
		if d == nil || len(d.Schedules) == 0 {
			continue
		}
		m := rel.Manifest.WithDefaults()
		for _, s := range d.Schedules {
			c, err := cron.Parse(s.Cron)
			if err != nil {
				continue // validated when the release was verified
			}
			method, _, route, ok := m.ScheduleRequest(s)
			if !ok {
				continue
			}
			prefix := route.Path
			if prefix == "" {
				prefix = "/"
			}
			host := s.Host
			if host == "" {
				host = "localhost"
				if route.Host != "" && !strings.HasPrefix(route.Host, "*.") {
					host = route.Host
				}
			}
			h := http.Header{}
			for k, v := range s.Headers {
				h.Set(k, v)
			}
			entry, _ := json.Marshal(s)
			sum := sha256.Sum256(entry)
			out = append(out, jobs.Scheduled{
				Spec: jobs.Spec{App: rel.App, Route: prefix, MaxDelay: time.Duration(s.Window), Runtime: time.Duration(d.ExpectedRuntime),
					Regions: d.Regions, MaxRequest: int64(m.Limits.MaxRequest)},
				Key: rel.App + "/" + hex.EncodeToString(sum[:8]), Cron: c, Window: time.Duration(s.Window),
				Method: method, Target: s.Path, Host: host, Header: h, Body: []byte(s.Body),
			})
		}
	}
	slices.SortFunc(out, func(x, y jobs.Scheduled) int { return strings.Compare(x.Key, y.Key) })
	return out
}

// scheduleLeader says whether this agent makes its site's scheduled jobs:
// the agent with the lowest id among the site's agents whose heartbeats
// are fresh does. When another one does, covered is when that agent was
// last known alive, less one tick: it has made every occurrence up to
// then, so this agent may count them as handled.
func (v *fleetView) scheduleLeader() (bool, time.Time) {
	v.mu.Lock()
	peers := v.peers
	v.mu.Unlock()
	now := time.Now()
	var leader *ternsync.Heartbeat
	for i, hb := range peers {
		if hb.Stale(now) || hb.Agent >= v.a.id {
			continue
		}
		if leader == nil || hb.Agent < leader.Agent {
			leader = &peers[i]
		}
	}
	if leader == nil {
		return true, time.Time{}
	}
	return false, leader.Time.Add(-time.Duration(v.a.cfg.Carbon.Tick))
}
