package msgdata

import (
	"bytes"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

func fold(t *testing.T, in string) string {
	t.Helper()
	out, err := io.ReadAll(iotest.OneByteReader(FoldLongLines(strings.NewReader(in))))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestFoldLongLinesLeavesShortLinesAlone(t *testing.T) {
	t.Parallel()
	in := "Subject: x\r\n\r\n" + strings.Repeat("a", 998) + "\r\n.\r\nend"
	if got := fold(t, in); got != in {
		t.Errorf("changed a message without long lines:\n%q", got)
	}
}

func TestFoldLongHeaderIsAnOrdinaryFold(t *testing.T) {
	t.Parallel()
	words := strings.Repeat("word ", 500) // 2500 octets
	in := "Subject: " + words + "\r\nTo: b@example.net\r\n\r\nbody\r\n"
	got := fold(t, in)
	if n := longest(got); n > MaxLineOut {
		t.Fatalf("a line of %d octets is left", n)
	}
	// Unfolding (RFC 5322 section 2.2.3: remove CRLF before WSP) gives the
	// original field back.
	if unfolded := strings.ReplaceAll(got, "\r\n ", " "); unfolded != in {
		t.Errorf("unfolded header differs:\n%q", unfolded)
	}
}

func TestFoldLineWithoutSpaceBreaksWithContinuation(t *testing.T) {
	t.Parallel()
	in := "Subject: x\r\n\r\n" + strings.Repeat("b", 2500) + "\r\n"
	got := fold(t, in)
	want := "Subject: x\r\n\r\n" + strings.Repeat("b", 998) + "\r\n " + strings.Repeat("b", 997) + "\r\n " + strings.Repeat("b", 505) + "\r\n"
	if got != want {
		t.Errorf("got %q", got)
	}
}

func TestFoldNeverLongNeverDotLineNeverLosesText(t *testing.T) {
	t.Parallel()
	rnd := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab .\t\r\n")
	for range 300 {
		var b bytes.Buffer
		for range rnd.IntN(5000) {
			c := alphabet[rnd.IntN(len(alphabet))]
			if c == '\r' || c == '\n' {
				if rnd.IntN(200) != 0 {
					c = 'a' // long lines are the point
				} else {
					b.WriteString("\r\n")
					continue
				}
			}
			b.WriteByte(c)
		}
		in := b.String()
		got := fold(t, in)
		if n := longest(got); n > MaxLineOut {
			t.Fatalf("a line of %d octets is left", n)
		}
		inLines := strings.Split(in, "\r\n")
		outLines := strings.Split(got, "\r\n")
		for i, l := range outLines {
			if l == "." && (i >= len(inLines) || !contains(inLines, ".")) {
				t.Fatal("folding made a line \".\"")
			}
		}
		strip := func(s string) string { return strings.NewReplacer("\r\n", "", " ", "", "\t", "").Replace(s) }
		if strip(got) != strip(in) {
			t.Fatal("folding lost or added text")
		}
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}

func longest(s string) int {
	n := 0
	for _, l := range strings.Split(s, "\r\n") {
		n = max(n, len(l))
	}
	return n
}
