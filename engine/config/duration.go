package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// day is the unit "d" adds to Go's duration syntax. Days are always 24
// hours here: a queue lifetime does not care about daylight saving.
const day = 24 * time.Hour

// Duration is a time.Duration written in the settings file as a Go
// duration string, with "d" for days allowed in front: "30s", "5m", "4h",
// "5d", "1d12h".
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// ParseDuration parses a Go duration string that may start with a number
// of days: "5d", "1d12h", "90m".
func ParseDuration(s string) (Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration")
	}
	neg := false
	rest := s
	if rest[0] == '-' || rest[0] == '+' {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	if rest == "" {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	// Sum the magnitude in uint64 so that the most negative duration,
	// whose magnitude is one more than the largest positive one, parses.
	limit := uint64(math.MaxInt64)
	if neg {
		limit++
	}
	var magnitude uint64
	if i := strings.IndexByte(rest, 'd'); i >= 0 {
		n, err := strconv.ParseUint(rest[:i], 10, 64)
		if err != nil || rest[:i] == "" || rest[0] == '+' {
			return 0, fmt.Errorf("invalid duration %q: days must be a whole number, as in \"5d\"", s)
		}
		if n > limit/uint64(day) {
			return 0, fmt.Errorf("invalid duration %q: too long", s)
		}
		magnitude = n * uint64(day)
		rest = rest[i+1:]
	}
	if rest != "" {
		t, err := time.ParseDuration(rest)
		if err != nil || rest[0] == '-' || rest[0] == '+' {
			return 0, fmt.Errorf("invalid duration %q: use forms like \"30s\", \"5m\", \"4h\", \"5d\"", s)
		}
		if uint64(t) > limit-magnitude {
			return 0, fmt.Errorf("invalid duration %q: too long", s)
		}
		magnitude += uint64(t)
	}
	if neg {
		// Two's complement negation, exact for magnitude 1<<63 too.
		return Duration(-int64(magnitude-1) - 1), nil
	}
	return Duration(magnitude), nil
}

// String writes d in its shortest natural form: "5d", "1d12h", "4h",
// "1m30s", "500ms", "0s". ParseDuration reads it back exactly.
func (d Duration) String() string {
	if d == 0 {
		return "0s"
	}
	if d < 0 {
		// -MinInt64 overflows; spell it via uint64.
		return "-" + formatPositive(uint64(-(d+1))+1)
	}
	return formatPositive(uint64(d))
}

func formatPositive(n uint64) string {
	var b strings.Builder
	unit := func(size uint64, suffix string) {
		if q := n / size; q > 0 {
			b.WriteString(strconv.FormatUint(q, 10))
			b.WriteString(suffix)
			n %= size
		}
	}
	unit(uint64(day), "d")
	unit(uint64(time.Hour), "h")
	if n > 0 {
		// Below an hour, time.Duration's own form is the natural one
		// ("1m30s", "1.5s", "250ms") once "30m0s" loses its "0s".
		rest := time.Duration(n).String()
		if strings.HasSuffix(rest, "m0s") {
			rest = strings.TrimSuffix(rest, "0s")
		}
		b.WriteString(rest)
	}
	return b.String()
}

// MarshalText writes d as String does, so the settings file shows "5d".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a duration string; see ParseDuration.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
