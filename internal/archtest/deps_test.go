// Package archtest holds tests of the project's structure.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/tern-edge/tern"

// owners says which of our packages alone may import a dependency (by
// import path prefix). Keeping each dependency behind one package keeps
// its API, its goroutines and its failure modes in one place. certmagic
// has two: certs drives it, and store implements its storage interface.
var owners = map[string][]string{
	"github.com/nats-io/":              {module + "/sync"},
	"github.com/tetratelabs/wazero":    {module + "/wasmhost"},
	"github.com/dgraph-io/badger":      {module + "/store"},
	"github.com/NVIDIA/go-nvml":        {module + "/gpu"},
	"github.com/caddyserver/certmagic": {module + "/certs", module + "/store"},
}

// owns reports whether pkg is, or lies below, one of the owners.
func owns(pkg string, owners []string) bool {
	for _, o := range owners {
		if pkg == o || strings.HasPrefix(pkg, o+"/") {
			return true
		}
	}
	return false
}

// rootImporters are the packages that may import the composition root:
// the binary, and the fleet benchmark, which runs agents in its own
// process as the binary would.
var rootImporters = map[string]bool{
	module + "/cmd/tern":            true,
	module + "/internal/fleetbench": true,
}

// TestImports checks direct imports: third-party owners, and that only
// rootImporters import the composition root.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-e", "-f", `{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}}`, module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		for _, imp := range imports {
			for prefix, own := range owners {
				if strings.HasPrefix(imp, prefix) && !owns(pkg, own) {
					t.Errorf("%s imports %s; only %s may", pkg, imp, strings.Join(own, " and "))
				}
			}
			if imp == module+"/agent" && !rootImporters[pkg] && !strings.HasPrefix(pkg, module+"/agent") {
				t.Errorf("%s imports the composition root %s", pkg, imp)
			}
		}
	}
}
