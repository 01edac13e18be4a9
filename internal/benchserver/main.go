// Command benchserver serves the built-in hello guest and a static Go
// handler through the same front door, router and metrics middleware as
// the agent, so scripts/bench-e2e.sh can measure both in one run: the Go
// handler is the ceiling a wasm function is compared against.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/guests"
	"github.com/tern-edge/tern/localca"
	"github.com/tern-edge/tern/routing"
	"github.com/tern-edge/tern/server"
	"github.com/tern-edge/tern/wasmhost"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchserver:", err)
		os.Exit(1)
	}
}

func run() error {
	data := flag.String("data", "bench-data", "directory for the CA and compile cache")
	addr := flag.String("listen", "127.0.0.1:0", "address to serve on")
	flag.Parse()
	// The agent's default collector target (agent.DefaultGCPercent), so
	// both handlers are measured as the agent would run them.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()

	m, err := artifact.ParseManifest(guests.HelloManifest)
	if err != nil {
		return err
	}
	m = m.WithDefaults()
	rt, err := wasmhost.New(ctx, wasmhost.Config{CacheDir: filepath.Join(*data, "compile-cache"), Logger: logger, Registerer: reg})
	if err != nil {
		return err
	}
	defer rt.Close(context.Background())
	app, err := rt.Load(ctx, wasmhost.AppConfig{
		Name:   m.Name,
		Digest: artifact.Digest(guests.HelloWasm),
		Wasm:   guests.HelloWasm,
		Limits: wasmhost.Limits{
			MemoryBytes:      uint64(m.Limits.Memory),
			Timeout:          time.Duration(m.Limits.Timeout),
			MaxResponseBytes: int64(m.Limits.MaxResponse),
			MaxRequestBytes:  int64(m.Limits.MaxRequest),
		},
	})
	if err != nil {
		return err
	}
	body := []byte("Hello from Tern!\n")
	tbl, err := routing.NewTable([]routing.Route{
		{Path: "/hello", App: "hello", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { app.Serve(w, r, "/hello") })},
		{Path: "/static", App: "static", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(body)
		})},
	})
	if err != nil {
		return err
	}
	var router routing.Router
	router.Swap(tbl)
	appOf := func(r *http.Request) string {
		if rt, ok := router.Match(r); ok {
			return rt.App
		}
		return ""
	}
	leaf, _, err := localca.Ensure(*data, nil, time.Now())
	if err != nil {
		return err
	}
	srv, err := server.New(server.Config{
		Addr:      *addr,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf}},
		Handler:   server.Instrument(reg, appOf, &router),
		Logger:    logger,
	})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	fmt.Println(srv.Addr())
	return srv.Serve(ctx)
}
