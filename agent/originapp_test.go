package agent

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"

	ternsync "github.com/tern-edge/tern/sync"
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

// healthChecksStopped reports whether an installed origin app's health
// checks have ended.
func healthChecksStopped(ia *installedApp) bool {
	select {
	case <-ia.origin.done:
		return true
	default:
		return false
	}
}

// TestOriginAppStagedRollout rolls an origin app that switches upstreams
// out in two waves, then rolls it back: origin apps follow rollouts like
// function apps. Each site has a cache of its own, so every check asks
// for a URL that site has not seen, which shows the upstream in use.
func TestOriginAppStagedRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for heartbeats; skipped with -short")
	}
	ctx := context.Background()
	key := mustKey(t)
	a, b := newCountingUpstream(t, "A"), newCountingUpstream(t, "B")
	hubCfg := testConfig(t, t.TempDir())
	hubCfg.Hub.LeafListen = "127.0.0.1:0"
	hub := startAgent(t, hubCfg, key)
	pub := hubClient(t, hub.Agent)
	agents := map[string]*testAgent{}
	for _, site := range []string{"a", "b"} {
		cfg := testConfig(t, t.TempDir())
		cfg.Site = site
		cfg.Hub.URL = hub.hub.LeafURL()
		cfg.Heartbeat = artifact.Duration(time.Second)
		agents[site] = startAgent(t, cfg, key)
	}
	seqAt := func(site string) uint64 { seq, _ := agents[site].Installed("shop"); return seq }
	all := func(seq uint64) func() bool {
		return func() bool { return seqAt("a") == seq && seqAt("b") == seq }
	}
	n := 0
	upstreamAt := func(site string) string {
		t.Helper()
		n++
		path := fmt.Sprintf("/shop/%s/%d", site, n)
		code, body := agents[site].get(t, path)
		if code != 200 {
			t.Fatalf("site %s %s: %d %q", site, path, code, body)
		}
		up, _, _ := strings.Cut(body, " ")
		return up
	}
	opts := deploy.Options{Client: pub, Key: key}

	if _, err := deploy.Push(ctx, originManifest("1.0.0", a.URL), nil, opts); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "v1 everywhere", all(1))

	waves, err := ternsync.ParseWaves("site=a; *")
	if err != nil {
		t.Fatal(err)
	}
	staged := opts
	staged.Rollout = &deploy.RolloutPlan{Waves: waves, Wait: 2 * time.Second, MaxErrorRate: 0.1, Timeout: time.Minute}
	if _, err := deploy.Push(ctx, originManifest("2.0.0", b.URL), nil, staged); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "wave 1 (site a) to get v2", func() bool { return seqAt("a") == 2 })
	if seqAt("b") != 1 {
		t.Fatalf("wave 2 moved before wave 1 was judged: b=%d", seqAt("b"))
	}
	if got := upstreamAt("a"); got != "B" {
		t.Errorf("site a on v2 fetched from %s, want B", got)
	}
	if got := upstreamAt("b"); got != "A" {
		t.Errorf("site b on v1 fetched from %s, want A", got)
	}
	waitFor(t, "v2 everywhere", all(2))
	waitFor(t, "rollout done", func() bool {
		r, _, err := pub.Rollout(ctx, "shop")
		return err == nil && r.State == ternsync.RolloutDone
	})
	if got := upstreamAt("b"); got != "B" {
		t.Errorf("site b on v2 fetched from %s, want B", got)
	}

	res, err := deploy.Rollback(ctx, "shop", 0, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Release.Manifest.Version != "1.0.0" || res.Release.HasModule() {
		t.Fatalf("rollback release = %s, module %v", res.Release.Manifest.Version, res.Release.HasModule())
	}
	waitFor(t, "the rollback everywhere", all(res.Release.Sequence))
	for _, site := range []string{"a", "b"} {
		if got := upstreamAt(site); got != "A" {
			t.Errorf("site %s after rollback fetched from %s, want A", site, got)
		}
	}
}

// TestOriginAppRevocation deploys an origin app signed by a publisher
// key that the root then revokes: the agent stops serving the app and its
// health checks, as it does for a function app.
func TestOriginAppRevocation(t *testing.T) {
	ctx := context.Background()
	hubKey, root, p1 := mustKey(t), mustKey(t), mustKey(t)
	pubOf := func(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }
	up := newCountingUpstream(t, "A")
	hubCfg := testConfig(t, t.TempDir())
	hubCfg.Hub.LeafListen = "127.0.0.1:0"
	hub := startAgent(t, hubCfg, hubKey)
	pub := hubClient(t, hub.Agent)
	cfg := testConfig(t, t.TempDir())
	cfg.Hub.URL = hub.hub.LeafURL()
	cfg.Trust.Roots = []string{artifact.FormatPublicKey(pubOf(root))}
	leaf := startAgentWith(t, cfg, Options{})
	var lastList []byte
	setList := func(ch deploy.TrustChange) {
		t.Helper()
		ch.Last = lastList
		l, err := deploy.SetPublishers(ctx, pub, root, ch)
		if err != nil {
			t.Fatal(err)
		}
		lastList = l.Envelope
	}

	setList(deploy.TrustChange{Add: []ed25519.PublicKey{pubOf(p1)}})
	if _, err := deploy.Push(ctx, originManifest("1.0.0", up.URL), nil, deploy.Options{Client: pub, Key: p1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the origin app of p1", func() bool { seq, _ := leaf.Installed("shop"); return seq > 0 })
	if code, body := leaf.get(t, "/shop/x"); code != 200 || body != "A /shop/x" {
		t.Fatalf("/shop/x = %d %q", code, body)
	}
	waitFor(t, "a health probe", func() bool { return up.probes.Load() > 0 })
	leaf.mu.Lock()
	installed := leaf.apps["shop"]
	leaf.mu.Unlock()

	setList(deploy.TrustChange{Revoke: []ed25519.PublicKey{pubOf(p1)}})
	waitFor(t, "the origin app of revoked p1 to stop", func() bool { seq, _ := leaf.Installed("shop"); return seq == 0 })
	if code, _ := leaf.get(t, "/shop/x"); code != 404 {
		t.Fatalf("revoked origin app still served (from the cache or the upstream): %d", code)
	}
	waitFor(t, "its health checks to stop", func() bool { return healthChecksStopped(installed) })
}

// TestOriginAppShareCredentialed deploys an origin app whose upstream sends
// only Last-Modified to a request with a cookie: by default the agent does
// not reuse that page for the next client, and with the manifest's
// share_credentialed it does, as RFC 9111 alone allows.
func TestOriginAppShareCredentialed(t *testing.T) {
	var pages atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pages.Add(1)
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		fmt.Fprintf(w, "page for %q", r.Header.Get("Cookie"))
	}))
	t.Cleanup(up.Close)
	key := mustKey(t)
	ta := startAgent(t, testConfig(t, t.TempDir()), key)
	hub := hubClient(t, ta.Agent)
	base := "https://" + strings.Replace(ta.Addr().String(), "127.0.0.1", "localhost", 1)
	get := func(path, cookie string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := ta.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for i, share := range []bool{false, true} {
		m := originManifest(fmt.Sprintf("1.%d.0", i), up.URL)
		m.Origin.HealthPath, m.Origin.HealthInterval = "", 0
		m.Origin.ShareCredentialed = share
		res, err := deploy.Push(context.Background(), m, nil, deploy.Options{Client: hub, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the release", func() bool { seq, _ := ta.Installed("shop"); return seq == res.Release.Sequence })
		path := fmt.Sprintf("/shop/account-%d", i)
		get(path, "session=alice")
		before := pages.Load()
		got := get(path, "")
		switch {
		case !share && (got != `page for ""` || pages.Load() != before+1):
			t.Fatalf("default: a client without the cookie got %q (%d upstream requests), want its own page", got, pages.Load()-before)
		case share && (got != `page for "session=alice"` || pages.Load() != before):
			t.Fatalf("share_credentialed: a client without the cookie got %q (%d upstream requests), want the shared page", got, pages.Load()-before)
		}
	}
}
