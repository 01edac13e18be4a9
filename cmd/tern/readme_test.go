package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// shellBlock is a fenced shell block of a markdown file.
type shellBlock struct {
	name   string // file:line (section)
	script string
	skip   string // the reason of a <!-- skip: … --> marker before it
	run    bool   // a <!-- run --> marker stands before it
}

var (
	skipMarker = regexp.MustCompile(`^<!--\s*skip:\s*(.+?)\s*-->$`)
	runMarker  = regexp.MustCompile(`^<!--\s*run\s*-->$`)
)

// shellBlocks returns the fenced blocks of path whose language is empty,
// sh, shell or bash; other languages (toml, json, text for output) are
// not commands.
func shellBlocks(t *testing.T, path string) []shellBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		blocks          []shellBlock
		cur             *shellBlock
		section, marker string
		lineNo          int
	)
	sc := bufio.NewScanner(f)
	other := false // inside a block of another language
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		fence := strings.HasPrefix(trimmed, "```")
		switch {
		case other:
			other = !fence
		case cur != nil && fence:
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.script += line + "\n"
		case fence:
			lang := strings.TrimPrefix(trimmed, "```")
			if lang != "" && lang != "sh" && lang != "shell" && lang != "bash" {
				other, marker = true, ""
				continue
			}
			cur = &shellBlock{name: filepath.Base(path) + ":" + strconv.Itoa(lineNo)}
			if section != "" {
				cur.name += " (" + section + ")"
			}
			if m := skipMarker.FindStringSubmatch(marker); m != nil {
				cur.skip = m[1]
			} else if strings.HasPrefix(marker, "<!-- skip") {
				t.Fatalf("%s: %q: a skip marker is <!-- skip: REASON -->", cur.name, marker)
			}
			cur.run = runMarker.MatchString(marker)
			marker = ""
		case strings.HasPrefix(trimmed, "#"):
			section = strings.TrimSpace(strings.TrimLeft(trimmed, "#"))
			marker = ""
		case trimmed != "":
			marker = trimmed
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s: unterminated block %s", path, cur.name)
	}
	return blocks
}

// TestReadmeCommands runs every shell block of README.md, and those of
// docs/*.md marked <!-- run -->, in a temporary directory laid out like a
// checkout, against the built binary and a `tern up` started in the
// background as the README's second terminal assumes. The ports the
// README names are replaced by the ones that run printed. The blocks run
// in order in the same directory, as a reader follows them. A block
// marked <!-- skip: REASON --> is skipped, the reason logged, and its
// tern commands' flags checked against their -h.
func TestReadmeCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the README's commands need %s, which is not installed", tool)
		}
	}
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	blocks := shellBlocks(t, filepath.Join(repo, "README.md"))
	docs, _ := filepath.Glob(filepath.Join(repo, "docs", "*.md"))
	for _, d := range docs {
		for _, b := range shellBlocks(t, d) {
			if b.run || b.skip != "" {
				b.name = "docs/" + b.name
				blocks = append(blocks, b)
			}
		}
	}

	bin := buildTern(t)
	dir := t.TempDir()
	// The checkout's files the commands name (guests/, carbon/testdata,
	// …), linked rather than copied; bin/ is the block's own, so that
	// building bin/tern leaves the checkout's alone. tern is on PATH.
	entries, err := os.ReadDir(repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); !strings.HasPrefix(n, ".") && n != "bin" {
			if err := os.Symlink(filepath.Join(repo, n), filepath.Join(dir, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	pathDir := filepath.Join(t.TempDir(), "path")
	os.MkdirAll(pathDir, 0o755)
	if err := os.Symlink(bin, filepath.Join(pathDir, "tern")); err != nil {
		t.Fatal(err)
	}

	var subst []string // old, new pairs
	up := func(t *testing.T) {
		if subst != nil {
			return
		}
		p := start(t, bin, "up", "--data", filepath.Join(dir, ".tern"), "--listen", "127.0.0.1:0",
			"--admin", "127.0.0.1:0", "--hub-listen", "127.0.0.1:0")
		port := p.await(t, `https://localhost:(\d+)/hello`)
		admin := p.await(t, `metrics\s+http://(\S+)/metrics`)
		subst = []string{
			// The test built the binary already; the same source.
			"go build -o bin/tern ./cmd/tern", `mkdir -p bin && cp "$TERN" bin/tern`,
			"localhost:8443", "localhost:" + port,
			"127.0.0.1:9090", admin,
		}
	}

	for _, b := range blocks {
		if b.skip != "" {
			t.Logf("skip %s: %s", b.name, b.skip)
			// It does not run, but its tern commands take the flags it
			// shows.
			checkFlags(t, bin, b)
			continue
		}
		up(t)
		t.Run(b.name, func(t *testing.T) {
			script := strings.NewReplacer(subst...).Replace(b.script)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// -f: an HTTP error fails the block, as it would fail a reader.
			cmd := exec.CommandContext(ctx, "bash", "-e", "-x", "-o", "pipefail", "-c",
				"curl() { command curl -fsS --max-time 10 \"$@\"; }\n"+script)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "TERN="+bin, "PATH="+pathDir+string(os.PathListSeparator)+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			t.Logf("%s", out) // bash -x shows each command as run
			if err != nil {
				t.Fatalf("%s failed: %v", b.name, err)
			}
		})
	}
}

// checkFlags fails the test when a tern command of block b names a flag
// that the command's -h does not list.
func checkFlags(t *testing.T, bin string, b shellBlock) {
	t.Helper()
	script := strings.ReplaceAll(b.script, "\\\n", " ")
	for _, line := range strings.Split(script, "\n") {
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 || (f[0] != "tern" && !strings.HasSuffix(f[0], "/tern")) {
			continue
		}
		// The subcommand is the leading lowercase words ("keys gen");
		// the first word that -h does not take as one is an argument.
		words := 0
		for words+1 < len(f) && subcommandWord.MatchString(f[words+1]) {
			words++
		}
		var help string
		for ; words > 0; words-- {
			out, err := exec.Command(bin, append(append([]string{}, f[1:1+words]...), "-h")...).CombinedOutput()
			if err == nil && strings.HasPrefix(string(out), "Usage") {
				help = string(out)
				break
			}
		}
		if help == "" {
			t.Errorf("%s: %q: no tern command that -h explains", b.name, line)
			continue
		}
		for _, arg := range f[1+words:] {
			name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
			if !strings.HasPrefix(arg, "-") || name == "" {
				continue
			}
			if !regexp.MustCompile(`(?m)^\s*-` + regexp.QuoteMeta(name) + `\b`).MatchString(help) {
				t.Errorf("%s: %q: tern %s has no flag %s", b.name, line, strings.Join(f[1:1+words], " "), arg)
			}
		}
	}
}

var subcommandWord = regexp.MustCompile(`^[a-z]+$`)
