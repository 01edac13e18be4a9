package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/internal/disk"
)

// StoreConfig configures the agent's local state on disk.
type StoreConfig struct {
	// MinFree is the free space the agent keeps on the data directory's
	// file system: below it the cache evicts, new modules are refused
	// before anything is written, and /readyz reports disk pressure. 0
	// means disk.DefaultReserve of the file system's size (5%, between
	// 1 MiB and 1 GiB).
	MinFree artifact.Size `toml:"min_free"`
}

// diskInterval is how often the disk guard measures free space.
const diskInterval = time.Second

// ErrDiskFull reports that writing something would take the data
// directory's file system below its reserve.
var ErrDiskFull = errors.New("disk full")

// diskGuard keeps the reserve of the data directory's file system: it
// measures the free space, has the cache evict below the reserve, and
// admits or refuses writes of new modules. Its methods are safe for
// concurrent use.
type diskGuard struct {
	dir     string
	reserve atomic.Int64
	from    atomic.Pointer[string] // where reserve came from, for messages
	logger  *slog.Logger
	shed    func(int64) int64 // evicts cached bytes; nil for none

	free     atomic.Int64
	size     atomic.Int64
	pressure atomic.Bool
	mu       gosync.Mutex // serialises measure
}

// openDisk measures the data directory's file system and sets the reserve.
// A platform that cannot measure free space gets no reserve.
func (a *Agent) openDisk() error {
	g := &diskGuard{dir: a.cfg.Data, logger: a.logger.With("component", "disk")}
	u, err := disk.Of(g.dir)
	switch {
	case errors.Is(err, disk.ErrUnsupported):
		g.logger.Info("no free-space reserve", "reason", err)
		return nil
	case err != nil:
		return err
	}
	reserve, from := int64(a.cfg.Store.MinFree), "store.min_free"
	if reserve == 0 {
		reserve, from = disk.DefaultReserve(u.Size), "store.min_free default: 5% of "+disk.Format(u.Size)
	}
	g.reserve.Store(reserve)
	g.from.Store(&from)
	g.free.Store(u.Free)
	g.size.Store(u.Size)
	g.logger.Info("free-space reserve", "dir", g.dir, "reserve", disk.Format(g.reserve.Load()), "free", disk.Format(u.Free), "from", g.source())
	a.disk = g
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tern_disk_free_bytes",
		Help: "Free space of the data directory's file system.",
	}, func() float64 { return float64(g.free.Load()) }))
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tern_disk_reserve_bytes",
		Help: "Free space the agent keeps (store.min_free): below it the cache evicts and new modules are refused.",
	}, func() float64 { return float64(g.reserve.Load()) }))
	return nil
}

// source says where the reserve came from.
func (g *diskGuard) source() string {
	if p := g.from.Load(); p != nil {
		return *p
	}
	return ""
}

// setReserve sets the reserve to minFree (0: the default share of the
// file system), as a reload of store.min_free does, and measures at once.
func (g *diskGuard) setReserve(minFree int64) {
	g.mu.Lock()
	reserve, from := minFree, "store.min_free"
	if reserve == 0 {
		reserve, from = disk.DefaultReserve(g.size.Load()), "store.min_free default: 5% of "+disk.Format(g.size.Load())
	}
	g.reserve.Store(reserve)
	g.from.Store(&from)
	g.mu.Unlock()
	g.logger.Info("free-space reserve", "dir", g.dir, "reserve", disk.Format(reserve), "from", from)
	g.measure()
}

// run measures the free space every diskInterval until ctx is done.
func (g *diskGuard) run(ctx context.Context) error {
	t := time.NewTicker(diskInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			g.measure()
		}
	}
}

// measure reads the free space and, below the reserve, has the cache
// evict the difference.
func (g *diskGuard) measure() {
	g.mu.Lock()
	defer g.mu.Unlock()
	u, err := disk.Of(g.dir)
	if err != nil {
		g.logger.Warn("measure free space", "err", err)
		return
	}
	g.free.Store(u.Free)
	g.size.Store(u.Size)
	reserve := g.reserve.Load()
	under := u.Free < reserve
	if under && g.shed != nil {
		if n := g.shed(reserve - u.Free); n > 0 {
			g.logger.Info("cache evicted for the free-space reserve", "bytes", n, "free", disk.Format(u.Free), "reserve", disk.Format(g.reserve.Load()))
			if u, err = disk.Of(g.dir); err == nil {
				g.free.Store(u.Free)
				under = u.Free < reserve
			}
		}
	}
	if was := g.pressure.Swap(under); was != under {
		if under {
			g.logger.Warn("disk pressure: free space below the reserve; new modules are refused", "dir", g.dir,
				"free", disk.Format(u.Free), "reserve", disk.Format(g.reserve.Load()), "from", g.source())
		} else {
			g.logger.Info("disk pressure over", "dir", g.dir, "free", disk.Format(u.Free), "reserve", disk.Format(g.reserve.Load()))
		}
	}
}

// admit returns nil when n more bytes of what fit above the reserve, and
// otherwise an ErrDiskFull error that says where, how much is free and
// how much is needed. It measures afresh: the last tick may be a second old.
func (g *diskGuard) admit(n int64, what string) error {
	if g == nil {
		return nil
	}
	g.measure()
	free := g.free.Load()
	if free-n >= g.reserve.Load() {
		return nil
	}
	return fmt.Errorf("%w: %s has %s free; %s needs %s above the reserve of %s (%s)",
		ErrDiskFull, g.dir, disk.Format(free), what, disk.Format(n), disk.Format(g.reserve.Load()), g.source())
}

// problem describes the disk pressure for /readyz, or "" when there is none.
func (g *diskGuard) problem() string {
	if g == nil || !g.pressure.Load() {
		return ""
	}
	return fmt.Sprintf("disk pressure: %s has %s free, under the reserve of %s (%s)",
		g.dir, disk.Format(g.free.Load()), disk.Format(g.reserve.Load()), g.source())
}
