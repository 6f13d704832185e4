package config

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"5d", 5 * 24 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"0d", 0},
		{"2d30m", 48*time.Hour + 30*time.Minute},
		{"4h", 4 * time.Hour},
		{"1m30s", 90 * time.Second},
		{"1.5h", 90 * time.Minute},
		{"250ms", 250 * time.Millisecond},
		{"-1d", -24 * time.Hour},
		{"+3d", 72 * time.Hour},
		{"0", 0},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if err != nil || got.Std() != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got.Std(), err, tt.want)
		}
	}
	for _, bad := range []string{"", "d", "5", "1.5d", "5 d", "d5", "1d1d", "5days", "1d-2h", "--1d", "+-1d", "1d+2h", "106752d", "106751d24h", "5m3d", "-", "+", "1d "} {
		if got, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", bad, got.Std())
		}
	}
}

func TestDurationString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{5 * 24 * time.Hour, "5d"},
		{36 * time.Hour, "1d12h"},
		{4 * time.Hour, "4h"},
		{90 * time.Second, "1m30s"},
		{time.Hour + 30*time.Second, "1h30s"},
		{1500 * time.Millisecond, "1.5s"},
		{time.Minute + 500*time.Millisecond, "1m0.5s"},
		{250 * time.Millisecond, "250ms"},
		{-2 * time.Hour, "-2h"},
	}
	for _, tt := range tests {
		if got := Duration(tt.in).String(); got != tt.want {
			t.Errorf("Duration(%v).String() = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzDuration checks that every duration's String parses back exactly.
func FuzzDuration(f *testing.F) {
	for _, seed := range []int64{0, 1, -1, int64(36 * time.Hour), int64(1500 * time.Millisecond), 1<<63 - 1, -1 << 63} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, n int64) {
		d := Duration(n)
		got, err := ParseDuration(d.String())
		if err != nil || got != d {
			t.Fatalf("ParseDuration(%q) = %d, %v; want %d", d.String(), int64(got), err, n)
		}
	})
}
