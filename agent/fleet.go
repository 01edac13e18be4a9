package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"

	ternsync "github.com/tern-edge/tern/sync"
)

// AgentIDFile holds the agent's fleet identity, created on first start so
// that a restarted agent reports as itself.
const AgentIDFile = "agent.id"

// loadAgentID reads the agent's ID from dataDir, creating one from the
// host name and random bytes the first time.
func loadAgentID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, AgentIDFile)
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("agent id: %w", err)
	}
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, host)
	if host == "" {
		host = "agent"
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("agent id: %w", err)
	}
	id := host + "-" + hex.EncodeToString(rnd[:])
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("agent id: %w", err)
	}
	return id, nil
}

// appCounters count one installed version's requests and server errors,
// which rollouts read from heartbeats to judge a version's health.
type appCounters struct {
	requests atomic.Uint64
	errors   atomic.Uint64
}

// count wraps h so that its responses are counted in c.
func (c *appCounters) count(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &codeWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		c.requests.Add(1)
		if sw.code >= 500 {
			c.errors.Add(1)
		}
	})
}

// codeWriter records the status a handler writes.
type codeWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *codeWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *codeWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// ReadFrom passes a body on to the server's ReadFrom, which sends a file
// with sendfile; without it io.Copy would copy through a buffer.
func (w *codeWriter) ReadFrom(r io.Reader) (int64, error) {
	w.wrote = true
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

func (w *codeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// heartbeat is the agent's current state for the fleet.
func (a *Agent) heartbeat() ternsync.Heartbeat {
	hb := ternsync.Heartbeat{
		Agent:    a.id,
		Site:     a.site,
		Labels:   a.cfg.Labels,
		Version:  a.version,
		Started:  a.started,
		Refusals: a.watcher.Refusals(),
		GPU:      a.gpuOffer(),
		Carbon:   a.carbonOffer(),
	}
	a.mu.Lock()
	for _, ia := range a.apps {
		hb.Apps = append(hb.Apps, ternsync.AppState{
			App:      ia.rel.App,
			Version:  ia.rel.Manifest.Version,
			Sequence: ia.rel.Sequence,
			Digest:   ia.rel.Digest,
			Expired:  !a.now().Before(ia.rel.Expires),
			Requests: ia.counters.requests.Load(),
			Errors:   ia.counters.errors.Load(),
		})
	}
	a.mu.Unlock()
	sort.Slice(hb.Apps, func(i, j int) bool { return hb.Apps[i].App < hb.Apps[j].App })
	return hb
}

// ID is the agent's fleet identity.
func (a *Agent) ID() string { return a.id }
