package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
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
	bin := filepath.Join(dir, "tern")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
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
	if code, text := runTern("deploy", "--hub", hubURL, "--key", key, app); code != 1 || !strings.Contains(text, "uthoriz") {
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
	if code, text := runTern("deploy", "--hub", hubURL, "--password-file", pubPW, "--key", key, app); code != 0 {
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
