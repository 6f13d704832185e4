package msgdata

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestSplitHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		max      int
		want     string
		wantErr  error
	}{
		{"header and body", "From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n", 0, "From: a@example.com\r\nSubject: hi\r\n", nil},
		{"folded field", "Subject: a\r\n b\r\nTo: c\r\n\r\n", 0, "Subject: a\r\n b\r\nTo: c\r\n", nil},
		{"LF-only stored message", "Subject: a\n b\nTo: c\n\nbody\n", 0, "Subject: a\r\n b\r\nTo: c\r\n", nil},
		{"no body", "Subject: a\r\nTo: c\r\n", 0, "Subject: a\r\nTo: c\r\n", nil},
		{"unterminated last line", "Subject: a", 0, "Subject: a\r\n", nil},
		{"ends at a text line", "Subject: a\r\nHello printer\r\n", 0, "Subject: a\r\n", nil},
		{"body only", "Hello printer\r\nSubject: a\r\n", 0, "", nil},
		{"empty", "", 0, "", nil},
		{"truncated at a whole field", "A: 1\r\nB: 22\r\n 33\r\nC: 4\r\n\r\n", 12, "A: 1\r\n", ErrHeaderTruncated},
		{"first field too long", "Subject: " + strings.Repeat("x", 100) + "\r\n\r\n", 50, "", ErrHeaderTruncated},
		{"exactly at the limit", "A: 1\r\nB: 2\r\n\r\nbody", 12, "A: 1\r\nB: 2\r\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := SplitHeader(strings.NewReader(tt.in), tt.max)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			if string(got) != tt.want {
				t.Errorf("header = %q, want %q", got, tt.want)
			}
		})
	}
}

// endless is a reader that never ends, like a message far larger than any
// header limit.
type endless byte

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e)
	}
	return len(p), nil
}

func TestSplitHeaderReadsBoundedAmount(t *testing.T) {
	t.Parallel()
	t.Run("endless body", func(t *testing.T) {
		t.Parallel()
		r := io.MultiReader(strings.NewReader("Subject: a\r\n\r\n"), endless('x'))
		got, err := SplitHeader(r, 1000)
		if err != nil || string(got) != "Subject: a\r\n" {
			t.Errorf("got %q, %v", got, err)
		}
	})
	t.Run("endless header line", func(t *testing.T) {
		t.Parallel()
		r := io.MultiReader(strings.NewReader("A: 1\r\nSubject: "), endless('x'))
		got, err := SplitHeader(r, 1000)
		if !errors.Is(err, ErrHeaderTruncated) || string(got) != "A: 1\r\n" {
			t.Errorf("got %q, %v; want the first field and ErrHeaderTruncated", got, err)
		}
	})
	t.Run("read error", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		r := io.MultiReader(strings.NewReader("A: 1\r\n"), iotest.ErrReader(boom))
		if _, err := SplitHeader(r, 1000); !errors.Is(err, boom) {
			t.Errorf("error = %v, want the reader's error", err)
		}
	})
}

// TestSplitHeaderAgreesWithNormalizer checks that both use the same rule for
// where the header ends.
func TestSplitHeaderAgreesWithNormalizer(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"A: 1\r\n\r\nbody\r\n",
		"A: 1\r\nbody\r\n",
		" A: 1\r\n",
		"A: 1\r\n\tcont\r\n\r\n",
		"A : 1\r\nB: 2",
		"\r\nA: 1\r\n",
	} {
		out, info, err := normalize([]byte(in), false, 0)
		if err != nil {
			t.Fatal(err)
		}
		header, err := SplitHeader(strings.NewReader(string(out)), 0)
		if err != nil {
			t.Fatal(err)
		}
		ok := int64(len(header)) == info.HeaderBytes ||
			int64(len(header))+2 == info.HeaderBytes && string(out[len(header):len(header)+2]) == "\r\n"
		if !ok {
			t.Errorf("%q: SplitHeader returned %d bytes, HeaderBytes = %d", in, len(header), info.HeaderBytes)
		}
	}
}

func TestDisplayText(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"  plain  ", "plain"},
		{"=?utf-8?q?caf=C3=A9?= au lait", "café au lait"},
		{"=?iso-8859-15?q?=A4uro?=", "€uro"},
		{"=?koi8-r?q?=F0=D2=C9?= ok", "\uFFFD\uFFFD\uFFFD ok"},
		{"raw \xff\xfe bytes", "raw \uFFFD bytes"},
		{"bell\a and \x7f del", "bell and  del"},
	}
	for _, tt := range tests {
		if got := DisplayText(tt.in); got != tt.want {
			t.Errorf("DisplayText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
