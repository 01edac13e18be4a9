package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"github.com/tern-edge/tern/carbon"
	"github.com/tern-edge/tern/store"
)

// Store keeps jobs durably; *store.Store implements it. Methods are safe
// for concurrent use; JobBlob and JobMark report an absent blob or mark
// with an error wrapping store.ErrNotFound.
type Store interface {
	PutJob(id string, rec []byte, blobs map[string][]byte) error
	// PutJobMark stores a named mark and, unless id is empty, a job with
	// it, in one transaction; JobMark reads a mark back.
	PutJobMark(id string, rec []byte, blobs map[string][]byte, mark string, value []byte) error
	JobMark(mark string) ([]byte, error)
	JobBlob(id, name string) ([]byte, error)
	Jobs(fn func(id string, rec []byte) error) error
	DeleteJob(id string) error
}

var _ Store = (*store.Store)(nil)

// Blob names in the store.
const (
	blobRequest = "request"
	blobResult  = "result"
)

// RunFunc serves r with the current version of app, whose route prefix is
// route, writing the response to w. It returns an error only when the app
// cannot be run at all (not installed); failures of the app itself are
// responses. It must return once r's context is done.
type RunFunc func(app, route string, w http.ResponseWriter, r *http.Request) error

// Config configures a [Scheduler].
type Config struct {
	// Store keeps the jobs; required.
	Store Store
	// Run runs a job's request through its app; required.
	Run RunFunc
	// Site is the local site: its name, grid region, capacity (jobs at
	// once; 0 is unlimited) and PUE.
	Site carbon.Site
	// Intensity gives the site region's current intensity and forecast,
	// usually a carbon.Chain; nil plans without forecasts (jobs run at
	// once).
	Intensity carbon.Provider
	// Ledger, when set, accounts every run with its power model.
	Ledger *carbon.Ledger
	// Step is the planner's grid; 0 means 15 minutes.
	Step time.Duration
	// Horizon is how far ahead forecasts are read; 0 means 48 hours.
	Horizon time.Duration
	// Refresh is how often the forecast is read again; 0 means 15 minutes.
	Refresh time.Duration
	// Tick is how often due jobs are looked for; 0 means 5 seconds. A job
	// is planned to finish one tick before its deadline, since it may
	// start up to one tick after its planned start.
	Tick time.Duration
	// Ticks, when set, replaces the real ticker (tests send on it after
	// moving the clock).
	Ticks <-chan time.Time
	// KeepResults is how long finished jobs are kept; 0 means 7 days.
	KeepResults time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives job events; nil discards them.
	Logger *slog.Logger
	// Offload, when set, lets the planner place jobs at other sites and
	// runs them there (see offload.go); nil keeps every job here.
	Offload Offloader
	// OffloadTimeout is the longest an offloaded job is waited for
	// before it runs here instead; 0 means 10 minutes. The wait also ends
	// in time to run the job here before its deadline.
	OffloadTimeout time.Duration
	// Schedules, when set, returns the apps' schedules; every tick makes
	// a job of each occurrence that has come (see schedule.go).
	Schedules func() []Scheduled
	// Leader, when set, says whether this agent makes its site's
	// scheduled jobs and, when another agent does, up to when that one is
	// known to have made them; nil means this agent does.
	Leader func() (lead bool, covered time.Time)
	// Queue, when set, keeps a copy of every unfinished job on the hub
	// (see queue.go); nil keeps jobs in the store only.
	Queue Queue
}

// MaxBody caps a stored request body whatever the app's max_request: the
// store keeps a job's body as one value, and very large uploads belong in
// an object store the job reads from, not in the job.
const MaxBody = 32 << 20

// Scheduler accepts, plans, runs and keeps deferrable jobs. It is safe for
// concurrent use.
type Scheduler struct {
	cfg     Config
	counts  counters
	now     func() time.Time
	log     *slog.Logger
	planner *carbon.Planner

	// mu guards jobs, running and the forecast fields. It is held while a
	// job's record is written, so the store always has the latest state.
	mu       gosync.Mutex
	jobs     map[string]*record
	running  map[string]context.CancelFunc
	curve    *carbon.Curve
	readings []carbon.Reading
	current  *carbon.Reading
	fetched  time.Time // when the forecast was last read (zero: never)
	lastGC   time.Time

	sem chan struct{} // capacity; nil when unlimited
	// remoteVersion is the Offloader's sites version the planner has.
	remoteVersion uint64
	wg            gosync.WaitGroup
}

// New returns a scheduler holding every job in cfg.Store: pending jobs are
// planned again, jobs a crash interrupted are run again, and jobs whose
// deadline passed meanwhile are marked expired.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Store == nil || cfg.Run == nil {
		return nil, errors.New("jobs: store and run function are required")
	}
	if cfg.Site.Name == "" {
		cfg.Site.Name = "local"
	}
	setDefault(&cfg.Step, 15*time.Minute)
	setDefault(&cfg.Horizon, 48*time.Hour)
	setDefault(&cfg.Refresh, 15*time.Minute)
	setDefault(&cfg.Tick, 5*time.Second)
	setDefault(&cfg.KeepResults, 7*24*time.Hour)
	setDefault(&cfg.OffloadTimeout, 10*time.Minute)
	s := &Scheduler{cfg: cfg, now: cfg.Now, log: cfg.Logger, jobs: map[string]*record{}, running: map[string]context.CancelFunc{}}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Site.Capacity > 0 {
		s.sem = make(chan struct{}, cfg.Site.Capacity)
	}
	var err error
	s.planner, err = carbon.NewPlanner(carbon.PlannerConfig{Sites: []carbon.Site{cfg.Site}, Step: cfg.Step, Now: s.now, Logger: s.log})
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// load reads every job from the store and queues the unfinished ones.
func (s *Scheduler) load() error {
	var recs []*record
	err := s.cfg.Store.Jobs(func(id string, b []byte) error {
		r := new(record)
		if err := json.Unmarshal(b, r); err != nil {
			s.log.Error("unreadable job record; skipping it", "job", id, "err", err)
			return nil
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return fmt.Errorf("jobs: load: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pending := 0
	for _, r := range recs {
		s.jobs[r.ID] = r
		if r.terminal() {
			continue
		}
		if r.State == StateRunning {
			// Interrupted: it runs again (at least once).
			r.State = StateScheduled
		}
		if err := s.queue(r); err != nil {
			return err
		}
		pending++
	}
	if pending > 0 {
		s.log.Info("re-planned pending jobs from the store", "jobs", pending)
	}
	return nil
}

// queue plans r and persists the plan; r's deadline passed means expired.
// Called with mu held.
func (s *Scheduler) queue(r *record) error {
	now := s.now()
	if !now.Before(r.Deadline) {
		r.State, r.Finished, r.Error = StateExpired, &now, "deadline passed before the job could start"
		return s.persist(r, nil)
	}
	a, err := s.planner.Submit(s.plannerJob(r))
	if err != nil {
		return fmt.Errorf("plan job %s: %w", r.ID, err)
	}
	s.setPlan(r, a)
	return s.persist(r, nil)
}

// plannerJob is r as the planner sees it: its deadline one tick earlier,
// since the tick may start it that much after its planned start.
func (s *Scheduler) plannerJob(r *record) carbon.Job {
	return carbon.Job{ID: r.ID, App: r.App, Arrival: r.Accepted, Runtime: r.Runtime, Deadline: r.Deadline.Add(-s.cfg.Tick), Regions: r.Regions}
}

func (s *Scheduler) setPlan(r *record, a carbon.Assignment) {
	p := &plan{Site: a.Site, Start: a.Start, Source: a.Source, Reason: a.Reason}
	if !math.IsNaN(a.Intensity) {
		v, g, av := a.Intensity, a.Gross, a.Avoided
		p.Intensity, p.Gross, p.Avoided = &v, &g, &av
	}
	r.Plan = p
	r.Late = a.Reason == carbon.ReasonPastDeadline
}

// persist writes r (and blobs) to the store. Called with mu held.
func (s *Scheduler) persist(r *record, blobs map[string][]byte) error {
	b, err := encode(r)
	if err != nil {
		return err
	}
	return s.cfg.Store.PutJob(r.ID, b, blobs)
}

func encode(r *record) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", r.ID, err)
	}
	return b, nil
}

// elsewhere checks that a job of spec, which may not run in this site's
// region, can be accepted for another site: offload is on and some fresh
// site in an allowed region runs the app's release. It also hands the
// planner the latest sites, so the job is planned among them.
func (s *Scheduler) elsewhere(spec Spec) error {
	here := fmt.Sprintf("app %s may run only in regions %s; site %s is in region %q", spec.App, strings.Join(spec.Regions, ", "), s.cfg.Site.Name, s.cfg.Site.Region)
	if s.cfg.Offload == nil {
		return fmt.Errorf("%s and offload is off: %w", here, ErrRegion)
	}
	s.syncRemote()
	sites, _ := s.cfg.Offload.Sites()
	for _, rs := range sites {
		if regionAllowed(spec.Regions, rs.Region) && (rs.Apps == nil || slices.Contains(rs.Apps, spec.App)) {
			return nil
		}
	}
	return fmt.Errorf("%s, and no site of the fleet in those regions runs this release of %s now: %w", here, spec.App, ErrRegion)
}

// request is what Submit needs of an accepted request.
type request struct {
	Method, Target, Host, RemoteAddr string
	TLS                              bool
	Header                           http.Header
	Body                             []byte
	Deadline                         string // the Tern-Deadline header
}

// submit stores and plans a new job for spec.
func (s *Scheduler) submit(spec Spec, req request) (View, error) {
	if !regionAllowed(spec.Regions, s.cfg.Site.Region) {
		if err := s.elsewhere(spec); err != nil {
			return View{}, err
		}
	}
	now := s.now()
	dl, err := deadline(req.Deadline, now, spec.MaxDelay)
	if err != nil {
		return View{}, err
	}
	r := &record{
		ID: newID(), App: spec.App, Route: spec.Route,
		Method: req.Method, Target: req.Target, Host: req.Host, RemoteAddr: req.RemoteAddr, TLS: req.TLS,
		Header: req.Header, BodyBytes: int64(len(req.Body)),
		Accepted: now, Deadline: dl, Runtime: spec.Runtime, Regions: spec.Regions,
		State: StateScheduled,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.curve != nil {
		if v, ok := s.curve.Mean(now, now.Add(spec.Runtime)); ok {
			r.RunNow, r.RunNowSource = &v, s.readings[0].Source
		}
	}
	// The request is stored before it is planned, so a crash between the
	// two leaves a job that load plans, never a plan without its request.
	if err := s.persist(r, map[string][]byte{blobRequest: req.Body}); err != nil {
		return View{}, err
	}
	a, err := s.planner.Submit(s.plannerJob(r))
	if err != nil {
		// Not answered 202, so not kept either.
		if derr := s.cfg.Store.DeleteJob(r.ID); derr != nil {
			s.log.Error("forget unplanned job", "job", r.ID, "err", derr)
		}
		return View{}, fmt.Errorf("plan job %s: %w", r.ID, err)
	}
	s.setPlan(r, a)
	s.jobs[r.ID] = r
	if err := s.persist(r, nil); err != nil {
		// The job is stored (as accepted, without its plan) and queued, so
		// it runs; only the plan's copy in the store is stale.
		s.log.Warn("store job plan", "job", r.ID, "err", err)
	}
	s.counted(a.Start, now)
	s.log.Info("job accepted", "job", r.ID, "app", r.App, "start", a.Start, "deadline", dl, "reason", a.Reason)
	v := r.view()
	if s.cfg.Queue != nil {
		// Copied to the hub before the answer, when it is reachable;
		// otherwise kept here and copied by a later tick.
		s.mu.Unlock()
		if err := s.putQueued(context.Background(), r.ID, req.Body); err != nil {
			s.log.Warn("job kept here only until the hub is reachable", "job", r.ID, "err", err)
		}
		s.mu.Lock()
	}
	return v, nil
}

// Get returns job id's state, or an error wrapping ErrNotFound.
func (s *Scheduler) Get(id string) (View, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.jobs[id]
	if !ok {
		return View{}, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	return r.view(), nil
}

// host returns the host a job was submitted to.
func (s *Scheduler) host(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.jobs[id]
	if !ok {
		return "", false
	}
	return r.Host, true
}

// Result returns a finished job's stored response, or an error wrapping
// ErrNotFound or ErrNotDone.
func (s *Scheduler) Result(id string) (status int, h http.Header, body []byte, err error) {
	s.mu.Lock()
	r, ok := s.jobs[id]
	var res *result
	if ok {
		res = r.Result
	}
	s.mu.Unlock()
	switch {
	case !ok:
		return 0, nil, nil, fmt.Errorf("job %s: %w", id, ErrNotFound)
	case res == nil:
		return 0, nil, nil, fmt.Errorf("job %s: %w", id, ErrNotDone)
	}
	body, err = s.cfg.Store.JobBlob(id, blobResult)
	if errors.Is(err, store.ErrNotFound) {
		body, err = nil, nil
	}
	if err != nil {
		return 0, nil, nil, err
	}
	return res.Status, res.Header, body, nil
}

// Cancel cancels a scheduled or running job and returns its state; a
// finished job gives an error wrapping ErrFinished.
func (s *Scheduler) Cancel(id string) (View, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.jobs[id]
	if !ok {
		return View{}, fmt.Errorf("cancel job %s: %w", id, ErrNotFound)
	}
	if r.terminal() {
		return r.view(), fmt.Errorf("cancel job %s: %s: %w", id, r.State, ErrFinished)
	}
	s.planner.Cancel(id)
	if stop := s.running[id]; stop != nil {
		stop()
	}
	now := s.now()
	r.State, r.Finished = StateCanceled, &now
	if err := s.persist(r, nil); err != nil {
		return View{}, err
	}
	s.log.Info("job canceled", "job", id, "app", r.App)
	return r.view(), nil
}
