package agent

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseConfig checks that any config file parses to a config that
// validates, or to an error, never a panic, and the same way every time.
// The seeds are the examples of docs/CONFIG.md.
func FuzzParseConfig(f *testing.F) {
	doc, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		f.Fatal(err)
	}
	for _, block := range strings.Split(string(doc), "```toml\n")[1:] {
		example, _, _ := strings.Cut(block, "```")
		if !strings.Contains(example, "version") {
			example = "version = 1\n" + example
		}
		f.Add([]byte(example))
	}
	f.Add([]byte("version = 1\n[cache]\nmax_size = \"-1GiB\"\n"))
	f.Add([]byte("version = 1\nheartbeat = \"-5s\"\n[[origins]]\nhost = \"\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig(b)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		again, err := ParseConfig(b)
		if err != nil || !reflect.DeepEqual(cfg, again) {
			t.Fatalf("second parse differs: %v", err)
		}
	})
}
