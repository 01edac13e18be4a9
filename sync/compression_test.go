package sync

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// TestLeafCompressionDefault links a leaf node to a hub over loopback with
// the default mode: the round trip is far under 10 ms, so both ends send
// without compressing; with "fast" named, both compress.
func TestLeafCompressionDefault(t *testing.T) {
	for _, tt := range []struct{ mode, want string }{
		{"", server.CompressionS2Uncompressed},
		{"auto-fast", server.CompressionS2Uncompressed},
		{"fast", server.CompressionS2Fast},
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
				waitUntil(t, name+"'s compression level", func() bool {
					lz, err := h.ns.Leafz(nil)
					return err == nil && len(lz.Leafs) == 1 && lz.Leafs[0].Compression == tt.want
				})
			}
		})
	}
	if err := CheckCompression("gzip"); err == nil {
		t.Error("unknown mode gzip accepted")
	}
}
