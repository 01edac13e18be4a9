package agent

import (
	"strings"
	"testing"
)

// TestChangedKeys names the top-level keys a reload changes, by their
// names in the file.
func TestChangedKeys(t *testing.T) {
	old := DefaultConfig()
	cur := DefaultConfig()
	cur.Listen = "127.0.0.1:1"
	cur.Cache.MaxSize = 1 << 20
	cur.LogLevel = "debug" // applied live, not reported
	if got := strings.Join(changedKeys(old, cur), ","); got != "listen,cache" {
		t.Fatalf("changed keys %q, want listen,cache", got)
	}
	if got := changedKeys(old, old); len(got) != 0 {
		t.Fatalf("unchanged config reports %v", got)
	}
}
