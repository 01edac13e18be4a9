package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tern-edge/tern/server"
)

// cmdReload asks a running agent to re-read its config file, as SIGHUP
// does, and exits non-zero with the reason when the agent refuses it.
func cmdReload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", server.DefaultAdminAddr, "the agent's admin address")
	if fs.Parse(args) != nil {
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+*admin+"/reload", nil)
	if err != nil {
		return fmt.Errorf("reload %s: %w", *admin, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reload %s: %w", *admin, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(b))
	switch resp.StatusCode {
	case http.StatusOK:
		fmt.Fprintln(stdout, msg)
		return nil
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return fmt.Errorf("reload %s: the agent there offers no reload", *admin)
	default:
		return errors.New("config not reloaded: " + msg)
	}
}
