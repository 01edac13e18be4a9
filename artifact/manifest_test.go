package artifact

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the expected outputs of fixture tests")

// TestManifestFixtures parses every testdata/manifest/valid/*.toml and
// compares the result, as JSON, with the .json file beside it.
func TestManifestFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "manifest", "valid", "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no valid fixtures: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".toml"), func(t *testing.T) {
			data := readFile(t, file)
			m, err := ParseManifest(data)
			if err != nil {
				t.Fatalf("ParseManifest: %v", err)
			}
			got, err := json.MarshalIndent(m, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(file, ".toml") + ".json"
			if *update {
				writeFile(t, golden, got)
			}
			if want := readFile(t, golden); !bytes.Equal(got, want) {
				t.Errorf("parsed manifest:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestManifestInvalidFixtures parses every testdata/manifest/invalid/*.toml
// and compares the error message with the .err file beside it, exactly.
func TestManifestInvalidFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "manifest", "invalid", "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid fixtures: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".toml"), func(t *testing.T) {
			_, err := ParseManifest(readFile(t, file))
			if err == nil {
				t.Fatal("ParseManifest succeeded, want an error")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %q does not wrap ErrMalformed", err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".toml") + ".err"
			if *update {
				writeFile(t, golden, []byte(got))
			}
			if want := string(readFile(t, golden)); got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestParseManifestTooLarge(t *testing.T) {
	data := append([]byte("name = \"a\"\n#"), bytes.Repeat([]byte("x"), int(MaxManifestSize))...)
	_, err := ParseManifest(data)
	if !errors.Is(err, ErrSize) {
		t.Fatalf("err = %v, want ErrSize", err)
	}
}

func TestLoadManifest(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, ManifestFile), readFile(t, filepath.Join("testdata", "manifest", "valid", "minimal.toml")))

	for _, path := range []string{dir, filepath.Join(dir, ManifestFile)} {
		m, gotDir, err := LoadManifest(path)
		if err != nil {
			t.Fatalf("LoadManifest(%s): %v", path, err)
		}
		if m.Name != "hello" || gotDir != dir {
			t.Errorf("LoadManifest(%s) = %q, %q; want hello, %q", path, m.Name, gotDir, dir)
		}
	}

	bad := filepath.Join(dir, "bad")
	writeFile(t, filepath.Join(bad, ManifestFile), []byte("name = 1\n"))
	_, _, err := LoadManifest(bad)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), filepath.Join(bad, ManifestFile)) {
		t.Errorf("LoadManifest(bad) = %v, want ErrMalformed naming the file", err)
	}
	_, _, err = LoadManifest(filepath.Join(dir, "missing"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadManifest(missing) = %v, want not-exist", err)
	}
}

func TestWithDefaults(t *testing.T) {
	m := Manifest{Routes: []Route{{Host: "A.Example"}, {Path: "/x"}}}
	d := m.WithDefaults()
	want := Limits{Memory: DefaultMemory, Timeout: DefaultTimeout, MaxResponse: DefaultMaxResponse, MaxRequest: DefaultMaxRequest}
	if d.Limits != want {
		t.Errorf("limits = %+v, want %+v", d.Limits, want)
	}
	if !reflect.DeepEqual(d.Routes[0], Route{Host: "a.example", Path: "/"}) || !reflect.DeepEqual(d.Routes[1], Route{Path: "/x"}) {
		t.Errorf("routes = %+v", d.Routes)
	}
	if m.Routes[0].Path != "" || m.Routes[0].Host != "A.Example" {
		t.Errorf("WithDefaults changed its receiver's routes: %+v", m.Routes)
	}
	set := Limits{Memory: 1 * MiB, Timeout: Duration(time.Second), MaxResponse: 1, MaxRequest: 2}
	if got := (Manifest{Limits: set}).WithDefaults().Limits; got != set {
		t.Errorf("WithDefaults overrode set limits: %+v", got)
	}
}

func TestValidateAfterDefaults(t *testing.T) {
	m := validManifest()
	if err := m.WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		out  string
	}{
		{"0", 0, "0"},
		{"1048576", MiB, "1MiB"},
		{"64MiB", 64 * MiB, "64MiB"},
		{"512KiB", 512 * KiB, "512KiB"},
		{"1GB", 1e9, "1GB"},
		{"1500B", 1500, "1500"},
		{"1001", 1001, "1001"},
		{"3TiB", 3 * TiB, "3TiB"},
		{"2000KB", 2e6, "2MB"},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			continue
		}
		if s := got.String(); s != tc.out {
			t.Errorf("Size(%d).String() = %q, want %q", got, s, tc.out)
		}
		if back, err := ParseSize(got.String()); err != nil || back != got {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", got.String(), back, err, got)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "64 MiB", "64mib", "1XB", "99999999999999999999", "17179869184GiB", " 1"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || d != Duration(90*time.Second) {
		t.Fatalf("UnmarshalText(1m30s) = %v, %v", d, err)
	}
	if b, _ := d.MarshalText(); string(b) != "1m30s" {
		t.Errorf("MarshalText = %q", b)
	}
	if err := d.UnmarshalText([]byte("soon")); err == nil {
		t.Error("UnmarshalText(soon) succeeded")
	}
}

func TestSemver(t *testing.T) {
	valid := []string{
		"0.0.0", "1.2.3", "10.20.30", "1.1.2-prerelease+meta", "1.1.2+meta", "1.1.2+meta-valid",
		"1.0.0-alpha", "1.0.0-alpha.beta.1", "1.0.0-0.3.7", "1.0.0-x.7.z.92", "1.0.0-x-y-z.--",
		"1.0.0+0017", "1.0.0-alpha+001", "1.0.0+20130313144700", "1.0.0-beta+exp.sha.5114f85",
		"2.0.0-rc.1+build.123", "1.2.3----RC-SNAPSHOT.12.9.1--.12+788", "99999999999999999999.0.0",
	}
	invalid := []string{
		"", "1", "1.2", "1.2.3.4", "01.1.1", "1.01.1", "1.1.01", "v1.2.3", "1.2.3-", "1.2.3+",
		"1.2.3-0123", "1.2.3-0123.0123", "1.1.2+.123", "+invalid", "-invalid", "alpha", "1.2.3.DEV",
		"1.2-SNAPSHOT", "1.2.31.2.3----RC-SNAPSHOT.12.09.1--..12+788", "1.2.3-alpha_beta", "1.2.3+a..b",
		"1.0.0-alpha+beta+gamma", " 1.2.3", "1.2.3 ", "-1.0.0",
	}
	for _, v := range valid {
		if err := checkSemver(v); err != nil {
			t.Errorf("checkSemver(%q) = %v, want nil", v, err)
		}
	}
	for _, v := range invalid {
		if err := checkSemver(v); err == nil {
			t.Errorf("checkSemver(%q) = nil, want an error", v)
		}
	}
}

func TestHostPort(t *testing.T) {
	for _, h := range []string{"example.com", "*.example.com", "a-b.c", "localhost", "10.0.0.1", "example.com:443", "[::1]", "[2001:db8::1]:8443"} {
		if err := checkHostPort(h); err != nil {
			t.Errorf("checkHostPort(%q) = %v", h, err)
		}
	}
	for _, h := range []string{"", ":80", "example.com:", "example.com:0", "example.com:080", "example.com:65536", "::1", "[::1", "[::1]x", "[10.0.0.1]", "[::1]:", "-a.com", "a..b", "*", "*.", "a.*.b", "ex ample.com", "exämple.com"} {
		if err := checkHostPort(h); err == nil {
			t.Errorf("checkHostPort(%q) = nil, want an error", h)
		}
	}
}

// validManifest returns a manifest that passes Validate, for tests to break.
func validManifest() Manifest {
	return Manifest{
		Name:    "hello",
		Version: "1.0.0",
		Wasm:    "hello.wasm",
		Routes:  []Route{{Host: "hello.example", Path: "/"}},
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestManifestValidate covers manifests built in code rather than parsed,
// which can hold values TOML cannot express.
func TestManifestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Manifest)
		want   string // "" for valid
	}{
		{"valid", func(*Manifest) {}, ""},
		{"upper-case host is valid before normalising", func(m *Manifest) { m.Routes[0].Host = "Hello.Example" }, ""},
		{"wildcard host", func(m *Manifest) { m.Routes[0].Host = "*.example" }, ""},
		{"route path with control character", func(m *Manifest) { m.Routes[0].Path = "/a\nb" }, `malformed manifest: routes[0].path "/a\nb": must be valid UTF-8 without spaces, control characters, '?' or '#'`},
		{"route path with query", func(m *Manifest) { m.Routes[0].Path = "/a?b" }, `malformed manifest: routes[0].path "/a?b": must be valid UTF-8 without spaces, control characters, '?' or '#'`},
		{"wasm with invalid UTF-8", func(m *Manifest) { m.Wasm = "a\xff.wasm" }, `malformed manifest: wasm "a\xff.wasm": contains a control character or invalid UTF-8`},
		{"wasm dot", func(m *Manifest) { m.Wasm = "." }, `malformed manifest: wasm ".": must name a file`},
		{"wasm directory", func(m *Manifest) { m.Wasm = "build/" }, `malformed manifest: wasm "build/": must name a file`},
		{"env value with NUL", func(m *Manifest) { m.Capabilities.Env = map[string]string{"A": "x\x00y"} }, `malformed manifest: capabilities.env "A": value must be valid UTF-8 without NUL bytes`},
		{"empty host path", func(m *Manifest) { m.Capabilities.Dirs = map[string]string{"/data": ""} }, `malformed manifest: capabilities.dirs "/data": host path required`},
		{"unclean guest path", func(m *Manifest) { m.Capabilities.Dirs = map[string]string{"/data/": "/srv"} }, `malformed manifest: capabilities.dirs "/data/": guest path must be a clean path (want "/data")`},
		{"duplicate outbound host", func(m *Manifest) { m.Capabilities.OutboundHosts = []string{"a.example", "A.example"} }, `malformed manifest: capabilities.outbound_hosts[1] "A.example": listed twice`},
		{"long version", func(m *Manifest) { m.Version = "1.0.0-" + strings.Repeat("a", 200) }, `malformed manifest: version: longer than 128 bytes`},
		{"timeout at maximum", func(m *Manifest) { m.Limits.Timeout = MaxTimeout }, ""},
		{"memory at maximum", func(m *Manifest) { m.Limits.Memory = MaxMemory }, ""},
		{"memory one byte over", func(m *Manifest) { m.Limits.Memory = MaxMemory + 1 }, `malformed manifest: limits.memory 4294967297: exceeds the maximum 4GiB`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := validManifest()
			tc.change(&m)
			err := m.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("Validate = %v\nwant %s", err, tc.want)
			}
		})
	}
}
