package sync

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

type fakeRunner struct{ refuse bool }

func (f fakeRunner) RunOffloaded(_ context.Context, job OffloadJob) OffloadResult {
	if f.refuse {
		return OffloadResult{Refused: true, Error: "app " + job.App + " not installed"}
	}
	return OffloadResult{Status: http.StatusCreated, Header: http.Header{"X-Job": {job.ID}}, Body: append([]byte("ran "), job.Body...)}
}

type fakeAI struct{}

func (fakeAI) ServeAI(_ context.Context, call AICall) AIAnswer {
	if call.Model != "det-llm" {
		return AIAnswer{Reason: "not_supported", Error: "model " + call.Model + " not supported"}
	}
	return AIAnswer{Text: strings.ToUpper(call.Prompt), PromptTokenCount: 2, GeneratedTokenCount: uint32(call.Params.MaxTokens)}
}

// serveOn starts ServeJobs and ServeAI for site on a new connection and
// waits until the hub routes requests to them.
func serveOn(t *testing.T, url, site string, jr JobRunner) {
	t.Helper()
	c, err := Connect(ConnConfig{URL: url, Name: site})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { c.ServeJobs(ctx, site, jr, nil); done <- struct{}{} }()
	go func() { c.ServeAI(ctx, site, fakeAI{}, nil); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done; c.Close() })
}

func TestOffloadJob(t *testing.T) {
	hub := startTestHub(t)
	url := hub.nc.ConnectedUrl()
	serveOn(t, url, "clean", fakeRunner{})
	serveOn(t, url, "bare", fakeRunner{refuse: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	job := OffloadJob{ID: "j1", Origin: "dirty", App: "kv", Digest: "sha256:x", Method: "POST", Target: "/kv", Host: "h", Body: []byte("payload"), Deadline: time.Now().Add(time.Hour)}

	// Subscriptions propagate asynchronously: wait until both are routed.
	for _, site := range []string{"clean", "bare"} {
		waitUntil(t, "site "+site+" to be reachable", func() bool {
			_, err := hub.OffloadJob(ctx, site, job)
			return !errors.Is(err, ErrUnreachable)
		})
	}
	res, err := hub.OffloadJob(ctx, "clean", job)
	if err != nil || res.Status != http.StatusCreated || string(res.Body) != "ran payload" || res.Site != "clean" || res.Header.Get("X-Job") != "j1" {
		t.Fatalf("offload = %+v, %v", res, err)
	}
	if _, err := hub.OffloadJob(ctx, "bare", job); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "app kv not installed") {
		t.Fatalf("offload to a site without the app: %v, want ErrRefused naming the app", err)
	}
	if _, err := hub.OffloadJob(ctx, "nowhere", job); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("offload to a site nobody serves: %v, want ErrUnreachable", err)
	}
	for _, site := range []string{"", "a.b", "*", ">", "a b"} {
		if _, err := hub.OffloadJob(ctx, site, job); !errors.Is(err, ErrInvalidSite) {
			t.Errorf("security: offload to site %q: %v, want ErrInvalidSite", site, err)
		}
	}
	big := job
	big.Body = make([]byte, hub.nc.MaxPayload()+1)
	if _, err := hub.OffloadJob(ctx, "clean", big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized job: %v, want ErrTooLarge", err)
	}

	ans, err := hub.CallAI(ctx, "clean", AICall{Kind: AIInfer, App: "ai", Model: "det-llm", Prompt: "hi", Params: AIParams{MaxTokens: 7}})
	if err != nil || ans.Text != "HI" || ans.GeneratedTokenCount != 7 || ans.Site != "clean" {
		t.Fatalf("infer = %+v, %v", ans, err)
	}
	ans, err = hub.CallAI(ctx, "clean", AICall{Kind: AIInfer, App: "ai", Model: "big"})
	if err != nil || ans.Reason != "not_supported" {
		t.Fatalf("infer of a model not served: %+v, %v", ans, err)
	}
	if _, err := hub.CallAI(ctx, "nowhere", AICall{Kind: AIInfer, Model: "det-llm"}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("infer at a site nobody serves: %v", err)
	}
}

// TestOffloadTimeout checks that a site that takes a job and never
// answers costs the caller its deadline, not more.
func TestOffloadTimeout(t *testing.T) {
	hub := startTestHub(t)
	serveOn(t, hub.nc.ConnectedUrl(), "stuck", blockingRunner{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		short, c2 := context.WithTimeout(ctx, 300*time.Millisecond)
		start := time.Now()
		_, err := hub.OffloadJob(short, "stuck", OffloadJob{ID: "j"})
		c2()
		if errors.Is(err, ErrUnreachable) && time.Now().Before(deadline) {
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
			t.Fatalf("stuck site: %v after %s, want the caller's deadline", err, time.Since(start))
		}
		return
	}
}

type blockingRunner struct{}

func (blockingRunner) RunOffloaded(ctx context.Context, _ OffloadJob) OffloadResult {
	<-ctx.Done()
	return OffloadResult{}
}
