package msgdata

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// normalize runs in through a Normalizer, writing it in pieces of chunk bytes
// (0 = all at once) so that CR/LF pairs split across writes are exercised.
func normalize(in []byte, strict bool, chunk int) ([]byte, Info, error) {
	var out bytes.Buffer
	n := NewNormalizer(&out)
	n.Strict = strict
	if chunk <= 0 {
		chunk = len(in) + 1
	}
	for rest := in; len(rest) > 0; {
		k := min(chunk, len(rest))
		if _, err := n.Write(rest[:k]); err != nil {
			return out.Bytes(), n.Info(), err
		}
		rest = rest[k:]
	}
	err := n.Close()
	return out.Bytes(), n.Info(), err
}

func TestNormalizeLineEndings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"already CRLF", "Subject: a\r\n\r\nbody\r\n", "Subject: a\r\n\r\nbody\r\n"},
		{"LF only", "Subject: hi\nFrom: a@example.com\n\nline 1\nline 2\n", "Subject: hi\r\nFrom: a@example.com\r\n\r\nline 1\r\nline 2\r\n"},
		{"CR alone becomes space", "a\rb\r\n", "a b\r\n"},
		{"CR CR LF keeps one line", "Subject: x\r\r\nFrom: y\r\n", "Subject: x \r\nFrom: y\r\n"},
		{"trailing CR", "abc\r", "abc \r\n"},
		{"NUL becomes space", "a\x00b\r\n\x00\r\n", "a b\r\n \r\n"},
		{"mixed", "A: 1\r\nB: 2\nC: 3\r\r\n\nbody\x00\r\n\r\n\n", "A: 1\r\nB: 2\r\nC: 3 \r\n\r\nbody \r\n\r\n\r\n"},
		{"unterminated last line", "Subject: x\r\n\r\nno newline", "Subject: x\r\n\r\nno newline\r\n"},
		{"lone dot lines are data", "Subject: x\r\n\r\n.\r\n..\r\n.\nend", "Subject: x\r\n\r\n.\r\n..\r\n.\r\nend\r\n"},
		{"LF CR", "a\n\rb", "a\r\n b\r\n"},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, 2, 3} {
			t.Run(fmt.Sprintf("%s/chunk%d", tt.name, chunk), func(t *testing.T) {
				t.Parallel()
				out, info, err := normalize([]byte(tt.in), false, chunk)
				if err != nil {
					t.Fatalf("normalize: %v", err)
				}
				if string(out) != tt.want {
					t.Errorf("output = %q, want %q", out, tt.want)
				}
				if info.Size != int64(len(out)) {
					t.Errorf("Info.Size = %d, output has %d bytes", info.Size, len(out))
				}
			})
		}
	}
}

func TestNormalizeStrict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		wantErr  bool
	}{
		{"clean", "Subject: a\r\n\r\n.\r\nbody\r\n", false},
		{"unterminated last line is repaired", "Subject: a\r\n\r\nbody", false},
		{"bare LF", "Subject: a\nbody\r\n", true},
		{"bare CR", "Subject: a\rbody\r\n", true},
		{"CR at end", "body\r", true},
		{"NUL", "body\x00\r\n", true},
		{"smuggling sequence", "a\r\n.\rb\r\n", true},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s/chunk%d", tt.name, chunk), func(t *testing.T) {
				t.Parallel()
				_, _, err := normalize([]byte(tt.in), true, chunk)
				if got := errors.Is(err, ErrBareLineEnding); got != tt.wantErr {
					t.Errorf("error = %v, want ErrBareLineEnding: %v", err, tt.wantErr)
				}
			})
		}
	}
}

func TestNormalizeErrorIsSticky(t *testing.T) {
	t.Parallel()
	n := NewNormalizer(io.Discard)
	n.Strict = true
	if _, err := n.Write([]byte("a\nb")); !errors.Is(err, ErrBareLineEnding) {
		t.Fatalf("first write: %v, want ErrBareLineEnding", err)
	}
	if _, err := n.Write([]byte("clean\r\n")); !errors.Is(err, ErrBareLineEnding) {
		t.Errorf("write after error: %v, want the same error", err)
	}
	if err := n.Close(); !errors.Is(err, ErrBareLineEnding) {
		t.Errorf("close after error: %v, want the same error", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestNormalizeReportsWriteError(t *testing.T) {
	t.Parallel()
	n := NewNormalizer(failingWriter{})
	_, err := n.Write([]byte("Subject: a\r\n"))
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Write error = %v, want the destination's error", err)
	}
}

func TestInfo(t *testing.T) {
	t.Parallel()
	received := strings.Repeat("Received: from a by b; Tue, 2 Jan 2024 10:00:00 +0000\r\n", 60)
	tests := []struct {
		name  string
		in    string
		check func(t *testing.T, info Info)
	}{
		{"more than 50 Received", received + "Subject: loop\r\n\r\nReceived: in the body\r\n", func(t *testing.T, info Info) {
			if info.ReceivedCount != 60 {
				t.Errorf("ReceivedCount = %d, want 60", info.ReceivedCount)
			}
			if info.Subject != "loop" {
				t.Errorf("Subject = %q", info.Subject)
			}
		}},
		{"Received spelled oddly and folded", "RECEIVED: a\r\n\tb\r\nreceived : c\r\nX-Received: d\r\n\r\n", func(t *testing.T, info Info) {
			if info.ReceivedCount != 2 {
				t.Errorf("ReceivedCount = %d, want 2", info.ReceivedCount)
			}
		}},
		{"8-bit body", "Subject: a\r\n\r\nGrüße\r\n", func(t *testing.T, info Info) {
			if !info.EightBit {
				t.Error("EightBit = false for a body with UTF-8")
			}
		}},
		{"7-bit", "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nplain\r\n", func(t *testing.T, info Info) {
			if info.EightBit {
				t.Error("EightBit = true for an ASCII message")
			}
		}},
		{"RFC 2047 subject, folded", "From: =?ISO-8859-1?Q?J=F6rg?= <j@example.com>\r\nSubject: =?UTF-8?B?UXVhcnRhbHNiZXJpY2h0?=\r\n =?utf-8?q?_f=C3=BCr_M=C3=A4rz?=\r\nMessage-ID: <abc@example.com>\r\nDate: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\nx\r\n", func(t *testing.T, info Info) {
			if info.Subject != "Quartalsbericht für März" {
				t.Errorf("Subject = %q", info.Subject)
			}
			if info.From != "Jörg <j@example.com>" {
				t.Errorf("From = %q", info.From)
			}
			if info.MessageID != "<abc@example.com>" {
				t.Errorf("MessageID = %q", info.MessageID)
			}
			if !info.HasDate || !info.HasMessageID {
				t.Errorf("HasDate %v HasMessageID %v, want both", info.HasDate, info.HasMessageID)
			}
		}},
		{"Windows-1252 subject", "Subject: =?windows-1252?q?=80_5_=93quoted=94?=\r\n\r\n", func(t *testing.T, info Info) {
			if info.Subject != "€ 5 “quoted”" {
				t.Errorf("Subject = %q", info.Subject)
			}
		}},
		{"control characters removed", "Subject: a\tb =?utf-8?q?c=0D=0AX-Evil:_1=1B[31m?=\r\n\r\n", func(t *testing.T, info Info) {
			if info.Subject != "a b cX-Evil: 1[31m" {
				t.Errorf("Subject = %q", info.Subject)
			}
		}},
		{"subject truncated to 200 runes", "Subject: " + strings.Repeat("ä", 300) + "\r\n\r\n", func(t *testing.T, info Info) {
			if info.Subject != strings.Repeat("ä", 200) {
				t.Errorf("Subject has %d runes, want 200", len([]rune(info.Subject)))
			}
		}},
		{"no Date or Message-ID", "Subject: a\r\n\r\nDate: in body\r\n", func(t *testing.T, info Info) {
			if info.HasDate || info.HasMessageID {
				t.Errorf("HasDate %v HasMessageID %v, want neither", info.HasDate, info.HasMessageID)
			}
		}},
		{"header bytes with empty line", "A: 1\r\nB: 2\r\n\r\nbody\r\n", func(t *testing.T, info Info) {
			if info.HeaderBytes != 14 {
				t.Errorf("HeaderBytes = %d, want 14", info.HeaderBytes)
			}
		}},
		{"header ends at a text line", "A: 1\r\nHello printer\r\nB: 2\r\n", func(t *testing.T, info Info) {
			if info.HeaderBytes != 6 {
				t.Errorf("HeaderBytes = %d, want 6", info.HeaderBytes)
			}
		}},
		{"no header at all", "Hello: it is me\r\n", func(t *testing.T, info Info) {
			// A field line that happens to be text is indistinguishable;
			// only a line without a colon ends the header.
			if info.HeaderBytes != 17 {
				t.Errorf("HeaderBytes = %d, want 17", info.HeaderBytes)
			}
		}},
		{"body only", "just text\r\nSubject: no\r\n", func(t *testing.T, info Info) {
			if info.HeaderBytes != 0 || info.Subject != "" {
				t.Errorf("HeaderBytes = %d, Subject = %q, want 0 and empty", info.HeaderBytes, info.Subject)
			}
		}},
		{"longest line", "A: 1\r\n\r\n" + strings.Repeat("x", 1200) + "\r\nshort\r\n", func(t *testing.T, info Info) {
			if info.LongestLine != 1200 {
				t.Errorf("LongestLine = %d, want 1200", info.LongestLine)
			}
		}},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, 7} {
			t.Run(fmt.Sprintf("%s/chunk%d", tt.name, chunk), func(t *testing.T) {
				t.Parallel()
				_, info, err := normalize([]byte(tt.in), false, chunk)
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, info)
			})
		}
	}
}

func TestHeaderParsingIsBounded(t *testing.T) {
	t.Parallel()
	in := strings.Repeat("Received: from a by b\r\n", 100) + "Subject: late\r\nDate: x\r\n\r\nbody\r\n"
	var out bytes.Buffer
	n := NewNormalizer(&out)
	n.MaxHeaderBytes = 200
	if _, err := io.WriteString(n, in); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	info := n.Info()
	if info.ReceivedCount != 100 {
		t.Errorf("ReceivedCount = %d, want 100 (counted beyond the kept part)", info.ReceivedCount)
	}
	if !info.HasDate {
		t.Error("HasDate = false, want true (seen beyond the kept part)")
	}
	if info.Subject != "" {
		t.Errorf("Subject = %q, want empty: it lies beyond the kept 200 bytes", info.Subject)
	}
	if info.HeaderBytes != int64(strings.Index(in, "body")) {
		t.Errorf("HeaderBytes = %d, want %d", info.HeaderBytes, strings.Index(in, "body"))
	}
}

// TestNormalizeStreamsInConstantMemory writes a 16 MiB message (a huge header
// of Received fields, then a long body) and checks that the Normalizer
// allocates far less than that.
func TestNormalizeStreamsInConstantMemory(t *testing.T) {
	// Not parallel: it reads process-wide allocation counters.
	const total = 16 << 20
	chunk := []byte(strings.Repeat("Received: from a by b\n", 1000))
	body := []byte(strings.Repeat("body text line\n", 1000))
	n := NewNormalizer(io.Discard)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	written := 0
	for written < total/2 {
		k, _ := n.Write(chunk)
		written += k
	}
	n.Write([]byte("\n"))
	for written < total {
		k, _ := n.Write(body)
		written += k
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("allocated %d bytes for a %d-byte message, want under 1 MiB", got, total)
	}
	if n.Info().ReceivedCount < 300000 {
		t.Errorf("ReceivedCount = %d, want every Received line counted", n.Info().ReceivedCount)
	}
}
