package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
	ternsync "github.com/tern-edge/tern/sync"
)

// TestOriginThroughCache fronts a counting origin with the agent: a
// repeated request is a cache hit, and both the admin API and a
// fleet-wide purge drop the entry.
func TestOriginThroughCache(t *testing.T) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("Surrogate-Key", "news")
		fmt.Fprintf(w, "page %s", r.URL.Path)
	}))
	defer up.Close()

	cfg := testConfig(t, t.TempDir())
	cfg.Origins = []OriginConfig{{Name: "site", Path: "/news", Upstreams: []string{up.URL}}}
	ta := startAgent(t, cfg, mustKey(t))

	get := func() (int, string) { return ta.get(t, "/news/today") }
	for i := range 2 {
		if code, body := get(); code != 200 || body != "page /news/today" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("origin saw %d requests for two identical GETs, want 1", n)
	}

	// The purge API on the admin listener wants the token.
	token, err := os.ReadFile(filepath.Join(cfg.Data, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	purge := func(auth string) int {
		req, _ := http.NewRequest("POST", "http://"+ta.AdminAddr().String()+"/cache", bytes.NewReader([]byte(`{"tags":["news"]}`)))
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := purge("Bearer wrong"); code != http.StatusUnauthorized {
		t.Fatalf("purge with a wrong token: %d", code)
	}
	if code := purge("Bearer " + strings.TrimSpace(string(token))); code != 200 {
		t.Fatalf("purge: %d", code)
	}
	get()
	if n := hits.Load(); n != 2 {
		t.Fatalf("after purge by tag the origin saw %d requests, want 2", n)
	}

	// A fleet-wide purge over NATS reaches the agent and is acknowledged.
	hub := hubClient(t, ta.Agent)
	host := strings.Replace(ta.Addr().String(), "127.0.0.1", "localhost", 1)
	var acks []ternsync.PurgeAck
	waitFor(t, "purge acknowledgement", func() bool {
		var err error
		acks, err = hub.PublishPurge(context.Background(), ternsync.Purge{URLs: []string{"https://" + host + "/news/today"}}, 1, time.Second)
		return err == nil && len(acks) == 1
	})
	if acks[0].Agent != ta.ID() || acks[0].Error != "" || acks[0].Purged != 1 {
		t.Fatalf("ack = %+v", acks[0])
	}
	get()
	if n := hits.Load(); n != 3 {
		t.Fatalf("after the fleet purge the origin saw %d requests, want 3", n)
	}
}

// TestPlainHitsSendfile serves a 100 KB cached object through the agent's
// plain HTTP listener, from an origin in the config and from a deployed
// origin app: hits are sent with sendfile through every wrapper the agent
// puts around the cache, and the bodies are right.
func TestPlainHitsSendfile(t *testing.T) {
	body := make([]byte, 100<<10)
	for i := range body {
		body[i] = byte('a' + i%26 + i/4096%3)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	}))
	defer up.Close()

	key := mustKey(t)
	cfg := testConfig(t, t.TempDir())
	cfg.ACME.HTTPListen = "127.0.0.1:0"
	cfg.Origins = []OriginConfig{{Name: "files", Path: "/files", Upstreams: []string{up.URL}}}
	ta := startAgent(t, cfg, key)
	if ta.plain == nil {
		t.Fatal("no plain listener with acme.http_listen set")
	}
	app := artifact.Manifest{Name: "shop", Version: "1.0.0", Routes: []artifact.Route{{Path: "/shop"}},
		Origin: &artifact.Origin{Upstreams: []string{up.URL}}}
	if _, err := deploy.Push(context.Background(), app, nil, deploy.Options{Client: hubClient(t, ta.Agent), Key: key}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the origin app to serve", func() bool { code, _ := ta.get(t, "/shop/x"); return code == 200 })

	token, err := os.ReadFile(filepath.Join(cfg.Data, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	type sendStats struct {
		SendfileHits  int64 `json:"sendfile_hits"`
		SendfileBytes int64 `json:"sendfile_bytes"`
	}
	stats := func() sendStats {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+ta.AdminAddr().String()+"/cache", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st sendStats
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	get := func(path string) {
		t.Helper()
		resp, err := http.Get("http://" + ta.plain.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) {
			t.Fatalf("GET %s: %d, %d bytes, %v; want 200 and the origin's %d bytes", path, resp.StatusCode, len(got), err, len(body))
		}
	}
	// settled waits until the sendfile count differs from n (the server
	// counts a send once it is written, after the client has the body),
	// or reports false after a while.
	settled := func(n int64) (sendStats, bool) {
		deadline := time.Now().Add(2 * time.Second)
		for {
			st := stats()
			if st.SendfileHits != n || time.Now().After(deadline) {
				return st, st.SendfileHits != n
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Per path: the miss commits in the background and the first hits may
	// race the body into the RAM tier; from the first hit sent with
	// sendfile on, every plain hit is.
	for _, path := range []string{"/files/big", "/shop/big"} {
		before := stats()
		for i := 0; ; i++ {
			if i == 20 {
				t.Fatalf("GET %s: 20 requests, none sent with sendfile", path)
			}
			get(path)
			if st, changed := settled(before.SendfileHits); changed {
				before = st
				break
			}
		}
		get(path)
		st, _ := settled(before.SendfileHits)
		if st.SendfileHits != before.SendfileHits+1 || st.SendfileBytes != before.SendfileBytes+int64(len(body)) {
			t.Fatalf("GET %s again: sendfile hits %d → %d, bytes %d → %d; want one more hit of %d bytes", path, before.SendfileHits, st.SendfileHits, before.SendfileBytes, st.SendfileBytes, len(body))
		}
	}
}

// TestCacheConfigMemtable checks the bounds of [cache] memtable.
func TestCacheConfigMemtable(t *testing.T) {
	for _, tc := range []struct{ toml, err string }{
		{"", ""},
		{"memtable = \"4MiB\"\n", ""},
		{"memtable = \"256MiB\"\n", ""},
		{"memtable = \"512KiB\"\n", "cache.memtable = 512KiB: must lie in [1MiB, 256MiB]"},
		{"memtable = \"1GiB\"\n", "cache.memtable = 1GiB: must lie in [1MiB, 256MiB]"},
	} {
		_, err := ParseConfig([]byte("version = 1\n[cache]\n" + tc.toml))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || err.Error() != tc.err) {
			t.Errorf("%q: err %v, want %q", tc.toml, err, tc.err)
		}
	}
}

// TestOriginTargetedField checks [[origins]] targeted_field: a field name
// of its own is taken, and a bad name or one it would override is refused
// with the origin named.
func TestOriginTargetedField(t *testing.T) {
	for _, tc := range []struct{ field, err string }{
		{"", ""},
		{"Acme-Cache-Control", ""},
		{"bad field", `origins[0] (www): targeted field "bad field": not a valid header field name`},
		{"cdn-cache-control", `origins[0] (www): targeted field "cdn-cache-control": names a field it would override; choose a name of its own such as Tern-Cache-Control`},
	} {
		cfg, err := ParseConfig([]byte("version = 1\n[[origins]]\nname = \"www\"\nupstreams = [\"http://127.0.0.1:1\"]\ntargeted_field = \"" + tc.field + "\"\n"))
		if tc.err == "" && (err != nil || cfg.Origins[0].TargetedField != tc.field) || tc.err != "" && (err == nil || err.Error() != tc.err) {
			t.Errorf("%q: err %v, want %q", tc.field, err, tc.err)
		}
	}
}
