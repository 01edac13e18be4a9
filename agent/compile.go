package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/tern-edge/tern/artifact"
	"github.com/tern-edge/tern/wasmhost"
)

// CompileConfig bounds what compiling an app's module may cost the agent
// (docs/CONFIG.md, [compile]). A module over a limit is refused before it
// is compiled, naming the limit; zero fields take wasmhost's defaults,
// and -1 turns a count off.
type CompileConfig struct {
	// ModuleBytes bounds a module's size; 0 means max_artifact, and it may
	// not exceed max_artifact (a larger module is never downloaded).
	ModuleBytes artifact.Size `toml:"module_bytes"`
	// FunctionBytes bounds one function body.
	FunctionBytes artifact.Size `toml:"function_bytes"`
	// Nesting bounds the blocks open at once in a function.
	Nesting int64 `toml:"nesting"`
	// BrTableTargets bounds the targets of one br_table.
	BrTableTargets int64 `toml:"br_table_targets"`
	// Functions bounds a module's functions, imported ones included.
	Functions int64 `toml:"functions"`
	// Locals bounds the locals of one function.
	Locals int64 `toml:"locals"`
	// DataSegments bounds a module's data segments.
	DataSegments int64 `toml:"data_segments"`
	// Timeout bounds one compile; a compile still running then is dropped
	// and its release refused.
	Timeout artifact.Duration `toml:"timeout"`
	// Memory is the budget of estimated memory of the compiles running at
	// once, dropped ones included.
	Memory artifact.Size `toml:"memory"`
}

// validate checks the [compile] table against the config's max_artifact.
func (c CompileConfig) validate(maxArtifact artifact.Size) error {
	if c.ModuleBytes < 0 || c.ModuleBytes > maxArtifact {
		return fmt.Errorf("compile.module_bytes = %s: must lie in [0, max_artifact = %s]", c.ModuleBytes, maxArtifact)
	}
	if c.FunctionBytes < 0 || c.Memory < 0 || c.Timeout < 0 {
		return errors.New("compile: function_bytes, memory and timeout must not be negative")
	}
	for name, v := range map[string]int64{
		"nesting": c.Nesting, "br_table_targets": c.BrTableTargets, "functions": c.Functions,
		"locals": c.Locals, "data_segments": c.DataSegments,
	} {
		if v < -1 {
			return fmt.Errorf("compile.%s = %d: want a count, 0 for the default or -1 for none", name, v)
		}
	}
	return nil
}

// wasmhost returns the runtime's compile bounds.
func (c CompileConfig) wasmhost(maxArtifact artifact.Size) wasmhost.CompileConfig {
	mb := c.ModuleBytes
	if mb == 0 {
		mb = maxArtifact
	}
	return wasmhost.CompileConfig{
		Scan: wasmhost.ScanLimits{
			ModuleBytes:    int64(mb),
			FunctionBytes:  int64(c.FunctionBytes),
			Nesting:        c.Nesting,
			BrTableTargets: c.BrTableTargets,
			Functions:      c.Functions,
			Locals:         c.Locals,
			DataSegments:   c.DataSegments,
		},
		Timeout: time.Duration(c.Timeout),
		Memory:  int64(c.Memory),
	}
}

// compileRefusal turns a load error from the compile bounds into a
// refusal that names the config key to raise; other errors pass through.
func compileRefusal(err error) error {
	var le *wasmhost.LimitError
	switch {
	case errors.As(err, &le):
		return &refusal{"compile_limit", fmt.Errorf("%w (compile.%s in the agent's config)", err, le.Limit)}
	case errors.Is(err, wasmhost.ErrCompileBudget):
		return &refusal{"compile_budget", fmt.Errorf("%w (compile.timeout, compile.memory in the agent's config)", err)}
	}
	return err
}
