package cache_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tern-edge/tern/cache"
)

// fullStorage fails every chunk write past the first of a body, as a
// disk that fills up during a large miss does.
type fullStorage struct {
	cache.MemStorage
	failed  atomic.Int64
	deleted atomic.Int64
}

func (s *fullStorage) WriteChunk(body string, idx int, p []byte) error {
	if idx > 0 {
		s.failed.Add(1)
		return fmt.Errorf("write cache chunk %s/%d: %w", body, idx, syscall.ENOSPC)
	}
	return s.MemStorage.WriteChunk(body, idx, p)
}

func (s *fullStorage) DeleteBody(body string) error {
	s.deleted.Add(1)
	return s.MemStorage.DeleteBody(body)
}

// lineCounter counts log lines with a message containing sub.
type lineCounter struct {
	sub string
	n   atomic.Int64
}

func (h *lineCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *lineCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.sub) {
		h.n.Add(1)
	}
	return nil
}
func (h *lineCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *lineCounter) WithGroup(string) slog.Handler      { return h }

// TestStoreFailureKeepsStreaming: when the storage cannot take a large
// miss, every client sharing the fill still gets the whole body from
// the origin; the partial entry is dropped, the failure counted, and
// logged once per interval.
func TestStoreFailureKeepsStreaming(t *testing.T) {
	const size = 5<<20 + 123
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i ^ i>>9)
	}
	release := make(chan struct{})
	var gate atomic.Bool
	gate.Store(true)
	clk := newClock()
	o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Length", fmt.Sprint(size))
		// The first chunk and a half, then wait, so that collapsed
		// requests join before the storage fails.
		first := cache.ChunkSize + cache.ChunkSize/2
		w.Write(want[:first])
		w.(http.Flusher).Flush()
		if gate.Load() {
			<-release
		}
		w.Write(want[first:])
	})
	st := &fullStorage{}
	logs := &lineCounter{sub: "cache store failed"}
	c, err := cache.New(cache.Config{Storage: st, Now: clk.Now, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Wait()
	srv := httptest.NewServer(c.Handler(o))
	defer srv.Close()

	const clients = 3
	var wg gosync.WaitGroup
	errs := make(chan error, clients)
	started := make(chan struct{}, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := srv.Client().Get(srv.URL + "/big")
			if err != nil {
				errs <- err
				started <- struct{}{}
				return
			}
			defer resp.Body.Close()
			started <- struct{}{} // headers are out: the client reads the fill
			got, err := io.ReadAll(resp.Body)
			switch {
			case err != nil:
				errs <- fmt.Errorf("read body after %d bytes: %w", len(got), err)
			case !bytes.Equal(got, want):
				errs <- fmt.Errorf("body: %d bytes, want %d, equal prefix %v", len(got), len(want), bytes.HasPrefix(want, got))
			}
		}()
		<-started // one at a time, so that the first leads the fill
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := o.hits.Load(); n != 1 {
		t.Errorf("origin hits = %d, want 1 (collapsed)", n)
	}
	c.Wait()
	if s := c.Stats(); s.StoreFailures != 1 || s.Entries != 0 {
		t.Errorf("stats = %+v, want 1 store failure and no entry", s)
	}
	if st.deleted.Load() == 0 {
		t.Error("the partial body was not deleted")
	}

	// More failures within the interval: counted, not logged; after it,
	// one more line.
	gate.Store(false)
	get := func() {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + "/big")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("body: %d bytes, err %v", len(got), err)
		}
	}
	get()
	get()
	if n := logs.n.Load(); n != 1 {
		t.Errorf("%d log lines for 3 failures within %s, want 1", n, cache.StoreFailLogInterval)
	}
	clk.Advance(cache.StoreFailLogInterval + time.Second)
	get()
	if n, f := logs.n.Load(), c.Stats().StoreFailures; n != 2 || f != 4 {
		t.Errorf("after the interval: %d log lines, %d failures; want 2, 4", n, f)
	}
}

// failCommit takes chunks but fails every commit, as badger does when the
// disk fills between a body's chunks and its entry.
type failCommit struct{ cache.MemStorage }

func (s *failCommit) Commit(cache.Entry) error {
	return fmt.Errorf("commit: %w", syscall.ENOSPC)
}

// TestCommitFailureStillAnswers: a body whose entry cannot be committed
// reaches its client whole, small or in several chunks, and is counted.
func TestCommitFailureStillAnswers(t *testing.T) {
	for _, size := range []int{1000, 3<<20 + 5} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			want := bytes.Repeat([]byte{'a', 'b', 'c'}, size/3+1)[:size]
			clk := newClock()
			o := newOrigin(t, clk, func(n int64, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header().Set("Content-Length", fmt.Sprint(size))
				w.Write(want)
			})
			c, err := cache.New(cache.Config{Storage: &failCommit{}, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Wait()
			srv := httptest.NewServer(c.Handler(o))
			defer srv.Close()
			for i := range 2 {
				resp, got, err := fetch(srv.Client(), srv.URL+"/x", "")
				if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, want) {
					t.Fatalf("request %d: %v, %d of %d bytes", i, err, len(got), size)
				}
				// A small body reaches its client before its commit fails;
				// the next request must not join that fill.
				c.Wait()
			}
			if s := c.Stats(); s.StoreFailures != 2 || s.Entries != 0 {
				t.Errorf("stats = %+v, want 2 store failures, no entry", s)
			}
		})
	}
}
