package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	ternsync "github.com/tern-edge/tern/sync"
)

// connectHub gives the agent its NATS side. Without a hub URL the agent
// runs the hub itself (tern up) and follows it directly. With one, it runs
// a leaf node of that hub with a JetStream domain of its own, whose
// buckets mirror the hub's: the agent follows its leaf, so a site cut off
// from the hub still has every release and module, and catches up by
// itself when the link returns.
func (a *Agent) connectHub(ctx context.Context) error {
	cfg := a.cfg
	logger := a.logger.With("component", "sync")
	if cfg.Hub.URL == "" {
		hub, err := ternsync.StartHub(ternsync.HubConfig{
			Dir:        filepath.Join(cfg.Data, "hub"),
			Listen:     cfg.Hub.Listen,
			LeafListen: cfg.Hub.LeafListen,
			Domain:     ternsync.HubDomain,
			Logger:     a.logger.With("component", "hub"),
		})
		if err != nil {
			return err
		}
		a.hub = hub
		a.onUndo(hub.Shutdown)
		if err := os.WriteFile(filepath.Join(cfg.Data, HubURLFile), []byte(hub.ClientURL()+"\n"), 0o600); err != nil {
			return fmt.Errorf("record hub url: %w", err)
		}
		if a.client, err = ternsync.Connect(ternsync.ConnConfig{Server: hub, Name: "tern-agent", Logger: logger}); err != nil {
			return err
		}
		a.onUndo(a.client.Close)
		return a.client.EnsureBuckets(ctx)
	}

	leaf, err := ternsync.StartHub(ternsync.HubConfig{
		Name:     "tern-" + a.id,
		Dir:      filepath.Join(cfg.Data, "leaf"),
		Listen:   "-",
		Domain:   "tern-" + a.id,
		Upstream: &ternsync.Upstream{URL: cfg.Hub.URL, Creds: cfg.Hub.Creds},
		Logger:   a.logger.With("component", "leaf"),
	})
	if err != nil {
		return err
	}
	a.leaf = leaf
	a.onUndo(leaf.Shutdown)
	a.client, err = ternsync.Connect(ternsync.ConnConfig{
		Server:      leaf,
		FleetDomain: ternsync.HubDomain,
		Name:        "tern-agent",
		Logger:      logger,
	})
	if err != nil {
		return err
	}
	a.onUndo(a.client.Close)
	// Mirrors are local streams: creating them needs no hub, and they
	// fill in whenever the link is up.
	return a.client.EnsureMirrors(ctx)
}
