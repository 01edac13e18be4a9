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
// its API, its goroutines and its failure modes in one place.
var owners = map[string]string{
	"github.com/nats-io/":           module + "/sync",
	"github.com/tetratelabs/wazero": module + "/wasmhost",
	"github.com/dgraph-io/badger":   module + "/store",
	"github.com/NVIDIA/go-nvml":     module + "/gpu",
}

// TestImports checks direct imports: third-party owners, and that nothing
// but cmd/tern imports the composition root.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-e", "-f", `{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}}`, module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		for _, imp := range imports {
			for prefix, owner := range owners {
				if strings.HasPrefix(imp, prefix) && !strings.HasPrefix(pkg, owner) {
					t.Errorf("%s imports %s; only %s may", pkg, imp, owner)
				}
			}
			if imp == module+"/agent" && pkg != module+"/cmd/tern" && !strings.HasPrefix(pkg, module+"/agent") {
				t.Errorf("%s imports the composition root %s", pkg, imp)
			}
		}
	}
}
