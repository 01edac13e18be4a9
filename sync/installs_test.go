package sync

import (
	"context"
	"fmt"
	gosync "sync"
	"testing"
	"time"
)

// TestInstallsHammer submits releases of several apps from several
// goroutines at once: one app's installs never overlap, apps do run in
// parallel, every app ends on its newest release, and allTried closes
// once each release submitted has been tried.
func TestInstallsHammer(t *testing.T) {
	const apps, releases = 4, 50
	var (
		mu       gosync.Mutex
		running  = map[string]int{}
		last     = map[string]string{}
		parallel int // most apps installing at once
	)
	// A barrier: the first install of each app waits until every app has
	// one running, which only parallel installs can reach.
	allIn := make(chan struct{})
	handle := func(ctx context.Context, app string, env []byte, first bool) bool {
		mu.Lock()
		running[app]++
		if running[app] > 1 {
			mu.Unlock()
			panic(fmt.Sprintf("two installs of %s at once", app))
		}
		n := 0
		for _, r := range running {
			n += r
		}
		parallel = max(parallel, n)
		if n == apps {
			select {
			case <-allIn:
			default:
				close(allIn)
			}
		}
		last[app] = string(env)
		mu.Unlock()
		select {
		case <-allIn:
		case <-ctx.Done(): // superseded
		case <-time.After(10 * time.Second):
		}
		mu.Lock()
		running[app]--
		mu.Unlock()
		return false
	}
	q := newInstalls(handle)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg gosync.WaitGroup
	for a := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			app := fmt.Sprintf("app%d", a)
			for r := range releases {
				q.submit(ctx, app, []byte(fmt.Sprintf("%s@%d", app, r)))
			}
		}()
	}
	wg.Wait()
	select {
	case <-q.allTried():
	case <-time.After(30 * time.Second):
		t.Fatal("allTried did not close")
	}
	q.wait()
	if parallel != apps {
		t.Fatalf("at most %d apps installed at once, want %d", parallel, apps)
	}
	for a := range apps {
		app := fmt.Sprintf("app%d", a)
		if want := fmt.Sprintf("%s@%d", app, releases-1); last[app] != want {
			t.Errorf("%s ended on %q, want %q", app, last[app], want)
		}
	}
	if len(q.apps) != 0 || q.untried != 0 {
		t.Fatalf("left %d apps and %d untried releases", len(q.apps), q.untried)
	}
}

// TestInstallsRetrySuperseded keeps a release waiting for its module and
// replaces it with a newer one: the newer one is tried at once, not after
// the retry delay, and the waiting one is not tried again.
func TestInstallsRetrySuperseded(t *testing.T) {
	tries := make(chan string, 10)
	handle := func(ctx context.Context, app string, env []byte, first bool) bool {
		tries <- string(env)
		return string(env) == "v1" // v1's module is never available
	}
	q := newInstalls(handle)
	ctx, cancel := context.WithCancel(context.Background())
	q.submit(ctx, "a", []byte("v1"))
	if got := <-tries; got != "v1" {
		t.Fatalf("first try %q", got)
	}
	q.submit(ctx, "a", []byte("v2"))
	for got := range tries {
		if got == "v2" {
			break
		}
		if got != "v1" {
			t.Fatalf("tried %q", got)
		}
	}
	q.wait()
	cancel()
	select {
	case got := <-tries:
		t.Fatalf("tried %q after v2 installed", got)
	default:
	}
}
