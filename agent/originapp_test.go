package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
)

// countingUpstream is an origin server that counts page requests and
// health probes apart.
type countingUpstream struct {
	*httptest.Server
	pages, probes atomic.Int64
}

func newCountingUpstream(t *testing.T, name string) *countingUpstream {
	u := &countingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			u.probes.Add(1)
			return
		}
		u.pages.Add(1)
		w.Header().Set("Cache-Control", "max-age=300")
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(u.Close)
	return u
}

func originManifest(version, upstream string) artifact.Manifest {
	return artifact.Manifest{
		Name:    "shop",
		Version: version,
		Routes:  []artifact.Route{{Path: "/shop"}},
		Origin: &artifact.Origin{
			Upstreams:      []string{upstream},
			HealthPath:     "/healthz",
			HealthInterval: artifact.Duration(1e9),
		},
	}
}

// TestOriginAppDeploy deploys an origin app with tern deploy's code path:
// two requests make one upstream request, health checks run for the
// installed release and stop when a new release pointing elsewhere
// replaces it, and a restart without the hub serves the app from the
// store. (The restarted agent listens on another port, so its requests
// have another Host and another cache key: cache restarts are tested in
// package cache.)
func TestOriginAppDeploy(t *testing.T) {
	a, b := newCountingUpstream(t, "A"), newCountingUpstream(t, "B")
	key := mustKey(t)
	data := t.TempDir()
	ta := startAgent(t, testConfig(t, data), key)
	hub := hubClient(t, ta.Agent)
	ctx := context.Background()

	res, err := deploy.Push(ctx, originManifest("1.0.0", a.URL), nil, deploy.Options{Client: hub, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if res.Release.Digest != "" || res.Release.Size != 0 {
		t.Fatalf("origin release has a module: %s, %d bytes", res.Release.Digest, res.Release.Size)
	}
	waitFor(t, "the origin app to serve", func() bool { code, _ := ta.get(t, "/shop/x"); return code == 200 })
	if code, body := ta.get(t, "/shop/x"); code != 200 || body != "A /shop/x" {
		t.Fatalf("/shop/x = %d %q", code, body)
	}
	if n := a.pages.Load(); n != 1 {
		t.Fatalf("upstream A saw %d page requests, want 1 (the second is a cache hit)", n)
	}
	waitFor(t, "a health probe of A", func() bool { return a.probes.Load() > 0 })
	ta.mu.Lock()
	first := ta.apps["shop"]
	ta.mu.Unlock()

	if _, err := deploy.Push(ctx, originManifest("1.1.0", b.URL), nil, deploy.Options{Client: hub, Key: key}); err != nil {
		t.Fatal(err)
	}
	// Entries cached from A stay until they expire or are purged, so the
	// new upstream shows on a URL not requested before.
	waitFor(t, "the release pointing at B", func() bool { seq, _ := ta.Installed("shop"); return seq == 2 })
	if code, body := ta.get(t, "/shop/y"); code != 200 || body != "B /shop/y" {
		t.Fatalf("/shop/y = %d %q", code, body)
	}
	waitFor(t, "A's health checks to stop", func() bool {
		select {
		case <-first.origin.done:
			return true
		default:
			return false
		}
	})
	if a.pages.Load() != 1 || b.pages.Load() != 1 {
		t.Fatalf("page requests: A %d, B %d; want 1 and 1", a.pages.Load(), b.pages.Load())
	}
	if _, digest := ta.Installed("shop"); digest != "" {
		t.Fatalf("installed shop with digest %q, want none", digest)
	}
	ta.mu.Lock()
	second := ta.apps["shop"]
	ta.mu.Unlock()
	ta.stop()
	select {
	case <-second.origin.done:
	default:
		t.Fatal("health checks still running after the agent stopped")
	}

	cfg := testConfig(t, data)
	cfg.Hub.URL = "nats://127.0.0.1:1" // nothing listens there
	ta2 := startAgent(t, cfg, key)
	if code, body := ta2.get(t, "/shop/y"); code != 200 || body != "B /shop/y" {
		t.Fatalf("restarted without hub: /shop/y = %d %q", code, body)
	}
}
