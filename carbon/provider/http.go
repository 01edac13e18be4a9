package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"github.com/tern-edge/tern/carbon"
	"golang.org/x/time/rate"
)

// Secret is a credential. It formats, logs and marshals as "[redacted]";
// only [Secret.Reveal] returns the value.
type Secret string

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString returns the same as String, so %#v does not leak it either.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue keeps the secret out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON keeps the secret out of JSON dumps of a config.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// Reveal returns the credential itself, for the request that needs it.
func (s Secret) Reveal() string { return string(s) }

// HTTPConfig is what every HTTP provider shares.
type HTTPConfig struct {
	// BaseURL replaces the provider's public API root (for tests, proxies).
	BaseURL string
	// Client is the HTTP client; nil means one with a 15-second timeout.
	Client *http.Client
	// RequestsPerSecond caps the request rate; 0 means the provider's default.
	RequestsPerSecond float64
	// Now is the clock used for token expiry and Retry-After; nil means time.Now.
	Now func() time.Time
	// Logger receives one debug line per request (path and status only,
	// never headers or credentials); nil discards them.
	Logger *slog.Logger
}

// StatusError is a non-2xx answer from a provider.
type StatusError struct {
	Provider string
	Path     string
	Status   int
	// Message is the provider's error text, with any credential removed,
	// at most 200 bytes.
	Message string
	// Wait is how long the provider asked us to wait (429 and 503).
	Wait time.Duration
}

// Error describes the failure, naming the provider, path and status.
func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s GET %s: HTTP %d", e.Provider, e.Path, e.Status)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Wait > 0 {
		s += fmt.Sprintf(" (retry after %v)", e.Wait)
	}
	return s
}

// RetryAfter returns the wait the provider asked for.
func (e *StatusError) RetryAfter() time.Duration { return e.Wait }

// Unwrap maps the status to carbon's sentinels.
func (e *StatusError) Unwrap() error {
	switch {
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		return carbon.ErrUnauthorized
	case e.Status == http.StatusTooManyRequests:
		return carbon.ErrRateLimited
	case e.Status == http.StatusNotFound:
		return carbon.ErrNoData
	case e.Status >= 500:
		return carbon.ErrUnavailable
	}
	return carbon.ErrInvalid
}

// client is the transport shared by the HTTP providers.
type client struct {
	name    string
	base    *url.URL
	hc      *http.Client
	lim     *rate.Limiter
	now     func() time.Time
	log     *slog.Logger
	secrets func() []string

	mu           gosync.Mutex
	blockedUntil time.Time
}

func newClient(name, defaultBase string, defaultRPS float64, cfg HTTPConfig, secrets func() []string) (*client, error) {
	raw := cfg.BaseURL
	if raw == "" {
		raw = defaultBase
	}
	u, err := url.Parse(strings.TrimSuffix(raw, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: base URL %q: want http(s)://host[/path]: %w", name, raw, carbon.ErrInvalid)
	}
	c := &client{name: name, base: u, hc: cfg.Client, now: cfg.Now, log: cfg.Logger, secrets: secrets}
	if c.hc == nil {
		c.hc = &http.Client{Timeout: 15 * time.Second}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("provider", name)
	rps := cfg.RequestsPerSecond
	if rps <= 0 {
		rps = defaultRPS
	}
	c.lim = rate.NewLimiter(rate.Limit(rps), max(1, int(rps)))
	return c, nil
}

// maxBody bounds what a provider may send us.
const maxBody = 8 << 20

// get requests path?query, lets auth add credentials, and decodes a 2xx
// JSON body into out.
func (c *client) get(ctx context.Context, path string, q url.Values, auth func(*http.Request), out any) error {
	c.mu.Lock()
	until := c.blockedUntil
	c.mu.Unlock()
	if now := c.now(); now.Before(until) {
		return &StatusError{Provider: c.name, Path: path, Status: http.StatusTooManyRequests, Message: "waiting out an earlier rate limit", Wait: until.Sub(now)}
	}
	if err := c.lim.Wait(ctx); err != nil {
		return fmt.Errorf("%s GET %s: rate limiter: %w", c.name, path, err)
	}
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("%s GET %s: %w", c.name, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if auth != nil {
		auth(req)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// The URL holds no credentials, but url.Error prints it; keep to the path.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		c.log.Debug("request failed", "path", path, "err", err)
		return fmt.Errorf("%s GET %s: %w: %w", c.name, path, carbon.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("%s GET %s: read body: %w: %w", c.name, path, carbon.ErrUnavailable, err)
	}
	c.log.Debug("request", "path", path, "status", resp.StatusCode, "bytes", len(body))
	if len(body) > maxBody {
		return fmt.Errorf("%s GET %s: body over %d bytes: %w", c.name, path, maxBody, carbon.ErrUnavailable)
	}
	if resp.StatusCode/100 != 2 {
		se := &StatusError{Provider: c.name, Path: path, Status: resp.StatusCode, Message: c.scrub(body)}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			se.Wait = parseRetryAfter(resp.Header.Get("Retry-After"), c.now())
			if resp.StatusCode == http.StatusTooManyRequests {
				wait := se.Wait
				if wait <= 0 {
					wait = time.Minute // no hint: back off a minute rather than hammer
				}
				c.mu.Lock()
				c.blockedUntil = c.now().Add(wait)
				c.mu.Unlock()
			}
		}
		return se
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s GET %s: decode response: %w: %w", c.name, path, carbon.ErrUnavailable, err)
	}
	return nil
}

// scrub returns a short, credential-free version of an error body.
func (c *client) scrub(body []byte) string {
	s := strings.TrimSpace(string(body))
	if c.secrets != nil {
		for _, sec := range c.secrets() {
			if sec != "" {
				s = strings.ReplaceAll(s, sec, "[redacted]")
			}
		}
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// parseRetryAfter reads seconds or an HTTP date; 0 if absent or invalid.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
