package artifact

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestManifestReference parses the examples of docs/MANIFEST.md, so that the
// reference cannot drift from the parser: the full function example, and
// the origin table in place of the function's module, limits and
// capabilities.
func TestManifestReference(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "MANIFEST.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) != 2 {
		t.Fatalf("docs/MANIFEST.md has %d toml blocks, want the function and the origin example", len(blocks))
	}
	full := blocks[0][1]
	m, err := ParseManifest([]byte(full))
	if err != nil {
		t.Fatalf("the full example does not parse: %v", err)
	}
	if m.Deferrable == nil || len(m.Deferrable.Schedules) != 1 || len(m.Capabilities.OutboundHosts) != 3 || !m.Routes[0].RedirectHTTPS {
		t.Fatalf("the full example parsed to %+v", m)
	}
	// The origin example: the header and routes of the full one, then the
	// [origin] table.
	head, _, _ := strings.Cut(full, "wasm = ")
	routes, _, _ := strings.Cut(full[strings.Index(full, "[[routes]]"):], "[limits]")
	o, err := ParseManifest([]byte(head + routes + blocks[1][1]))
	if err != nil {
		t.Fatalf("the origin example does not parse: %v", err)
	}
	if o.Origin == nil || len(o.Origin.Upstreams) != 2 {
		t.Fatalf("the origin example parsed to %+v", o.Origin)
	}
}
