package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tern-edge/tern/gpu"
	ternsync "github.com/tern-edge/tern/sync"
)

// remoteAI is gpu.RemoteTransport over the fleet's NATS: sync carries
// the calls (tern.ai.<site>) with its own wire types, so that it never
// imports gpu and its NVML dependency; this adapter converts.
// It holds the agent, not its client: apps loaded from the store get
// their adapter before the hub connection exists.
type remoteAI struct{ a *Agent }

var _ gpu.RemoteTransport = remoteAI{}

// InferRemote implements gpu.RemoteTransport.
func (r remoteAI) InferRemote(ctx context.Context, site, app string, req gpu.InferRequest) (gpu.InferResult, gpu.RemoteUsage, error) {
	ans, err := r.a.client.CallAI(ctx, site, ternsync.AICall{Kind: ternsync.AIInfer, Site: r.a.site, App: app, Model: req.Model,
		Prompt: req.Prompt, Params: ternsync.AIParams(req.Params)})
	if err != nil {
		return gpu.InferResult{}, gpu.RemoteUsage{}, fmt.Errorf("%w: %w", gpu.ErrBackend, err)
	}
	u, err := remoteAnswer(site, app, req.Model, ans)
	if err != nil {
		return gpu.InferResult{}, u, err
	}
	return gpu.InferResult{Text: ans.Text, Usage: gpu.InferUsage{PromptTokenCount: ans.PromptTokenCount, GeneratedTokenCount: ans.GeneratedTokenCount}}, u, nil
}

// EmbedRemote implements gpu.RemoteTransport.
func (r remoteAI) EmbedRemote(ctx context.Context, site, app string, req gpu.EmbedRequest) (gpu.EmbedResult, gpu.RemoteUsage, error) {
	ans, err := r.a.client.CallAI(ctx, site, ternsync.AICall{Kind: ternsync.AIEmbed, Site: r.a.site, App: app, Model: req.Model, Texts: req.Texts})
	if err != nil {
		return gpu.EmbedResult{}, gpu.RemoteUsage{}, fmt.Errorf("%w: %w", gpu.ErrBackend, err)
	}
	u, err := remoteAnswer(site, app, req.Model, ans)
	if err != nil {
		return gpu.EmbedResult{}, u, err
	}
	return gpu.EmbedResult{Embeddings: ans.Embeddings, Usage: gpu.EmbedUsage{PromptTokenCount: ans.PromptTokenCount}}, u, nil
}

// remoteAnswer decodes the remote site's usage and gives a failed call
// the gpu sentinel of its reason, so that the guest sees the same errno
// as for a local call.
func remoteAnswer(site, app, model string, ans ternsync.AIAnswer) (gpu.RemoteUsage, error) {
	u := gpu.RemoteUsage{Site: site}
	if len(ans.Usage) > 0 {
		_ = json.Unmarshal(ans.Usage, &u.Usage)
	}
	if len(ans.Emissions) > 0 {
		_ = json.Unmarshal(ans.Emissions, &u.Emissions)
	}
	if ans.Reason == "" {
		return u, nil
	}
	sentinel := map[string]error{
		"queue_full": gpu.ErrQueueFull, "timeout": gpu.ErrQueueTimeout, "not_allowed": gpu.ErrModelNotAllowed,
		"not_supported": gpu.ErrModelNotSupported, "no_device": gpu.ErrNoDevice, "invalid_input": gpu.ErrInvalidInput,
		"deadline": context.DeadlineExceeded, "canceled": context.Canceled, "closed": gpu.ErrClosed,
	}[ans.Reason]
	if sentinel == nil {
		sentinel = gpu.ErrBackend
	}
	err := fmt.Errorf("%s for %s at site %s: %s: %w", model, app, site, ans.Error, sentinel)
	if ans.RetryAfter > 0 && (sentinel == gpu.ErrQueueFull || sentinel == gpu.ErrQueueTimeout) {
		return u, &gpu.BusyError{Err: sentinel, App: app, Model: model, Limit: "site " + site, RetryAfter: ans.RetryAfter}
	}
	return u, err
}

// aiServer serves other sites' inference calls from this site's service.
// The service checks the app's grant as installed here: a site runs
// models only for apps whose signed manifest it holds and that grant them.
type aiServer struct{ svc *gpu.Service }

var _ ternsync.AIServer = aiServer{}

// ServeAI implements ternsync.AIServer.
func (s aiServer) ServeAI(ctx context.Context, call ternsync.AICall) ternsync.AIAnswer {
	var ans ternsync.AIAnswer
	var u gpu.Usage
	var err error
	switch call.Kind {
	case ternsync.AIInfer:
		var res gpu.Result
		res, err = s.svc.Infer(ctx, call.App, call.Model, call.Prompt, gpu.InferParams(call.Params))
		ans.Text, ans.PromptTokenCount, ans.GeneratedTokenCount = res.Text, res.InferResult.Usage.PromptTokenCount, res.InferResult.Usage.GeneratedTokenCount
		u = res.Usage
	case ternsync.AIEmbed:
		var res gpu.EmbedOutcome
		res, err = s.svc.Embed(ctx, call.App, call.Model, call.Texts)
		ans.Embeddings, ans.PromptTokenCount = res.Embeddings, res.EmbedResult.Usage.PromptTokenCount
		u = res.Usage
	default:
		err = fmt.Errorf("call kind %q: want %s or %s: %w", call.Kind, ternsync.AIInfer, ternsync.AIEmbed, gpu.ErrInvalidInput)
	}
	if err != nil {
		var busy *gpu.BusyError
		if errors.As(err, &busy) {
			ans.RetryAfter = busy.RetryAfter
		}
		return ternsync.AIAnswer{Reason: gpu.Reason(err), Error: err.Error(), RetryAfter: ans.RetryAfter}
	}
	// Emissions stay in this site's ledger, where the lease ran; the
	// usage (an energy estimate until the next sample) goes back.
	ans.Usage, _ = json.Marshal(u)
	return ans
}

// remoteCallTimeout bounds a call to another site when the guest's
// context has no deadline of its own.
const remoteCallTimeout = time.Minute
