package jobs

import (
	"bytes"
	"net/http"
	"time"

	"github.com/tern-edge/tern/internal/cputime"
)

// recorder is the http.ResponseWriter a job runs against: it keeps the
// status, headers and body for the store. The app enforces its own
// max_response, so the body needs no cap here.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

var _ http.ResponseWriter = (*recorder)(nil)

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *recorder) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// status returns the response status; 0 for no response at all.
func (w *recorder) status() int {
	if w == nil {
		return 0
	}
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// usage is what one run used.
type usage struct {
	start time.Time     // on the scheduler's clock
	wall  time.Duration // real time
	cpu   time.Duration // CPU time of the thread that ran it
}

// measure runs f and returns its wall and CPU time (see cputime.Measure).
func measure(f func() error) (usage, error) {
	var err error
	u := cputime.Measure(func() { err = f() })
	return usage{wall: u.Wall, cpu: u.CPU}, err
}
