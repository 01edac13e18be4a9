package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
	"github.com/tern-edge/tern/guests"
	ternsync "github.com/tern-edge/tern/sync"
)

// EnsureDevKey returns the development publisher key under dataDir,
// creating it on first use. `tern up` trusts it, and `tern deploy` signs
// with it when given no key, so a newcomer deploys with no flags.
func EnsureDevKey(dataDir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dataDir, DevKeyFile)
	key, err := artifact.ReadPrivateKeyFile(path)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key, err = artifact.GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := WriteKeyPair(path, key); err != nil {
		return nil, err
	}
	return key, nil
}

// WriteKeyPair writes key to path (mode 0600, refusing to overwrite) and
// its public half to path+".pub".
func WriteKeyPair(path string, key ed25519.PrivateKey) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if _, err := f.Write(artifact.MarshalPrivateKey(key)); err != nil {
		f.Close()
		return fmt.Errorf("write key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	pub := artifact.FormatPublicKey(key.Public().(ed25519.PublicKey)) + "\n"
	if err := os.WriteFile(path+".pub", []byte(pub), 0o644); err != nil {
		return fmt.Errorf("write key %s.pub: %w", path, err)
	}
	return nil
}

// DeploySample publishes the built-in hello app to the agent's embedded
// hub, signed with key, unless the hub already has a release of it.
func (a *Agent) DeploySample(ctx context.Context, key ed25519.PrivateKey) error {
	m, err := artifact.ParseManifest(guests.HelloManifest)
	if err != nil {
		return fmt.Errorf("sample manifest: %w", err)
	}
	c, err := ternsync.Connect(ternsync.ConnConfig{URL: a.HubURL(), Name: "tern-up"})
	if err != nil {
		return err
	}
	defer c.Close()
	if _, _, err := c.Release(ctx, m.Name); err == nil {
		return nil
	} else if !errors.Is(err, ternsync.ErrNotFound) {
		return err
	}
	if _, err := deploy.Push(ctx, m, guests.HelloWasm, deploy.Options{Client: c, Key: key}); err != nil {
		return fmt.Errorf("deploy sample: %w", err)
	}
	a.logger.Info("deployed the sample app", "app", m.Name)
	return nil
}
