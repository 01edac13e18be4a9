package main

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestReloadOnHangup: SIGHUP (and tern reload) makes a running `tern up` re-read its config
// file instead of ending it. A changed log level applies at once, a
// changed listen address is logged as needing a restart, a config that
// does not parse is refused with its reason and the running one stays,
// and requests served across ten reloads all succeed.
func TestReloadOnHangup(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	bin := buildTern(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "tern.toml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := "version = 1\ndata = " + `"` + filepath.Join(dir, "data") + `"` + "\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n"
	hub := "[hub]\nlisten = \"127.0.0.1:0\"\n"
	write(base + hub)
	up := start(t, bin, "up", "--config", cfgPath)
	url := up.await(t, `apps \(HTTPS.*\) +(\S+)/hello`)
	caPath := up.await(t, `local CA certificate +(\S+)`)
	admin := up.await(t, `metrics +http://(\S+)/metrics`)
	pem, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	poll(t, 30*time.Second, func() bool {
		resp, err := client.Get(url + "/hello")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, func() string { return "hello never served\n" + up.logs.String() })

	var ok, failed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := client.Get(url + "/hello")
			if err != nil || resp.StatusCode != http.StatusOK {
				failed.Add(1)
			} else {
				ok.Add(1)
			}
			if resp != nil {
				resp.Body.Close()
			}
		}
	}()
	hangup := func() {
		t.Helper()
		if err := up.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	reloads := func() int { return strings.Count(up.logs.String(), `msg="config reloaded"`) }
	for i := range 10 {
		if i == 5 {
			write(base + "log_level = \"debug\"\n" + hub)
		}
		hangup()
		poll(t, 10*time.Second, func() bool { return reloads() == i+1 },
			func() string { return "reload not logged\n" + up.logs.String() })
	}
	close(stop)
	<-done
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("across ten reloads: %d requests failed, %d succeeded", failed.Load(), ok.Load())
	}
	if !strings.Contains(up.logs.String(), `applied=log_level`) {
		t.Fatalf("log level change not applied:\n%s", up.logs)
	}

	write(strings.Replace(base, `listen = "127.0.0.1:0"`, `listen = "127.0.0.1:1"`, 1) + "log_level = \"debug\"\n" + hub)
	hangup()
	poll(t, 10*time.Second, func() bool {
		return strings.Contains(up.logs.String(), "need a restart") && strings.Contains(up.logs.String(), "keys=listen")
	},
		func() string { return "listen change not reported\n" + up.logs.String() })

	write(base + "log_level = \"loud\"\n" + hub)
	hangup()
	poll(t, 10*time.Second, func() bool {
		return strings.Contains(up.logs.String(), `config not reloaded; the running one stays`) && strings.Contains(up.logs.String(), `log_level = \"loud\"`)
	}, func() string { return "bad config not refused with its reason\n" + up.logs.String() })
	// tern reload says why, and exits non-zero.
	if code, out := runTern("reload", "--admin", admin); code != 1 || !strings.Contains(out, `config not reloaded`) || !strings.Contains(out, `log_level = "loud"`) {
		t.Fatalf("tern reload of a bad config: exit %d\n%s", code, out)
	}
	write(base + hub)
	if code, out := runTern("reload", "--admin", admin); code != 0 || !strings.Contains(out, "reloaded") {
		t.Fatalf("tern reload: exit %d\n%s", code, out)
	}
	resp, err := client.Get(url + "/hello")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after a refused reload: %v %v", resp, err)
	}
	resp.Body.Close()
	if up.cmd.ProcessState != nil {
		t.Fatalf("tern up exited: %v", up.cmd.ProcessState)
	}
}
