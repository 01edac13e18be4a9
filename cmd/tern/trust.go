package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/deploy"
	ternsync "github.com/tern-edge/tern/sync"
)

func cmdTrust(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "set" && args[0] != "show") {
		fmt.Fprintln(stderr, "Usage:\n  tern trust set --root ROOT.key [--add KEY.pub]… [--revoke KEY.pub]… [--ttl 2160h] [--from LIST | --reset]\n  tern trust show [--root ROOT.pub]")
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
	from := fs.String("from", "", "set: build on this signed list (a ROOT.key.list file) instead of the hub's")
	reset := fs.Bool("reset", false, "set: build a new list from --add alone, whatever the hub holds")
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
	if *from != "" && *reset {
		return errors.New("--from and --reset: give one at most")
	}
	// The list signed last is recorded beside the root key: the hub's
	// list is built on only when it is that one, since an older list the
	// root signed can be replayed to the hub.
	record := deploy.LastListFile(*rootPath)
	last, err := deploy.ReadLastList(record)
	if err != nil {
		return err
	}
	ch := deploy.TrustChange{TTL: *ttl, Last: last, Reset: *reset}
	switch {
	case *from != "":
		if ch.From, err = os.ReadFile(*from); err != nil {
			return fmt.Errorf("--from: %w", err)
		}
		fmt.Fprintf(stderr, "warning: building on the list in %s, not on the hub's list\n", *from)
	case *reset:
		fmt.Fprintln(stderr, "warning: --reset: the new list holds only the --add keys; no key of the hub's list or of the last list signed carries over")
	}
	if *from != "" || *reset {
		fmt.Fprintln(stderr, "warning: the new list's sequence follows the newest list of this root that the hub keeps or the record names; an agent holding a newer one refuses it")
	}
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
	if errors.Is(err, deploy.ErrListMismatch) {
		return fmt.Errorf("%w\nif the hub was tampered with, nothing changed; to build on a list you signed pass --from FILE, to start over --reset (the record is %s)", err, record)
	}
	if err != nil {
		return err
	}
	if err := deploy.SaveLastList(record, l.Envelope); err != nil {
		return fmt.Errorf("publisher list %d is on the hub but was not recorded: %w", l.Sequence, err)
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
