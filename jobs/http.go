package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tern-edge/tern/internal/reqid"
)

// Accept answers a deferrable request: it reads the body (up to the app's
// max_request and [MaxBody]), stores the job, plans it and answers 202
// Accepted with Location: /_tern/jobs/<id> and the job's state as JSON.
// Safe methods are not for Accept; see [Scheduler.Defer].
func (s *Scheduler) Accept(w http.ResponseWriter, r *http.Request, spec Spec) {
	limit := min(spec.MaxRequest, MaxBody)
	if limit <= 0 {
		limit = MaxBody
	}
	if r.ContentLength > limit {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes exceeds the %d-byte limit of a deferred job", r.ContentLength, limit))
		return
	}
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, limit+1))
		if err != nil {
			httpError(w, http.StatusBadRequest, "read request body: "+err.Error())
			return
		}
		if int64(len(body)) > limit {
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds the %d-byte limit of a deferred job", limit))
			return
		}
	}
	v, err := s.submit(spec, request{
		Method: r.Method, Target: r.URL.RequestURI(), Host: r.Host, RemoteAddr: r.RemoteAddr, TLS: r.TLS != nil,
		Header: r.Header.Clone(), Body: body, Deadline: r.Header.Get(DeadlineHeader),
	})
	switch {
	case errors.Is(err, ErrDeadline):
		httpError(w, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, ErrRegion):
		httpError(w, http.StatusMisdirectedRequest, err.Error())
		return
	case err != nil:
		s.storeFailed(w, r, "job not stored", "accept job", "app", spec.App, "err", err)
		return
	}
	w.Header().Set("Location", PathPrefix+v.ID)
	if v.ScheduledAt != nil {
		if wait := v.ScheduledAt.Sub(s.now()); wait > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())))
		}
	}
	writeJSON(w, http.StatusAccepted, v)
}

// Defer returns a handler that accepts spec's non-safe requests as jobs
// and passes safe ones (GET, HEAD, OPTIONS, TRACE) to next.
func (s *Scheduler) Defer(spec Spec, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if safeMethod(r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		s.Accept(w, r, spec)
	})
}

// ServeHTTP serves PathPrefix on every host: GET <id> (state as JSON),
// GET <id>/result (the stored response as it was, once done) and DELETE
// <id> (cancel). A job is visible only on the host it was submitted to,
// and only to whoever knows its unguessable id.
func (s *Scheduler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	if !ok {
		httpError(w, http.StatusNotFound, "not found")
		return
	}
	id, sub, _ := strings.Cut(rest, "/")
	if host, ok := s.host(id); !validID(id) || !ok || !strings.EqualFold(hostname(host), hostname(r.Host)) {
		httpError(w, http.StatusNotFound, "no such job")
		return
	}
	switch {
	case sub == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		v, err := s.Get(id)
		if err != nil {
			httpError(w, http.StatusNotFound, "no such job")
			return
		}
		writeJSON(w, http.StatusOK, v)
	case sub == "" && r.Method == http.MethodDelete:
		v, err := s.Cancel(id)
		switch {
		case errors.Is(err, ErrFinished):
			writeJSON(w, http.StatusConflict, v)
		case errors.Is(err, ErrNotFound):
			httpError(w, http.StatusNotFound, "no such job")
		case err != nil:
			s.storeFailed(w, r, "cancel not stored", "cancel job", "job", id, "err", err)
		default:
			writeJSON(w, http.StatusOK, v)
		}
	case sub == "result" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		status, h, body, err := s.Result(id)
		switch {
		case errors.Is(err, ErrNotDone):
			w.Header().Set("Location", PathPrefix+id)
			httpError(w, http.StatusConflict, "job not done yet")
			return
		case err != nil:
			s.storeFailed(w, r, "result unreadable", "read job result", "job", id, "err", err)
			return
		}
		for k, vs := range h {
			w.Header()[k] = vs
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	case sub == "" || sub == "result":
		w.Header().Set("Allow", "GET, HEAD, DELETE")
		httpError(w, http.StatusMethodNotAllowed, "method not allowed")
	default:
		httpError(w, http.StatusNotFound, "not found")
	}
}

// hostname drops the port: a job belongs to a name, not to a listener,
// whose port may change across restarts.
func hostname(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		httpError(w, http.StatusInternalServerError, "encode: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// storeFailed answers 503 with public and the request's id, and logs msg
// with args and that id: the store's error stays in the log.
func (s *Scheduler) storeFailed(w http.ResponseWriter, r *http.Request, public, msg string, args ...any) {
	w.Header().Set("Cache-Control", "no-store")
	id := reqid.Error(w, r, http.StatusServiceUnavailable, public)
	s.log.Error(msg, append(args, "request_id", id)...)
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, msg, status)
}

// Status is the scheduler's state for `tern carbon status`.
type Status struct {
	Site     string  `json:"site"`
	Region   string  `json:"region"`
	Capacity int     `json:"capacity"`
	Now      *Point  `json:"now,omitempty"`
	Forecast []Point `json:"forecast,omitempty"`
	Queued   int     `json:"queued"`
	Running  int     `json:"running"`
	// Next lists the queued jobs that start soonest (at most 20).
	Next []View `json:"next,omitempty"`
	// Offloaded totals, per app and site, the runs of this site's jobs
	// that other sites ran, with the grams those sites accounted, over
	// the jobs still kept (keep_results).
	Offloaded []OffloadedTotals `json:"offloaded,omitempty"`
}

// OffloadedTotals are the runs of one app's jobs at one other site.
type OffloadedTotals struct {
	App  string `json:"app"`
	Site string `json:"site"`
	Runs int    `json:"runs"`
	// Accounted counts the runs the site reported grams for; Grams and
	// RunNowGrams sum them.
	Accounted   int     `json:"accounted"`
	Grams       float64 `json:"grams"`
	RunNowGrams float64 `json:"run_now_grams"`
}

// Point is one intensity value with its labels.
type Point struct {
	Start      time.Time     `json:"start"`
	Duration   time.Duration `json:"duration_ns"`
	GCO2PerKWh float64       `json:"gco2_per_kwh"`
	Kind       string        `json:"kind"`
	Signal     string        `json:"signal"`
	Source     string        `json:"source"`
}
