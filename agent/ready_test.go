package agent

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// readyJSON fetches /readyz?format=json.
func readyJSON(t *testing.T, a *Agent) (int, readyReport) {
	t.Helper()
	code, body := getAdmin(t, a, "/readyz?format=json")
	var rep readyReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("readyz JSON %q: %v", body, err)
	}
	return code, rep
}

// TestReadiness: /readyz is 200 with every check passing once the agent
// serves, 503 with the failing check's reason in JSON when one fails (the
// disk reserve, then a closed store), and 200 again once the problem is
// gone; /healthz stays 200 throughout.
func TestReadiness(t *testing.T) {
	ta := startAgent(t, testConfig(t, t.TempDir()), mustKey(t))
	waitFor(t, "readyz 200", func() bool { code, _ := getAdmin(t, ta.Agent, "/readyz"); return code == http.StatusOK })
	code, rep := readyJSON(t, ta.Agent)
	if code != http.StatusOK || !rep.Ready || rep.Hub.Link != "embedded" {
		t.Fatalf("readyz: %d %+v", code, rep)
	}
	names := []string{}
	for _, c := range rep.Checks {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, ","); got != "store,routes,listeners,disk" {
		t.Fatalf("checks %s", got)
	}
	if _, body := getAdmin(t, ta.Agent, "/readyz?verbose"); !strings.Contains(body, "[+] listeners ok") || !strings.Contains(body, "hub link embedded") {
		t.Fatalf("readyz?verbose:\n%s", body)
	}

	if ta.disk != nil {
		reserve := ta.disk.reserve.Swap(1 << 60)
		waitFor(t, "readyz 503 for the disk", func() bool {
			code, rep := readyJSON(t, ta.Agent)
			return code == http.StatusServiceUnavailable && !rep.Ready && failed(rep, "disk", "disk pressure: "+ta.cfg.Data)
		})
		ta.disk.reserve.Store(reserve)
		waitFor(t, "readyz 200 again", func() bool { code, _ := readyJSON(t, ta.Agent); return code == http.StatusOK })
	}

	if err := ta.store.Close(); err != nil {
		t.Fatal(err)
	}
	code, rep = readyJSON(t, ta.Agent)
	if code != http.StatusServiceUnavailable || !failed(rep, "store", "store closed") {
		t.Fatalf("readyz with the store closed: %d %+v", code, rep)
	}
	if code, body := getAdmin(t, ta.Agent, "/readyz"); code != http.StatusServiceUnavailable || body != "[-] store: store closed\n" {
		t.Fatalf("readyz text with the store closed: %d %q", code, body)
	}
	if code, _ := getAdmin(t, ta.Agent, "/healthz"); code != http.StatusOK {
		t.Fatalf("healthz %d", code)
	}
}

// failed reports whether rep's check name failed with a reason holding want.
func failed(rep readyReport, name, want string) bool {
	for _, c := range rep.Checks {
		if c.Name == name {
			return !c.OK && strings.Contains(c.Reason, want)
		}
	}
	return false
}
