package sync

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TestLeafCompressionDefault links a leaf node to a hub over loopback: by
// default neither end compresses; with "auto-fast" both send uncompressed
// while the measured round trip is under 10 ms (on loopback it is, unless
// the machine is very busy, when S2 fast is right); with "fast" named both
// compress.
func TestLeafCompressionDefault(t *testing.T) {
	for _, tt := range []struct {
		mode string
		want string
		auto bool // the level follows the round trip
	}{
		{"", server.CompressionOff, false},
		{"auto-fast", server.CompressionS2Fast, true},
		{"fast", server.CompressionS2Fast, false},
	} {
		t.Run("mode="+tt.mode, func(t *testing.T) {
			hub, err := StartHub(HubConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", LeafListen: "127.0.0.1:0", Domain: HubDomain, LeafCompression: tt.mode})
			if err != nil {
				t.Fatal(err)
			}
			defer hub.Shutdown()
			leaf, err := StartHub(HubConfig{Name: "leaf", Dir: t.TempDir(), Listen: "-", Domain: "leaf", LeafCompression: tt.mode, Upstream: &Upstream{URL: hub.LeafURL()}})
			if err != nil {
				t.Fatal(err)
			}
			defer leaf.Shutdown()
			waitUntil(t, "leaf link", leaf.LeafConnected)
			for name, h := range map[string]*Hub{"hub": hub, "leaf": leaf} {
				// The auto modes settle on a level once the link has
				// measured its round trip.
				var got, want string
				waitUntil(t, name+"'s compression level", func() bool {
					lz, err := h.ns.Leafz(nil)
					if err != nil || len(lz.Leafs) != 1 || lz.Leafs[0].RTT == "" {
						return false
					}
					l := lz.Leafs[0]
					got, want = l.Compression, tt.want
					if rtt, err := time.ParseDuration(l.RTT); err == nil && tt.auto && rtt <= 10*time.Millisecond {
						want = server.CompressionS2Uncompressed
					}
					return got == want
				})
			}
		})
	}
	if err := CheckCompression("gzip"); err == nil {
		t.Error("unknown mode gzip accepted")
	}
}
