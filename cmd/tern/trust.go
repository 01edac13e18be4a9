package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
	ternsync "github.com/tern-edge/tern/sync"
)

func cmdTrust(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "set" && args[0] != "show") {
		fmt.Fprintln(stderr, "Usage:\n  tern trust set --root ROOT.key [--add KEY.pub]… [--revoke KEY.pub]… [--ttl 2160h]\n  tern trust show [--root ROOT.pub]")
		return errUsage
	}
	fs := flag.NewFlagSet("trust "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var h hubFlags
	h.register(fs)
	var add, revoke multiFlag
	rootPath := fs.String("root", "", "set: the root private key; show: a root public key to verify against")
	fs.Var(&add, "add", "publisher key to trust (ed25519:… or a .pub file); repeatable")
	fs.Var(&revoke, "revoke", "publisher key to revoke; repeatable")
	ttl := fs.Duration("ttl", deploy.DefaultListTTL, "how long the list stays valid; re-sign before then")
	if fs.Parse(args[1:]) != nil {
		return errUsage
	}
	c, err := h.connect("tern-trust")
	if err != nil {
		return err
	}
	defer c.Close()
	if args[0] == "show" {
		return showTrust(ctx, c, *rootPath, stdout)
	}
	if *rootPath == "" {
		return errors.New("--root is required: the root private key signs the list")
	}
	root, err := artifact.ReadPrivateKeyFile(*rootPath)
	if err != nil {
		return err
	}
	ch := deploy.TrustChange{TTL: *ttl}
	for _, list := range []struct {
		in  multiFlag
		out *[]ed25519.PublicKey
	}{{add, &ch.Add}, {revoke, &ch.Revoke}} {
		for _, s := range list.in {
			k, err := readPublicKey(s)
			if err != nil {
				return err
			}
			pk, err := artifact.ParsePublicKey(k)
			if err != nil {
				return err
			}
			*list.out = append(*list.out, pk)
		}
	}
	l, err := deploy.SetPublishers(ctx, c, root, ch)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "publisher list %d: %d keys, expires %s\n", l.Sequence, len(l.Keys), l.Expires.Format(time.RFC3339))
	return nil
}

func showTrust(ctx context.Context, c *ternsync.Client, rootPub string, stdout io.Writer) error {
	env, _, err := c.Publishers(ctx)
	if err != nil {
		return err
	}
	var l artifact.Publishers
	verified := "unverified"
	if rootPub != "" {
		s, err := readPublicKey(rootPub)
		if err != nil {
			return err
		}
		k, err := artifact.ParsePublicKey(s)
		if err != nil {
			return err
		}
		if l, err = artifact.OpenPublishers(env, artifact.NewKeySet(k)); err != nil {
			return err
		}
		verified = "signed by root " + artifact.KeyID(k)
	} else if l, err = artifact.PeekPublishers(env); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "publisher list %d (%s), expires %s\n", l.Sequence, verified, l.Expires.Format(time.RFC3339))
	for _, k := range l.Keys {
		pk, _ := artifact.ParsePublicKey(k)
		fmt.Fprintf(stdout, "  %s  %s\n", artifact.KeyID(pk), k)
	}
	return nil
}
