// Command cachebench serves a static test origin and Tern's cache in
// front of it on loopback, so scripts/bench-cache.sh can load the cache
// with wrk and compare it with nginx's proxy_cache and Varnish pointed at
// the same origin. The cache listens over plain HTTP and, with -cert and
// -key, over HTTPS too. It prints "origin <addr>", "cache <addr>" and,
// with TLS, "cache-tls <addr>" on stdout once all listen.
//
// The origin answers /1k and /100k with bodies of that size, cacheable
// for a day, and so does any path under them (/1k/anything): unique URLs
// for measuring misses.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"
	"time"

	"github.com/tern-edge/tern/cache"
	"github.com/tern-edge/tern/origin"
	"github.com/tern-edge/tern/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cachebench:", err)
		os.Exit(1)
	}
}

func run() error {
	data := flag.String("data", "cachebench-data", "directory for the cache's badger store")
	listen := flag.String("listen", "127.0.0.1:0", "address of the cache")
	originAddr := flag.String("origin", "127.0.0.1:0", "address of the test origin")
	listenTLS := flag.String("listen-tls", "127.0.0.1:0", "address of the cache over HTTPS, with -cert and -key")
	certFile := flag.String("cert", "", "PEM certificate chain for HTTPS")
	keyFile := flag.String("key", "", "PEM private key for HTTPS")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	traceFile := flag.String("trace", "", "write an execution trace of the whole run to this file")
	// 400 is agent.DefaultGCPercent, which a tern agent runs with; this
	// command may not import the agent package (internal/archtest).
	gcPercent := flag.Int("gc-percent", 400, "garbage collector target (GOGC), the agent's default gc_percent")
	flag.Parse()
	debug.SetGCPercent(*gcPercent)
	if *traceFile != "" {
		f, err := os.Create(*traceFile)
		if err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		if err := trace.Start(f); err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		defer trace.Stop()
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// The origin: fixed bodies of 1 KB and 100 KB, cacheable for a day.
	bodies := map[string][]byte{"/1k": make([]byte, 1<<10), "/100k": make([]byte, 100<<10), "/4m": make([]byte, 4<<20)}
	for _, b := range bodies {
		for i := range b {
			b[i] = 'a' + byte(i%26)
		}
	}
	om := http.NewServeMux()
	om.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Path
		if i := strings.IndexByte(name[1:], '/'); i >= 0 {
			name = name[:i+1]
		}
		b, ok := bodies[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=86400")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", `"`+name+`"`)
		w.Write(b)
	})
	oln, err := net.Listen("tcp", *originAddr)
	if err != nil {
		return fmt.Errorf("listen origin: %w", err)
	}
	osrv := &http.Server{Handler: om, ReadHeaderTimeout: 10 * time.Second}
	go osrv.Serve(oln)
	defer osrv.Close()

	st, err := store.Open(*data, logger)
	if err != nil {
		return err
	}
	defer st.Close()
	c, err := cache.New(cache.Config{Storage: st.Cache(), MaxBytes: 1 << 30, Logger: logger})
	if err != nil {
		return err
	}
	o, err := origin.New(origin.Config{Upstreams: []string{"http://" + oln.Addr().String()}, Logger: logger})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen cache: %w", err)
	}
	srv := &http.Server{Handler: origin.Handler(c, o), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("origin %s\ncache %s\n", oln.Addr(), ln.Addr())
	if *certFile != "" {
		// The same handler behind crypto/tls; wrk speaks HTTP/1.1 to
		// nginx, hitch and this listener alike.
		tln, err := net.Listen("tcp", *listenTLS)
		if err != nil {
			return fmt.Errorf("listen cache tls: %w", err)
		}
		tsrv := &http.Server{Handler: srv.Handler, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- tsrv.ServeTLS(tln, *certFile, *keyFile) }()
		defer tsrv.Close()
		fmt.Printf("cache-tls %s\n", tln.Addr())
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve cache: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	c.Wait()
	return nil
}
