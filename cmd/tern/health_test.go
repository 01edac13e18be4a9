package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// getJSON fetches url and decodes its JSON body into v, returning the status.
func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v\n%s", url, err, b)
	}
	return resp.StatusCode
}

// hubLinkOf returns the status of /readyz and the hub link it reports.
func hubLinkOf(t *testing.T, admin string) (int, string) {
	var rep struct {
		Ready bool
		Hub   struct{ Link string }
	}
	code := getJSON(t, admin+"/readyz?format=json", &rep)
	return code, rep.Hub.Link
}

// freePort returns a loopback address nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestHubDownStaysReady runs an agent whose hub is not up: it is ready
// (it serves what it has), /readyz reports the link down, and its log
// never claims it is in sync. A `tern hub` started on that address brings
// the link up; the hub answers /healthz and /readyz on its admin address
// and nats-server's /varz and /leafz on its monitor address; stopping it
// takes the link down again, and the agent stays ready.
func TestHubDownStaysReady(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	bin := buildTern(t)
	dir := t.TempDir()
	leafAddr := freePort(t)
	agent := start(t, bin, "agent", "--data", filepath.Join(dir, "agent"), "--hub", "nats-leaf://"+leafAddr,
		"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--site", "gw1", "--log-level", "debug")
	admin := "http://" + agent.await(t, `msg="agent ready".* admin=(\S+)`)
	if code, link := hubLinkOf(t, admin); code != http.StatusOK || link != "down" {
		t.Fatalf("agent with no hub: readyz %d, link %q\n%s", code, link, agent.logs)
	}
	poll(t, 10*time.Second, func() bool { return strings.Contains(agent.logs.String(), "hub not linked") },
		func() string { return "no line saying the hub is not linked\n" + agent.logs.String() })
	if strings.Contains(agent.logs.String(), "in sync with hub") {
		t.Fatalf("agent claims to be in sync with a hub that is down:\n%s", agent.logs)
	}

	hubArgs := []string{"hub", "--data", filepath.Join(dir, "hub"), "--listen", "127.0.0.1:0", "--leaf-listen", leafAddr,
		"--admin", "127.0.0.1:0", "--monitor", "127.0.0.1:0"}
	hub := start(t, bin, hubArgs...)
	hubAdmin := "http://" + hub.await(t, `msg=listening component=admin addr=(\S+)`)
	monitor := hub.await(t, `monitor: +(\S+)/varz`)
	poll(t, 20*time.Second, func() bool { _, link := hubLinkOf(t, admin); return link == "up" },
		func() string { return "link never up\n" + agent.logs.String() })
	// The agent's own line, not the watcher's "hub link up; following…":
	// the hub stops below only once the agent has said its link is up.
	poll(t, 10*time.Second, func() bool { return strings.Contains(agent.logs.String(), `msg="hub link up"`) },
		func() string { return "no hub link up line\n" + agent.logs.String() })
	var hubReady struct {
		Ready  bool
		Checks []struct{ Name string }
	}
	if code := getJSON(t, hubAdmin+"/readyz?format=json", &hubReady); code != http.StatusOK || !hubReady.Ready || len(hubReady.Checks) != 2 {
		t.Fatalf("hub readyz %d %+v", code, hubReady)
	}
	if resp, err := http.Get(hubAdmin + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("hub healthz: %v %v", resp, err)
	}
	var varz struct {
		ServerName string `json:"server_name"`
	}
	if getJSON(t, monitor+"/varz", &varz); varz.ServerName != "tern-hub" {
		t.Fatalf("varz server_name %q", varz.ServerName)
	}
	var leafz struct {
		Leafs int `json:"leafnodes"`
	}
	poll(t, 10*time.Second, func() bool { getJSON(t, monitor+"/leafz", &leafz); return leafz.Leafs == 1 },
		func() string { return "leafz shows no agent" })
	poll(t, 10*time.Second, func() bool { return sample(scrape(t, hubAdmin), "tern_hub_agents_connected", nil) == 1 },
		func() string { return "tern_hub_agents_connected is not 1 with an agent linked" })
	if m := scrape(t, admin); sample(m, "tern_hub_link_up", nil) != 1 || sample(m, "tern_hub_link_changes_total", map[string]string{"state": "up"}) < 1 {
		t.Fatalf("agent linked: tern_hub_link_up %v, changes to up %v", sample(m, "tern_hub_link_up", nil),
			sample(m, "tern_hub_link_changes_total", map[string]string{"state": "up"}))
	}

	if err := hub.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	hub.cmd.Wait()
	poll(t, 20*time.Second, func() bool { _, link := hubLinkOf(t, admin); return link == "down" },
		func() string { return "link never down\n" + agent.logs.String() })
	if code, _ := hubLinkOf(t, admin); code != http.StatusOK {
		t.Fatalf("agent not ready with its hub gone: %d", code)
	}
	poll(t, 10*time.Second, func() bool { return strings.Contains(agent.logs.String(), `msg="hub link down`) },
		func() string { return "no hub link down line\n" + agent.logs.String() })
	if m := scrape(t, admin); sample(m, "tern_hub_link_up", nil) != 0 || sample(m, "tern_hub_link_changes_total", map[string]string{"state": "down"}) < 1 {
		t.Fatalf("hub gone: tern_hub_link_up %v, changes to down %v", sample(m, "tern_hub_link_up", nil),
			sample(m, "tern_hub_link_changes_total", map[string]string{"state": "down"}))
	}
}
