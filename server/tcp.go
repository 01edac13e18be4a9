package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	gosync "sync"
	"time"
)

// tcpServer is the lifecycle of one http.Server on one TCP listener, shared
// by the admin and plain listeners: bind once, serve once, shut down
// gracefully when the context ends.
type tcpServer struct {
	name     string // "admin" or "plain", for errors
	addr     string
	srv      *http.Server
	shutdown time.Duration
	onListen func(net.Addr)                  // logs the bound address
	wrap     func(net.Listener) net.Listener // applies limits, when set

	mu   gosync.Mutex // guards ln and used
	ln   net.Listener
	used bool // Serve or Close was called
}

// Listen binds the address. Errors name it.
func (t *tcpServer) Listen() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.used || t.ln != nil {
		return fmt.Errorf("listen %s %s: already listening or closed", t.name, t.addr)
	}
	ln, err := net.Listen("tcp", t.addr)
	if err != nil {
		return fmt.Errorf("listen %s %s: %w", t.name, t.addr, err)
	}
	t.ln = ln
	if t.onListen != nil {
		t.onListen(ln.Addr())
	}
	return nil
}

// Addr returns the bound address, or nil before Listen.
func (t *tcpServer) Addr() net.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ln == nil {
		return nil
	}
	return t.ln.Addr()
}

// Serve serves until ctx is done, then lets in-flight requests finish
// within the shutdown timeout. It calls Listen if it has not been called.
// It returns nil after a clean shutdown caused by ctx.
func (t *tcpServer) Serve(ctx context.Context) error {
	t.mu.Lock()
	if t.used {
		t.mu.Unlock()
		return fmt.Errorf("serve %s %s: already served or closed", t.name, t.addr)
	}
	needListen := t.ln == nil
	t.mu.Unlock()
	if needListen {
		if err := t.Listen(); err != nil {
			return err
		}
	}
	t.mu.Lock()
	t.used = true
	ln := t.ln
	t.mu.Unlock()

	serveLn := ln
	if t.wrap != nil {
		serveLn = t.wrap(ln)
	}
	errc := make(chan error, 1)
	go func() { errc <- t.srv.Serve(serveLn) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		serveErr = fmt.Errorf("serve %s %s: %w", t.name, ln.Addr(), serveErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), t.shutdown)
	defer cancel()
	err := t.srv.Shutdown(sctx)
	if err != nil {
		t.srv.Close()
		err = fmt.Errorf("shut down %s %s within %s: %w", t.name, ln.Addr(), t.shutdown, err)
	}
	if serveErr == nil {
		<-errc // ErrServerClosed, now that Shutdown has run
	}
	return errors.Join(serveErr, err)
}

// Close releases the listener of a server that will not Serve. It does
// nothing once Serve has been called.
func (t *tcpServer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.used {
		return nil
	}
	t.used = true
	if t.ln == nil {
		return nil
	}
	return t.ln.Close()
}
