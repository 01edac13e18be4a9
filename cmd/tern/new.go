package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// appName is what a manifest accepts as an app's name.
var appName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// scaffold is one language's starting point for an app.
type scaffold struct {
	// build is the command, run in the app's directory, that makes
	// NAME.wasm; it is written into tern.toml as a comment.
	build string
	files map[string]string // file name → content, NAME replaced
}

var scaffolds = map[string]scaffold{
	"go": {
		build: "GOOS=wasip1 GOARCH=wasm go build -trimpath -o NAME.wasm .",
		files: map[string]string{
			"go.mod": "module NAME\n\ngo 1.22\n",
			"main.go": `// Command NAME is a Tern app: a WAGI guest that reads the request from
// CGI environment variables and stdin and writes a CGI response to stdout.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Print("Content-Type: text/plain\n\n")
	fmt.Printf("Hello from NAME! You asked for %s %s\n", os.Getenv("REQUEST_METHOD"), os.Getenv("PATH_INFO"))
}
`,
		},
	},
	"wat": {
		build: "wat2wasm NAME.wat -o NAME.wasm",
		files: map[string]string{
			"NAME.wat": `;; NAME is a Tern app: a WAGI guest that writes a CGI response to stdout
;; with one fd_write call and returns from _start.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "Content-Type: text/plain\n\nHello from NAME!\n")
  (func (export "_start")
    ;; One iovec at offset 0: the response at 64, LEN bytes long.
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const LEN))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
`,
		},
	},
}

const manifestTemplate = `# build: BUILD
name = "NAME"
version = "0.1.0"
wasm = "NAME.wasm"

[[routes]]
path = "/NAME"

[limits]
memory = "32MiB"
timeout = "2s"
max_response = "1MiB"

# Everything a guest may use beyond stdin, stdout and its environment is
# denied unless granted here (docs/GUEST_ABI.md).
[capabilities]
`

func cmdNew(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lang := fs.String("lang", "go", "language of the app: go or wat")
	dir := fs.String("dir", "", "directory to create (default: NAME)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tern new [--lang go|wat] [--dir DIR] NAME\n\nCreates an app: its tern.toml (with the build command in its first line) and a source file\nthat answers at /NAME.")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return errUsage
	}
	if len(pos) != 1 {
		fs.Usage()
		return errUsage
	}
	name := pos[0]
	if !appName.MatchString(name) {
		return fmt.Errorf("app name %q: want lower-case letters, digits and '-', starting with a letter or digit, at most 63", name)
	}
	sc, ok := scaffolds[*lang]
	if !ok {
		return fmt.Errorf("--lang %q: want go or wat", *lang)
	}
	if *dir == "" {
		*dir = name
	}
	if _, err := os.Stat(*dir); err == nil {
		return fmt.Errorf("%s exists: choose another NAME or --dir", *dir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	build := strings.ReplaceAll(sc.build, "NAME", name)
	body := "Content-Type: text/plain\n\nHello from " + name + "!\n"
	files := map[string]string{"tern.toml": strings.ReplaceAll(strings.ReplaceAll(manifestTemplate, "BUILD", build), "NAME", name)}
	for f, content := range sc.files {
		content = strings.ReplaceAll(content, "LEN", fmt.Sprint(len(body)))
		files[strings.ReplaceAll(f, "NAME", name)] = strings.ReplaceAll(content, "NAME", name)
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(*dir, f), []byte(content), 0o644); err != nil {
			return fmt.Errorf("new %s: %w", name, err)
		}
	}
	fmt.Fprintf(stdout, "created %s (%s)\nnext:\n  cd %s && %s && tern deploy .\n", *dir, *lang, *dir, build)
	return nil
}
