package deliver

import (
	"bufio"
	"bytes"
	"errors"
	"math/rand/v2"
	"net/textproto"
	"strings"
	"testing"
	"testing/iotest"
)

// viaTextproto is what go-smtp's DATA writer puts on the wire for content,
// the final "." line included.
func viaTextproto(t *testing.T, content []byte) []byte {
	t.Helper()
	var wire bytes.Buffer
	bw := bufio.NewWriter(&wire)
	dw := textproto.NewWriter(bw).DotWriter()
	if _, err := dw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := dw.Close(); err != nil {
		t.Fatal(err)
	}
	return wire.Bytes()
}

// viaWriteMessage is what writeMessage puts on the wire, reading content a
// few bytes at a time so that lines and dots fall across reads and writes.
func viaWriteMessage(t *testing.T, content []byte) []byte {
	t.Helper()
	var wire bytes.Buffer
	if err := writeMessage(&wire, iotest.HalfReader(bytes.NewReader(content))); err != nil {
		t.Fatal(err)
	}
	return wire.Bytes()
}

func TestWriteMessageMatchesTheDATAWriter(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"plain":              testBody,
		"leading dots":       ".hidden\r\n..two\r\nmid.dle\r\n.\r\n",
		"bare LF":            "a\nb\n.c\n",
		"no final CRLF":      "Subject: x\r\n\r\nno end",
		"ends with a dot":    "x\r\n.",
		"ends with a CR":     "x\r\ny\r",
		"CR then dot":        "x\r.y\r\n",
		"empty":              "",
		"only a line break":  "\r\n",
		"flushed at the end": strings.Repeat("w", dataChunk-2) + "\r\n",
		"long lines":         strings.Repeat("y", 3*dataChunk) + "\r\n." + strings.Repeat("z", dataChunk) + "\r\n",
	}
	for name, content := range cases {
		if got, want := viaWriteMessage(t, []byte(content)), viaTextproto(t, []byte(content)); !bytes.Equal(got, want) {
			t.Errorf("%s: wrote %q, want %q", name, clip(got), clip(want))
		}
	}
}

// Random content of lines made of letters, dots and line breaks (CRLF or
// bare LF), long enough to cross the write chunks many times.
func TestWriteMessageMatchesTheDATAWriterOnRandomContent(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"a", "bc", ".", "..", "\r\n", "\n", "\r\n.", "\n.", "defghij"}
	for round := range 50 {
		var b strings.Builder
		for b.Len() < 200<<10 {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		content := []byte(b.String())
		if got, want := viaWriteMessage(t, content), viaTextproto(t, content); !bytes.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Fatalf("round %d: output differs from the DATA writer's at byte %d: %q vs %q", round, i, clip(got[i:]), clip(want[i:]))
		}
	}
}

func clip(b []byte) []byte { return b[:min(len(b), 80)] }

func TestWriteMessageReportsABrokenSourceAsSuch(t *testing.T) {
	t.Parallel()
	var wire bytes.Buffer
	broken := errors.New("disk read failed")
	err := writeMessage(&wire, iotest.DataErrReader(iotest.ErrReader(broken)))
	var be *bodyError
	if !errors.As(err, &be) || !errors.Is(err, broken) {
		t.Fatalf("writeMessage with a failing source: %v, want a bodyError wrapping the read error", err)
	}
	if bytes.Contains(wire.Bytes(), []byte(".\r\n")) {
		t.Fatalf("the end of the message was sent although its content could not be read: %q", wire.Bytes())
	}
}

// writes counts the writes made to it.
type writes struct {
	bytes.Buffer
	n int
}

func (w *writes) Write(p []byte) (int, error) {
	w.n++
	return w.Buffer.Write(p)
}

// A message that fits one write goes in one write, the final "." with it.
func TestWriteMessageSendsASmallMessageInOneWrite(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("A line of a 4 KiB message.\r\n", 4096/28)
	var w writes
	if err := writeMessage(&w, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if w.n != 1 || w.String() != body+".\r\n" {
		t.Fatalf("%d writes of %d bytes, want 1 write of the content and the final dot", w.n, w.Len())
	}
}

// A message with leading dots and a 300 KiB body arrives whole at a real
// SMTP server.
func TestSendDotStuffedLargeMessage(t *testing.T) {
	t.Parallel()
	hop := newFakeHop(t, fakeOptions{})
	body := "Subject: dots\r\n\r\n.first\r\n..second\r\n.\r\n" + strings.Repeat(".line of text\r\n", 300<<10/15)
	env := Envelope{From: "sender@example.org", To: []string{"b@example.net"}, Size: int64(len(body)), Body: strings.NewReader(body)}
	res, _ := dialSend(t, testConfig(), routeTo(hop), env)
	mustBeDelivered(t, res)
	_, msgs, _, _ := hop.snapshot()
	if len(msgs) != 1 || string(msgs[0].data) != body {
		t.Fatalf("the next hop received %d messages; the first differs from what was sent", len(msgs))
	}
}
