package agent

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
)

// restartOnly are the config keys a running agent cannot change: its
// listeners are bound, its data directory is open, and its log handler
// was built for one format.
var restartOnly = map[string]bool{
	"data": true, "listen": true, "admin": true, "hub": true, "tls": true, "acme": true, "log_format": true,
}

// Reload applies cfg, the config file read again, to the running agent.
// The log level changes at once; every other changed key is logged as
// needing a restart (listeners, data directory) or as not yet applied
// live, and the running value stays. A cfg that does not
// validate changes nothing, and the error says why.
func (a *Agent) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	var applied, restart, later []string
	if cfg.LogLevel != a.loaded.LogLevel && a.level != nil {
		l, _ := ParseLevel(cfg.LogLevel) // validated
		a.level.Set(l)
		a.loaded.LogLevel = cfg.LogLevel
		applied = append(applied, "log_level")
	}
	if applyTrust, err := a.reloadTrust(cfg.Trust); err != nil {
		return err
	} else if applyTrust {
		a.loaded.Trust = cfg.Trust
		applied = append(applied, "trust")
	}
	if cfg.Store != a.loaded.Store && a.disk != nil {
		a.disk.setReserve(int64(cfg.Store.MinFree))
		a.loaded.Store = cfg.Store
		applied = append(applied, "store")
	}
	for _, key := range changedKeys(a.loaded, cfg) {
		if restartOnly[key] {
			restart = append(restart, key)
		} else {
			later = append(later, key)
		}
	}
	a.logger.Info("config reloaded", "applied", strings.Join(applied, ","))
	if len(restart) > 0 {
		a.logger.Warn("config changes need a restart (bound listeners, open data directory); the running values stay", "keys", strings.Join(restart, ","))
	}
	if len(later) > 0 {
		a.logger.Warn("config changes not applied live yet; restart to apply them", "keys", strings.Join(later, ","))
	}
	return nil
}

// reloadTrust replaces the static publisher keys when trust.publishers
// changed and neither config uses roots (switching to or from roots needs
// a restart), and has the watcher look at every release again: one that
// was refused may be trusted now. It reports whether it applied the
// change. Releases already installed keep serving when their key is
// dropped: the next release of theirs must be signed by a trusted key.
func (a *Agent) reloadTrust(cfg TrustConfig) (bool, error) {
	old := a.loaded.Trust
	if reflect.DeepEqual(old, cfg) || len(old.Roots) > 0 || len(cfg.Roots) > 0 {
		return false, nil
	}
	tr, err := newTrust(cfg, a.extra)
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	a.trust.static = tr.static
	a.mu.Unlock()
	if a.watcher != nil {
		a.watcher.Rescan()
	}
	return true, nil
}

// changedKeys names the top-level config keys whose values differ.
func changedKeys(old, cur Config) []string {
	var out []string
	ov, cv := reflect.ValueOf(old), reflect.ValueOf(cur)
	for i := range ov.NumField() {
		key, _, _ := strings.Cut(ov.Type().Field(i).Tag.Get("toml"), ",")
		if key == "" || key == "log_level" {
			continue
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), cv.Field(i).Interface()) {
			out = append(out, key)
		}
	}
	return out
}

// ReloadFrom reads the config with load and applies it (Reload). It is
// what SIGHUP and POST /reload do; the error says why nothing changed.
func (a *Agent) ReloadFrom(load func() (Config, error)) error {
	cfg, err := load()
	if err != nil {
		return err
	}
	return a.Reload(cfg)
}

// reloadHandler serves POST /reload: 200 "reloaded" once the config is
// applied, else 422 with the reason, the running config unchanged.
func (a *Agent) reloadHandler(load func() (Config, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := a.ReloadFrom(load); err != nil {
			a.logger.Error("config not reloaded; the running one stays", "err", err)
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "reloaded")
	})
}
