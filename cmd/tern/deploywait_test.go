package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDeployWaitsForFleet drives a hub and two agents through the binary:
// deploy waits until both serve, and exits 3 with the agents' reason when
// they refuse (a route conflict, an untrusted key, a module that does not
// compile); a stopped agent is not reporting and the deploy still ends;
// apps counts who serves what; rollback undoes a manifest-only change;
// --json prints the documented shapes.
func TestDeployWaitsForFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildTern(t)
	hub := start(t, bin, "hub", "--data", filepath.Join(dir, "hub"), "--listen", "127.0.0.1:0", "--leaf-listen", "127.0.0.1:0", "--admin", "127.0.0.1:0")
	hubURL := hub.await(t, `tern deploy --hub (\S+)`)
	leafURL := hub.await(t, `tern agent --hub (\S+)`)
	key, other := filepath.Join(dir, "me.key"), filepath.Join(dir, "other.key")
	for _, k := range []string{key, other} {
		if code, text := runTern("keys", "gen", "--out", k); code != 0 {
			t.Fatal(text)
		}
	}
	agents := map[string]*process{}
	for _, site := range []string{"fra1", "nyc1"} {
		agents[site] = start(t, bin, "agent", "--data", filepath.Join(dir, site), "--hub", leafURL, "--trust", key+".pub",
			"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--site", site)
	}
	for _, p := range agents {
		p.await(t, `"agent ready" listen=(\S+)`)
	}
	// Both have reported: the deploy knows whom to wait for.
	poll(t, 30*time.Second, func() bool {
		var rows []struct{ Live bool }
		_, text := runTern("status", "--hub", hubURL, "--json")
		return json.Unmarshal([]byte(text), &rows) == nil && len(rows) == 2 && rows[0].Live && rows[1].Live
	}, func() string { _, text := runTern("status", "--hub", hubURL); return "agents never reported:\n" + text })
	hello, err := os.ReadFile(filepath.Join("..", "..", "guests", "hello", "hello.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	app := func(name, version, route string, wasm []byte) string {
		d := filepath.Join(dir, "apps", name+"-"+version+strings.ReplaceAll(route, "/", "_"))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "m.wasm"), wasm, 0o644)
		os.WriteFile(filepath.Join(d, "tern.toml"), []byte("name = \""+name+"\"\nversion = \""+version+"\"\nwasm = \"m.wasm\"\n[[routes]]\npath = \""+route+"\"\n"), 0o644)
		return d
	}
	pub := []string{"--hub", hubURL, "--key", key}
	deployArgs := func(extra ...string) []string { return append(append([]string{"deploy"}, pub...), extra...) }

	// Both agents serve; the line of each says so.
	code, text := runTern(deployArgs(app("hello", "1.0.0", "/hello", hello))...)
	if code != 0 || sites(text, "serving") != 2 || !strings.Contains(text, "fra1") || !strings.Contains(text, "nyc1") ||
		!strings.Contains(text, "serving on 2 of 2 live agents") {
		t.Fatalf("deploy: exit %d\n%s", code, text)
	}

	// Refusals exit 3 and name the agents' reason.
	notWasm := append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{0xff}, 16)...)
	for _, tc := range []struct {
		name, reason string
		args         []string
	}{
		{"route conflict", "route_conflict", deployArgs(app("greet", "1.0.0", "/hello", hello))},
		{"untrusted key", "untrusted_key", []string{"deploy", "--hub", hubURL, "--key", other, app("stranger", "1.0.0", "/stranger", hello)}},
		{"does not compile", "invalid_module", deployArgs(app("broken", "1.0.0", "/broken", notWasm))},
	} {
		code, text := runTern(tc.args...)
		if code != exitRefused || sites(text, "refused") != 2 || !strings.Contains(text, tc.reason) || !strings.Contains(text, "2 of 2 live agents refused") {
			t.Errorf("%s: exit %d, want %d with %q twice:\n%s", tc.name, code, exitRefused, tc.reason, text)
		}
	}

	// Each agent logged each refusal once it happened, naming the site
	// and the app.
	for site, p := range agents {
		for _, name := range []string{"greet", "stranger", "broken"} {
			line := regexp.MustCompile(`msg="release refused[^"]*" site=` + site + ` .*app=` + name + ` .*reason=`)
			poll(t, 10*time.Second, func() bool { return line.MatchString(p.logs.String()) },
				func() string { return fmt.Sprintf("%s: no release refused line for %s:\n%s", site, name, p.logs) })
		}
	}

	// tern apps counts the agents serving each app and the refusals.
	code, text = runTern("apps", "--hub", hubURL, "--trust", key+".pub", "--json")
	var rows []struct {
		App      string `json:"app"`
		Sequence uint64 `json:"sequence"`
		Serving  int    `json:"serving"`
		Live     int    `json:"live"`
		Refused  []struct {
			Agent, Site, Reason string
		} `json:"refused"`
	}
	if err := json.Unmarshal([]byte(text), &rows); code != 0 || err != nil {
		t.Fatalf("apps --json: exit %d, %v\n%s", code, err, text)
	}
	got := map[string]string{}
	for _, r := range rows {
		reason := ""
		if len(r.Refused) > 0 {
			reason = r.Refused[0].Reason
		}
		got[r.App] = strings.TrimSpace(strings.Join([]string{strconv.Itoa(r.Serving), "/", strconv.Itoa(r.Live), " ", strconv.Itoa(len(r.Refused)), " ", reason}, ""))
	}
	for app, want := range map[string]string{"hello": "2/2 0", "greet": "0/2 2 route_conflict", "broken": "0/2 2 invalid_module"} {
		if got[app] != want {
			t.Errorf("apps: %s = %q, want %q (%s)", app, got[app], want, text)
		}
	}
	if code, text := runTern("apps", "--hub", hubURL, "--trust", key+".pub"); code != 0 || !strings.Contains(text, "2/2") || !strings.Contains(text, "route_conflict") {
		t.Errorf("apps: exit %d\n%s", code, text)
	}

	// A manifest-only change (same module, another route), with --json,
	// then a rollback to the route before.
	code, text = runTern(deployArgs("--json", app("hello", "1.1.0", "/hi", hello))...)
	var out struct {
		Release struct {
			App      string `json:"app"`
			Sequence uint64 `json:"sequence"`
		} `json:"release"`
		Outcome string `json:"outcome"`
		Agents  []struct {
			Site, State string
			Sequence    uint64
			Seconds     float64
		} `json:"agents"`
	}
	if err := json.Unmarshal([]byte(text), &out); code != 0 || err != nil || out.Outcome != "serving" || len(out.Agents) != 2 ||
		out.Release.Sequence != 2 || out.Agents[0].State != "serving" || out.Agents[0].Site != "fra1" || out.Agents[1].Sequence != 2 {
		t.Fatalf("deploy --json: exit %d, %v: %+v\n%s", code, err, out, text)
	}
	code, text = runTern(append(append([]string{"rollback"}, pub...), "--json", "hello")...)
	if err := json.Unmarshal([]byte(text), &out); code != 0 || err != nil || out.Outcome != "serving" || out.Release.Sequence != 3 {
		t.Fatalf("rollback --json: exit %d, %v: %+v\n%s", code, err, out, text)
	}
	code, text = runTern("apps", "--hub", hubURL, "--trust", key+".pub")
	if !strings.Contains(text, "1.0.0") || !strings.Contains(text, "/hello") {
		t.Errorf("after the rollback apps shows\n%s", text)
	}
	// Two apps the hub holds only one release of: nothing to return to.
	if code, text := runTern(append(append([]string{"rollback"}, pub...), "greet")...); code != 1 || !strings.Contains(text, "--to") {
		t.Errorf("rollback with no earlier release: exit %d, want 1 naming --to:\n%s", code, text)
	}

	// A staged rollout is followed wave by wave to its end.
	code, text = runTern(deployArgs("--rollout", "site=fra1; *", "--wave-wait", "100ms", app("hello", "1.1.1", "/hello", hello))...)
	if code != 0 || !strings.Contains(text, "wave 1/2 (site=fra1)") || !strings.Contains(text, "wave 2/2 (*)") || !strings.Contains(text, "rollout done") {
		t.Fatalf("deploy --rollout: exit %d\n%s", code, text)
	}

	// A purge is acknowledged by both, in the documented shape.
	var purge struct {
		Live, Acknowledged, Failures int
		Agents                       []struct{ Agent, Site string }
	}
	code, text = runTern("purge", "--hub", hubURL, "--tag", "news", "--json")
	if err := json.Unmarshal([]byte(text), &purge); code != 0 || err != nil || purge.Live != 2 || purge.Acknowledged != 2 || len(purge.Agents) != 2 {
		t.Fatalf("purge --json: exit %d, %v: %+v\n%s", code, err, purge, text)
	}

	// A stopped agent is not reporting; the deploy ends with the other.
	nyc := agents["nyc1"]
	nyc.cmd.Process.Signal(os.Interrupt)
	nyc.cmd.Wait()
	code, text = runTern(deployArgs(app("hello", "1.2.0", "/hello", hello))...)
	if code != 0 || !strings.Contains(text, "not reporting") || !strings.Contains(text, "serving on 1 of 1 live agents") {
		t.Fatalf("deploy with a stopped agent: exit %d\n%s", code, text)
	}
}

// sites counts the per-site lines of deploy's output in state.
func sites(text, state string) int {
	n := 0
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "  ") && strings.HasPrefix(strings.TrimSpace(strings.TrimSpace(line)[len(strings.Fields(line)[0]):]), state+" ") {
			n++
		}
	}
	return n
}
