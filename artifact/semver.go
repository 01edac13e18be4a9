package artifact

import (
	"errors"
	"fmt"
	"strings"
)

// checkSemver reports why v is not a Semantic Versioning 2.0.0 version
// (https://semver.org/spec/v2.0.0.html). It follows the grammar exactly: no
// "v" prefix, no leading zeros in numeric parts, non-empty identifiers.
func checkSemver(v string) error {
	core, build, hasBuild := strings.Cut(v, "+")
	core, pre, hasPre := strings.Cut(core, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return errors.New("want MAJOR.MINOR.PATCH")
	}
	for _, p := range parts {
		if err := checkNumeric(p); err != nil {
			return err
		}
	}
	if hasPre {
		for id := range strings.SplitSeq(pre, ".") {
			if err := checkIdent(id, "pre-release"); err != nil {
				return err
			}
			if isDigits(id) {
				if err := checkNumeric(id); err != nil {
					return fmt.Errorf("pre-release %w", err)
				}
			}
		}
	}
	if hasBuild {
		for id := range strings.SplitSeq(build, ".") {
			if err := checkIdent(id, "build"); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkNumeric checks a numeric identifier: digits without a leading zero.
func checkNumeric(p string) error {
	if p == "" || !isDigits(p) {
		return fmt.Errorf("%q is not a number", p)
	}
	if len(p) > 1 && p[0] == '0' {
		return fmt.Errorf("%q has a leading zero", p)
	}
	return nil
}

// checkIdent checks a pre-release or build identifier: [0-9A-Za-z-]+.
func checkIdent(id, kind string) error {
	if id == "" {
		return fmt.Errorf("empty %s identifier", kind)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return fmt.Errorf("%s identifier %q has a character outside [0-9A-Za-z-]", kind, id)
		}
	}
	return nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
