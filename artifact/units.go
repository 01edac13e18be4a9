package artifact

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Size is a byte count. In TOML and JSON it is written as a string with an
// optional unit, such as "64MiB", "512KiB", "1GB" or "1048576"; a TOML integer
// is read as a number of bytes.
type Size uint64

// Byte-count units accepted by [ParseSize].
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

// sizeUnits lists every accepted unit. Decimal and binary units are both
// accepted because publishers copy numbers from tools that use either.
var sizeUnits = map[string]uint64{
	"":    1,
	"B":   1,
	"KB":  1e3,
	"MB":  1e6,
	"GB":  1e9,
	"TB":  1e12,
	"KiB": 1 << 10,
	"MiB": 1 << 20,
	"GiB": 1 << 30,
	"TiB": 1 << 40,
}

// ParseSize parses a byte count: a non-negative decimal integer, optionally
// followed by one of the units B, KB, MB, GB, TB, KiB, MiB, GiB or TiB.
func ParseSize(s string) (Size, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q: want a number of bytes with an optional unit, like \"64MiB\"", s)
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: number out of range", s)
	}
	unit := s[i:]
	if strings.HasPrefix(unit, ".") {
		return 0, fmt.Errorf("invalid size %q: want a whole number, like \"1536KiB\" for 1.5MiB", s)
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (want B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, unit)
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("invalid size %q: out of range", s)
	}
	return Size(n * mult), nil
}

// String returns the size in the largest binary unit that represents it
// exactly, falling back to decimal units and then to plain bytes, so that
// [ParseSize] reads it back unchanged.
func (s Size) String() string {
	n := uint64(s)
	if n == 0 {
		return "0"
	}
	for _, u := range [...]struct {
		name string
		mult uint64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}} {
		if n%u.mult == 0 {
			return strconv.FormatUint(n/u.mult, 10) + u.name
		}
	}
	return strconv.FormatUint(n, 10)
}

// MarshalText implements [encoding.TextMarshaler].
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler]. TOML integers reach it
// as their decimal text, so they are read as byte counts.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Duration is a [time.Duration] written as a string such as "30s" or "1m30s".
type Duration time.Duration

// String returns the duration in [time.Duration.String] form.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements [encoding.TextMarshaler].
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler].
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a number with a unit, like \"5s\" or \"1m30s\"", b)
	}
	*d = Duration(v)
	return nil
}
