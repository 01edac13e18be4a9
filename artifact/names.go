package artifact

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// checkLocalPath checks a slash-separated path that must stay inside the
// directory it is relative to, whatever the publisher's operating system.
func checkLocalPath(p string) error {
	if strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\`) || filepath.IsAbs(p) || hasDrive(p) {
		return errors.New("must be a relative path")
	}
	if strings.Contains(p, `\`) {
		return errors.New(`must use "/" as the separator`)
	}
	if hasControl(p) {
		return errors.New("contains a control character or invalid UTF-8")
	}
	if slices.Contains(strings.Split(p, "/"), "..") {
		return errors.New("must not leave the app directory")
	}
	if p == "." || strings.HasSuffix(p, "/") {
		return errors.New("must name a file")
	}
	if c := path.Clean(p); c != p {
		return fmt.Errorf("must be a clean path (want %q)", c)
	}
	return nil
}

// hasDrive reports whether p starts with a Windows drive letter ("C:").
func hasDrive(p string) bool {
	return len(p) >= 2 && p[1] == ':' && (p[0] >= 'a' && p[0] <= 'z' || p[0] >= 'A' && p[0] <= 'Z')
}

// hasControl reports whether s has a control character or is not valid
// UTF-8, either of which would be mangled in logs, JSON or file systems.
func hasControl(s string) bool {
	return !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl)
}

// maxRoutePath bounds route paths; longer ones are mistakes, not routes.
const maxRoutePath = 1024

// checkRoutePath checks a route's path prefix.
func checkRoutePath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return errors.New(`must start with "/"`)
	case len(p) > maxRoutePath:
		return fmt.Errorf("longer than %d bytes", maxRoutePath)
	case hasControl(p) || strings.ContainsAny(p, " ?#"):
		return errors.New("must be valid UTF-8 without spaces, control characters, '?' or '#'")
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return errors.New(`must not contain "." or ".." segments`)
		}
	}
	return nil
}

// checkHost checks a lower-case host name, optionally a wildcard
// "*.example.com" standing for any subdomain of example.com.
func checkHost(h string) error {
	name := strings.TrimPrefix(h, "*.")
	switch {
	case strings.Contains(name, "*"):
		return errors.New(`a wildcard is allowed only as a leading "*."`)
	case strings.Contains(h, ":"):
		return errors.New("must not include a port")
	case len(name) > 253:
		return errors.New("longer than 253 bytes")
	case name == "":
		return errors.New("empty host name")
	}
	for label := range strings.SplitSeq(name, ".") {
		if len(label) == 0 || len(label) > 63 {
			return fmt.Errorf("label %q must be 1 to 63 bytes", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q must not start or end with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("label %q has a character outside [a-z0-9-]", label)
			}
		}
	}
	return nil
}

// checkHostPort checks an outbound host: a host name (wildcards allowed) or
// an IP address, with an optional port; IPv6 addresses go in brackets.
func checkHostPort(hp string) error {
	host, port := hp, ""
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return errors.New("missing ']'")
		}
		host, port = hp[1:end], hp[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return errors.New("unexpected text after ']'")
		}
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() || a.Zone() != "" {
			return errors.New("brackets must hold an IPv6 address")
		}
		port = strings.TrimPrefix(port, ":")
		if port == "" && strings.HasSuffix(hp, ":") {
			return errors.New("empty port")
		}
	} else {
		switch strings.Count(hp, ":") {
		case 0:
		case 1:
			host, port, _ = strings.Cut(hp, ":")
			if port == "" {
				return errors.New("empty port")
			}
		default:
			return errors.New("IPv6 addresses must be in brackets")
		}
		if err := checkHost(host); err != nil {
			return err
		}
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return fmt.Errorf("invalid port %q", port)
		}
	}
	return nil
}

// checkGuestPath checks a guest mount point: absolute, slash-separated, clean.
func checkGuestPath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return errors.New("must be absolute")
	case hasControl(p):
		return errors.New("contains a control character or invalid UTF-8")
	case path.Clean(p) != p:
		return fmt.Errorf("must be a clean path (want %q)", path.Clean(p))
	}
	return nil
}

// checkHostDir checks an agent host path, which may be in the agent
// operating system's own form.
func checkHostDir(p string) error {
	switch {
	case !strings.HasPrefix(p, "/") && !filepath.IsAbs(p):
		return errors.New("must be absolute")
	case hasControl(p):
		return errors.New("contains a control character or invalid UTF-8")
	}
	for seg := range strings.FieldsFuncSeq(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if seg == ".." {
			return errors.New(`must not contain ".."`)
		}
	}
	return nil
}

// sortedKeys returns m's keys in order, so that errors come out the same way
// on every run.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
