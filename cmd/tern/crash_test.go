package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// process is a tern command running in the background.
type process struct {
	cmd  *exec.Cmd
	logs *lockedBuffer
	out  chan string // stdout and stderr lines
}

func start(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), logs: &lockedBuffer{}, out: make(chan string, 1000)}
	stdout, _ := p.cmd.StdoutPipe()
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []io.Reader{stdout, stderr} {
		go func() {
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				p.logs.Write([]byte(sc.Text() + "\n"))
				select {
				case p.out <- sc.Text():
				default:
				}
			}
		}()
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { p.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				p.cmd.Process.Kill()
			}
		}
	})
	return p
}

// await returns the first submatch of re in the process's output.
func (p *process) await(t *testing.T, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(60 * time.Second)
	for {
		select {
		case line := <-p.out:
			if m := rx.FindStringSubmatch(line); m != nil {
				return m[1]
			}
		case <-deadline:
			t.Fatalf("no %q in the output of %v:\n%s", re, p.cmd.Args, p.logs)
		}
	}
}

// TestCrashDuringDeploy kills an agent with SIGKILL while it fetches and
// installs a new release, restarts it on the same data: its store opens
// as it is, it serves the last good version at once, and it converges to
// the new one by itself.
func TestCrashDuringDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildTern(t)
	// The hub requires passwords: agents may only read and report.
	agentPW, pubPW := filepath.Join(dir, "agent.pw"), filepath.Join(dir, "publisher.pw")
	os.WriteFile(agentPW, []byte("agent-secret\n"), 0o600)
	os.WriteFile(pubPW, []byte("publisher-secret\n"), 0o600)
	hub := start(t, bin, "hub", "--data", filepath.Join(dir, "hub"), "--listen", "127.0.0.1:0", "--leaf-listen", "127.0.0.1:0",
		"--admin", "127.0.0.1:0", "--agent-password-file", agentPW, "--publisher-password-file", pubPW)
	hubURL := hub.await(t, `tern deploy --hub (\S+)`)
	leafURL := hub.await(t, `tern agent --hub (\S+)`)

	key := filepath.Join(dir, "me.key")
	if code, text := runTern("keys", "gen", "--out", key); code != 0 {
		t.Fatal(text)
	}
	agentArgs := []string{"agent", "--data", filepath.Join(dir, "agent"), "--hub", leafURL, "--hub-password-file", agentPW, "--trust", key + ".pub",
		"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--site", "gw1"}
	agent := start(t, bin, agentArgs...)
	addr := agent.await(t, `"agent ready" listen=(\S+)`)

	caPEM, err := os.ReadFile(filepath.Join(dir, "agent", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	body := func(addr string) string {
		resp, err := client.Get("https://" + addr + "/hello")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitBody := func(addr, want string) {
		poll(t, 60*time.Second, func() bool { return strings.Contains(body(addr), want) },
			func() string {
				return fmt.Sprintf("%s/hello never answered %q; last %q\n%s", addr, want, body(addr), agent.logs)
			})
	}

	// Version 1: the hello guest.
	app := filepath.Join(dir, "app")
	os.MkdirAll(app, 0o755)
	copyFile(t, filepath.Join("..", "..", "guests", "hello", "hello.wasm"), filepath.Join(app, "hello.wasm"))
	os.WriteFile(filepath.Join(app, "tern.toml"), []byte("name = \"hello\"\nversion = \"1.0.0\"\nwasm = \"hello.wasm\"\n[[routes]]\npath = \"/hello\"\n"), 0o644)
	if code, text := runTern("deploy", "--hub", hubURL, "--key", key, app); code != 1 || !strings.Contains(text, "uthoriz") || !strings.Contains(text, "pass --password-file") {
		t.Fatalf("deploy without the publisher password: %d %s", code, text)
	}
	if code, text := runTern("deploy", "--hub", hubURL, "--password-file", pubPW, "--key", key, app); code != 0 {
		t.Fatal(text)
	}
	waitBody(addr, "Hello")

	// Version 2: the 3 MiB Go echo guest; kill the agent as soon as the
	// deploy returns, while it downloads, verifies or compiles the module.
	copyFile(t, filepath.Join("..", "..", "guests", "echo", "echo.wasm"), filepath.Join(app, "echo.wasm"))
	os.WriteFile(filepath.Join(app, "tern.toml"), []byte("name = \"hello\"\nversion = \"2.0.0\"\nwasm = \"echo.wasm\"\n[[routes]]\npath = \"/hello\"\n"), 0o644)
	if code, text := runTern("deploy", "--no-wait", "--hub", hubURL, "--password-file", pubPW, "--key", key, app); code != 0 {
		t.Fatal(text)
	}
	agent.cmd.Process.Signal(syscall.SIGKILL)
	agent.cmd.Wait()

	// Restarted on the same data, it serves at once (version 1, or 2 if
	// the install completed before the kill) and then converges to 2.
	agent = start(t, bin, agentArgs...)
	addr = agent.await(t, `"agent ready" listen=(\S+)`)
	if b := body(addr); !strings.Contains(b, "Hello") && !strings.Contains(b, `"method"`) {
		t.Fatalf("restarted agent answered %q\n%s", b, agent.logs)
	}
	waitBody(addr, `"method": "GET"`)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// upNode is a `tern up` on a data dir that a test kills and restarts.
type upNode struct {
	bin, data string
	args      []string
	proc      *process
	base      string // https://localhost:port
	client    *http.Client
}

func startUp(t *testing.T, bin, data string, extra ...string) *upNode {
	t.Helper()
	n := &upNode{bin: bin, data: data, args: append([]string{"up", "--data", data, "--listen", "127.0.0.1:0",
		"--admin", "127.0.0.1:0", "--hub-listen", "127.0.0.1:0"}, extra...)}
	n.restart(t)
	return n
}

// restart starts the node again on its data dir, after a kill.
func (n *upNode) restart(t *testing.T) {
	t.Helper()
	n.proc = start(t, n.bin, n.args...)
	n.base = n.proc.await(t, `(https://localhost:\d+)`)
	n.client = tlsClient(t, n.data)
}

// kill stops the node with SIGKILL: no shutdown, no flush.
func (n *upNode) kill() {
	n.proc.cmd.Process.Signal(syscall.SIGKILL)
	n.proc.cmd.Wait()
}

// get returns the status and body of path, or 0 when the request failed.
func (n *upNode) get(path string) (int, []byte) {
	resp, err := n.client.Get(n.base + path)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, b
	}
	return resp.StatusCode, b
}

// helloApp writes an app directory for a hello guest whose body is text
// (16 bytes), so each app and version has its own module and answer.
func helloApp(t *testing.T, dir, name, version, text string) string {
	t.Helper()
	if len(text) != 16 {
		t.Fatalf("text %q: want 16 bytes", text)
	}
	wasm, err := os.ReadFile(filepath.Join("..", "..", "guests", "hello", "hello.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	wasm = bytes.Replace(wasm, []byte("Hello from Tern!"), []byte(text), 1)
	app := filepath.Join(dir, name+"-"+version)
	os.MkdirAll(app, 0o755)
	os.WriteFile(filepath.Join(app, "hello.wasm"), wasm, 0o644)
	os.WriteFile(filepath.Join(app, "tern.toml"), fmt.Appendf(nil, "name = %q\nversion = %q\nwasm = \"hello.wasm\"\n[[routes]]\npath = \"/%s\"\n", name, version, name), 0o644)
	return app
}

// moduleFiles lists the module files of a node's store.
func moduleFiles(t *testing.T, data string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(data, "store", "modules"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func digestFile(wasm []byte) string {
	return fmt.Sprintf("sha256_%x", sha256.Sum256(wasm))
}

// hubApps returns what the node's hub holds: app name to version and
// digest, as `tern apps --json` reports them.
func hubApps(t *testing.T, data string) map[string][2]string {
	t.Helper()
	code, out := runTern("apps", "--data", data, "--json")
	if code != 0 {
		t.Fatalf("tern apps: %s", out)
	}
	var rows []struct{ App, Version, Digest string }
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("tern apps --json: %v\n%s", err, out)
	}
	m := map[string][2]string{}
	for _, r := range rows {
		m[r.App] = [2]string{r.Version, strings.ReplaceAll(r.Digest, ":", "_")}
	}
	return m
}

// TestCrashDuringParallelDeploys kills `tern up` while 20 apps are being
// deployed at once. After a restart every acknowledged app is on the hub
// and serves its own bytes; an unacknowledged one is either absent
// everywhere or, when the kill fell between the hub's commit and the
// reply, committed and served whole; and the module directory holds
// exactly the served modules.
func TestCrashDuringParallelDeploys(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	const apps = 20
	dir := t.TempDir()
	bin := buildTern(t)
	data := filepath.Join(dir, "data")
	n := startUp(t, bin, data)

	type result struct {
		name string
		ok   bool
	}
	results := make(chan result, apps)
	text := func(name string) string { return fmt.Sprintf("%-16s", name+" version 1") }
	wasm := map[string][]byte{}
	for i := range apps {
		name := fmt.Sprintf("app%02d", i)
		app := helloApp(t, dir, name, "1.0.0", text(name))
		wasm[name] = mustRead(t, filepath.Join(app, "hello.wasm"))
		go func() {
			code, _ := runTern("deploy", "--data", data, app)
			results <- result{name, code == 0}
		}()
	}
	// Kill once a few deploys are acknowledged, with the rest in flight.
	acked := map[string]bool{}
	got := 0
	for ; len(acked) < 5 && got < apps; got++ {
		if r := <-results; r.ok {
			acked[r.name] = true
		}
	}
	n.kill()
	for ; got < apps; got++ {
		if r := <-results; r.ok {
			acked[r.name] = true // the reply beat the kill
		}
	}

	n.restart(t)
	hub := hubApps(t, data)
	served := map[string]bool{}
	for name := range wasm {
		_, onHub := hub[name]
		if acked[name] && !onHub {
			t.Fatalf("acknowledged %s is not on the hub after the restart", name)
		}
		want := http.StatusNotFound
		if onHub {
			want = http.StatusOK
			served[digestFile(wasm[name])] = true
			if hub[name][1] != digestFile(wasm[name]) {
				t.Fatalf("hub holds %s with digest %s, want %s", name, hub[name][1], digestFile(wasm[name]))
			}
		}
		var code int
		var body []byte
		poll(t, 30*time.Second, func() bool {
			code, body = n.get("/" + name)
			return code == want && (code != http.StatusOK || string(body) == text(name)+"\n")
		}, func() string {
			return fmt.Sprintf("/%s after restart: %d %q, want %d (acknowledged %v)\n%s", name, code, body, want, acked[name], n.proc.logs)
		})
	}
	served[digestFile(mustRead(t, filepath.Join("..", "..", "guests", "hello", "hello.wasm")))] = true // tern up's sample app
	files := moduleFiles(t, data)
	for _, f := range files {
		if !served[f] {
			t.Errorf("orphan module file %s", f)
		}
	}
	if len(files) != len(served) {
		t.Fatalf("module files %q, want the %d served modules", files, len(served))
	}
	t.Logf("%d of %d deploys acknowledged before the kill, %d on the hub after it", len(acked), apps, len(served)-1)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCrashDuringDeployBurst deploys one app again and again and kills
// `tern up` while a deploy is in flight: after a restart the app serves
// the last acknowledged version, or the one in flight when the hub
// committed it before the kill, and only that version's module is kept.
func TestCrashDuringDeployBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildTern(t)
	data := filepath.Join(dir, "data")
	n := startUp(t, bin, data)

	text := func(v int) string { return fmt.Sprintf("%-16s", fmt.Sprintf("burst v%d", v)) }
	const acknowledged = 6
	for v := 1; v <= acknowledged; v++ {
		if code, out := runTern("deploy", "--data", data, helloApp(t, dir, "burst", fmt.Sprintf("%d.0.0", v), text(v))); code != 0 {
			t.Fatalf("deploy v%d: %s", v, out)
		}
	}
	// The next deploy is in flight when the node dies.
	inFlight := helloApp(t, dir, "burst", fmt.Sprintf("%d.0.0", acknowledged+1), text(acknowledged+1))
	done := make(chan int, 1)
	go func() {
		code, _ := runTern("deploy", "--data", data, inFlight)
		done <- code
	}()
	n.kill()
	if <-done == 0 {
		t.Logf("the in-flight deploy was acknowledged before the kill")
	}

	n.restart(t)
	version, ok := hubApps(t, data)["burst"]
	if !ok {
		t.Fatal("burst is not on the hub after the restart")
	}
	want := acknowledged
	if version[0] == fmt.Sprintf("%d.0.0", acknowledged+1) {
		want = acknowledged + 1
	} else if version[0] != fmt.Sprintf("%d.0.0", acknowledged) {
		t.Fatalf("hub holds burst %s, want %d.0.0 (or the one in flight)", version[0], acknowledged)
	}
	var code int
	var body []byte
	poll(t, 30*time.Second, func() bool {
		code, body = n.get("/burst")
		return code == http.StatusOK && string(body) == text(want)+"\n"
	}, func() string {
		return fmt.Sprintf("/burst after restart: %d %q, want %q\n%s", code, body, text(want), n.proc.logs)
	})
	wasm := mustRead(t, filepath.Join(dir, fmt.Sprintf("burst-%d.0.0", want), "hello.wasm"))
	sample := digestFile(mustRead(t, filepath.Join("..", "..", "guests", "hello", "hello.wasm")))
	poll(t, 30*time.Second, func() bool {
		files := moduleFiles(t, data)
		return len(files) == 2 && slices.Contains(files, digestFile(wasm)) && slices.Contains(files, sample)
	}, func() string {
		return fmt.Sprintf("module files %q, want only v%d's and the sample app's", moduleFiles(t, data), want)
	})
}

// TestCrashDuringCacheFill kills `tern up` while it caches a 50 MB origin
// response, when 20 MB of it have arrived. After a restart the chunk files
// of the cut fill are gone, the next request goes to the origin and gets
// the whole body, and the request after it is a hit with the same bytes.
func TestCrashDuringCacheFill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	const size, cut = 50 << 20, 20 << 20
	object := make([]byte, size)
	for i := range object {
		object[i] = byte(i*7 + i>>16)
	}
	sum := sha256.Sum256(object)
	var hits atomic.Int64
	halfway := make(chan struct{})
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		if n > 1 {
			w.Write(object)
			return
		}
		// The first response stops after cut bytes until the node is dead.
		w.Write(object[:cut])
		w.(http.Flusher).Flush()
		close(halfway)
		<-release
	}))
	defer origin.Close()
	defer close(release)

	dir := t.TempDir()
	bin := buildTern(t)
	data := filepath.Join(dir, "data")
	config := filepath.Join(dir, "tern.toml")
	os.WriteFile(config, fmt.Appendf(nil, "version = 1\n[[origins]]\nname = \"big\"\npath = \"/big\"\nupstreams = [%q]\n", origin.URL), 0o644)
	n := startUp(t, bin, data, "--config", config)

	go n.get("/big") // cut short by the kill
	select {
	case <-halfway:
	case <-time.After(60 * time.Second):
		t.Fatalf("the origin never got the request\n%s", n.proc.logs)
	}
	chunks := func() []string {
		var files []string
		filepath.WalkDir(filepath.Join(data, "store", "cache"), func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, path)
			}
			return nil
		})
		return files
	}
	// Chunks land as they arrive: the fill has files on disk.
	poll(t, 30*time.Second, func() bool { return len(chunks()) > 0 },
		func() string { return fmt.Sprintf("no chunk files while filling\n%s", n.proc.logs) })
	n.kill()
	if len(chunks()) == 0 {
		t.Fatal("no chunk files left by the kill: the test checks nothing")
	}

	n.restart(t)
	if files := chunks(); len(files) != 0 {
		t.Fatalf("chunk files of the cut fill not swept at start: %q", files)
	}
	for i, wantHits := range []int64{2, 2} {
		code, body := n.get("/big")
		if code != http.StatusOK || len(body) != size || sha256.Sum256(body) != sum {
			t.Fatalf("request %d after restart: %d, %d bytes, want the whole %d", i+1, code, len(body), size)
		}
		if got := hits.Load(); got != wantHits {
			t.Fatalf("request %d after restart: %d origin requests, want %d", i+1, got, wantHits)
		}
	}
}
