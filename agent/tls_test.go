package agent

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tern-edge/tern/certs/pebbletest"
)

// TestACME runs an agent with ACME on against Pebble: a host an origin
// route claims gets a certificate on its first handshake, an unclaimed
// host gets none and causes no order, localhost keeps the local CA, and
// the plain listener answers HTTP-01 (the only challenge allowed here).
func TestACME(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "origin says hi")
	}))
	defer upstream.Close()
	pebble := pebbletest.New(t)
	caFile := filepath.Join(t.TempDir(), "pebble-directory.pem")
	if err := os.WriteFile(caFile, pebble.ClientRootPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(t, t.TempDir())
	cfg.Origins = []OriginConfig{{Name: "site", Host: "www.shop.test", Upstreams: []string{upstream.URL}}}
	cfg.ACME = ACMEConfig{
		Enabled:     true,
		Directory:   pebble.URL,
		DirectoryCA: caFile,
		Email:       "ops@shop.test",
		HTTPListen:  "127.0.0.1:0",
		Challenges:  []string{ChallengeHTTP01},
	}
	ta := startAgent(t, cfg, mustKey(t))
	if ta.plain == nil {
		t.Fatal("no plain listener with acme.http_listen set")
	}
	pebble.Run(pebbletest.Options{
		HTTPPort: ta.plain.Addr().(*net.TCPAddr).Port,
		TLSPort:  ta.Addr().(*net.TCPAddr).Port,
	})

	client := func(sni string) *http.Client {
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pebble.Roots, ServerName: sni},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, ta.Addr().String())
			},
		}}
	}
	resp, err := client("www.shop.test").Get("https://www.shop.test/")
	if err != nil {
		t.Fatalf("routed host: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "origin says hi" {
		t.Fatalf("routed host: %d %q", resp.StatusCode, body)
	}
	if n := pebble.Orders(); n != 1 {
		t.Errorf("orders = %d, want 1", n)
	}

	if _, err := client("other.shop.test").Get("https://other.shop.test/"); err == nil ||
		!strings.Contains(err.Error(), "tls") {
		t.Errorf("unclaimed host: %v, want a TLS handshake failure", err)
	}
	if n := pebble.Orders(); n != 1 {
		t.Errorf("orders after an unclaimed host = %d, want still 1", n)
	}

	// localhost is still the local CA's, as in `tern up` without ACME.
	if code, _ := ta.get(t, "/"); code == 0 {
		t.Error("localhost over the local CA failed")
	}
}

func TestACMEConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		acme ACMEConfig
		lim  LimitsConfig
		want string
	}{
		{"plain http directory", ACMEConfig{Directory: "http://ca.example/dir"}, LimitsConfig{}, `acme.directory = "http://ca.example/dir": want an https URL`},
		{"half an EAB", ACMEConfig{EABKeyID: "kid"}, LimitsConfig{}, "acme: eab_kid and eab_hmac go together"},
		{"bad listen", ACMEConfig{HTTPListen: "80"}, LimitsConfig{}, `acme.http_listen = "80": address 80: missing port in address`},
		{"unknown challenge", ACMEConfig{Challenges: []string{"dns-01"}}, LimitsConfig{}, `acme.challenges: "dns-01": want "http-01" or "tls-alpn-01"`},
		{"negative stream limit", ACMEConfig{}, LimitsConfig{MaxConcurrentStreams: -1}, "limits.max_concurrent_streams = -1: must not be negative"},
		{"negative connection limit", ACMEConfig{}, LimitsConfig{MaxConnsPerAddr: -2}, "limits.max_conns_per_addr = -2: must not be negative"},
		{"negative reset limit", ACMEConfig{}, LimitsConfig{MaxResetStreams: -1}, "limits.max_reset_streams = -1: must not be negative"},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.ACME, cfg.Limits = tt.acme, tt.lim
		if err := cfg.Validate(); err == nil || err.Error() != tt.want {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	cfg, err := ParseConfig([]byte(`version = 1
[acme]
enabled = true
email = "ops@example.org"
eab_kid = "kid"
eab_hmac = "bWFj"
http_listen = ":8080"
challenges = ["tls-alpn-01"]
[limits]
max_header = "32KiB"
max_body = "10MiB"
body_min_rate = "1KiB"
body_grace = "5s"
read_header_timeout = "5s"
idle_timeout = "60s"
max_concurrent_streams = 100
allow_0rtt = true
`))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.ACME.Enabled || cfg.ACME.HTTPListen != ":8080" || cfg.Limits.MaxBody != 10<<20 || cfg.Limits.BodyMinRate != 1024 || !cfg.Limits.Allow0RTT {
		t.Errorf("parsed %+v %+v", cfg.ACME, cfg.Limits)
	}
}
