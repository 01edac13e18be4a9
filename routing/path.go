package routing

import (
	"fmt"
	"net/url"
	"strings"
)

// cleanPath removes the dot segments of an escaped path (RFC 3986
// §5.2.4), counting "%2e" as "." as RFC 3986 §6.2.2.2 says to. "%2F" and
// "%5C" stay inside their segment and never split it, but a segment that
// an upstream decoding them would read as a dot segment ("..%2Fx") is an
// error: such a path could only be meant to leave a route's prefix.
// changed reports whether the path differs from raw.
func cleanPath(raw string) (clean string, changed bool, err error) {
	if !strings.HasPrefix(raw, "/") || !strings.Contains(raw, ".") && !strings.Contains(raw, "%2") {
		return raw, false, nil
	}
	segs := strings.Split(raw[1:], "/")
	out := make([]string, 0, len(segs))
	for i, seg := range segs {
		last := i == len(segs)-1
		switch dots(seg) {
		case ".":
			changed = true
			if last {
				out = append(out, "")
			}
			continue
		case "..":
			changed = true
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
			continue
		}
		if err := checkEncodedSlashes(seg); err != nil {
			return "", false, err
		}
		out = append(out, seg)
	}
	if !changed {
		return raw, false, nil
	}
	return "/" + strings.Join(out, "/"), true, nil
}

// dots is seg with "%2e" decoded, when that leaves only dots; else "".
func dots(seg string) string {
	if len(seg) == 0 || len(seg) > 6 {
		return ""
	}
	d := strings.ReplaceAll(strings.ReplaceAll(seg, "%2e", "."), "%2E", ".")
	if strings.Trim(d, ".") != "" {
		return ""
	}
	return d
}

// checkEncodedSlashes refuses a segment whose pieces between encoded
// slashes or backslashes include a dot segment.
func checkEncodedSlashes(seg string) error {
	lower := strings.ToLower(seg)
	if !strings.Contains(lower, "%2f") && !strings.Contains(lower, "%5c") {
		return nil
	}
	for _, p := range strings.Split(strings.ReplaceAll(lower, "%5c", "%2f"), "%2f") {
		if d := dots(p); d == "." || d == ".." {
			return fmt.Errorf("path segment %q holds a dot segment between encoded slashes", seg)
		}
	}
	return nil
}

// withCleanPath returns u with its dot segments removed, u itself when it
// has none, or an error for a path that cannot be cleaned.
func withCleanPath(u *url.URL) (*url.URL, error) {
	clean, changed, err := cleanPath(u.EscapedPath())
	if err != nil || !changed {
		return u, err
	}
	path, err := url.PathUnescape(clean)
	if err != nil {
		return u, fmt.Errorf("path %q: %w", clean, err)
	}
	c := *u
	c.Path, c.RawPath = path, ""
	if c.EscapedPath() != clean {
		c.RawPath = clean // keeps %2F and other escapes as sent
	}
	return &c, nil
}
