package msgdata

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
	"unicode"
	"unicode/utf8"
)

// hasBareByte is a plain reference for what strict mode must reject.
func hasBareByte(in []byte) bool {
	for i, c := range in {
		switch {
		case c == 0:
			return true
		case c == '\r' && (i+1 == len(in) || in[i+1] != '\n'):
			return true
		case c == '\n' && (i == 0 || in[i-1] != '\r'):
			return true
		}
	}
	return false
}

func checkDisplay(t *testing.T, what, s string) {
	t.Helper()
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxDisplayRunes {
		t.Errorf("%s = %q: not valid UTF-8 or longer than %d runes", what, s, maxDisplayRunes)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			t.Errorf("%s = %q contains control character %U", what, s, r)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, seed := range []string{
		"",
		"Subject: a\r\n\r\nbody\r\n",
		"Subject: hi\nFrom: a@example.com\n\nline\n",
		"a\r\r\n\x00\r",
		"Received: x\r\n\tb\r\nreceived : y\r\n\r\n.\r\n",
		"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n =?windows-1252?q?=80?=\r\n\r\n",
		"\r\nA: 1\r\n",
		" A: 1\r\n",
	} {
		f.Add([]byte(seed), uint8(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		out, info, err := normalize(in, false, int(chunk))
		if err != nil {
			t.Fatalf("lenient mode failed: %v", err)
		}
		if hasBareByte(out) {
			t.Fatalf("output %q has a bare CR, bare LF or NUL", out)
		}
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("output %q does not end in CRLF", out)
		}
		if info.Size != int64(len(out)) {
			t.Fatalf("Info.Size = %d, output has %d bytes", info.Size, len(out))
		}
		if info.HeaderBytes < 0 || info.HeaderBytes > info.Size || int64(info.LongestLine) > info.Size {
			t.Fatalf("Info %+v inconsistent with size %d", info, len(out))
		}
		if info.EightBit != bytes.ContainsFunc(out, func(r rune) bool { return r >= 0x80 }) {
			t.Fatalf("EightBit = %v for %q", info.EightBit, out)
		}
		checkDisplay(t, "Subject", info.Subject)
		checkDisplay(t, "From", info.From)
		checkDisplay(t, "MessageID", info.MessageID)

		// The output is already normal: a second pass, strict even, is the
		// identity and finds the same facts.
		again, info2, err := normalize(out, true, 0)
		if err != nil {
			t.Fatalf("strict pass over normalised output: %v", err)
		}
		if !bytes.Equal(again, out) || info2 != info {
			t.Fatalf("normalising again changed %q to %q (%+v vs %+v)", out, again, info, info2)
		}

		// Strict mode rejects exactly the inputs with bare bytes, and passes
		// the others through unchanged apart from a final CRLF.
		strictOut, _, err := normalize(in, true, int(chunk))
		if bare := hasBareByte(in); bare != errors.Is(err, ErrBareLineEnding) {
			t.Fatalf("strict error = %v, input has bare bytes: %v", err, bare)
		}
		if err == nil && !bytes.Equal(strictOut, in) && !bytes.Equal(strictOut, append(in, '\r', '\n')) {
			t.Fatalf("strict mode changed %q to %q", in, strictOut)
		}

		// SplitHeader finds the same header section.
		header, err := SplitHeader(bytes.NewReader(out), len(out)+1)
		if err != nil {
			t.Fatalf("SplitHeader: %v", err)
		}
		h := int64(len(header))
		if !bytes.HasPrefix(out, header) ||
			!(h == info.HeaderBytes || h+2 == info.HeaderBytes && strings.HasPrefix(string(out[h:]), "\r\n")) {
			t.Fatalf("SplitHeader gave %q, HeaderBytes = %d, output %q", header, info.HeaderBytes, out)
		}
	})
}

func FuzzReceived(f *testing.F) {
	f.Add("printer.lan", "scan.example.com", "bob@example.net", "TLS1.3 TLS_AES_128_GCM_SHA256", "Q1", "ESMTPS")
	f.Add("[IPv6:::1]", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, helo, host, rcpt, tls, id, protocol string) {
		got := Received(ReceivedFields{
			FromHelo: helo, ClientHost: host, For: rcpt, TLS: tls, ID: id, Protocol: protocol,
			ByHost: host, ClientIP: netipFromString(helo), Time: receivedTime,
		})
		if !strings.HasPrefix(got, "Received: from ") || !strings.HasSuffix(got, "\r\n") {
			t.Fatalf("malformed field %q", got)
		}
		for i, line := range strings.Split(strings.TrimSuffix(got, "\r\n"), "\r\n") {
			if len(line) > 998 || strings.ContainsAny(line, "\r\n\x00") {
				t.Fatalf("bad line %q", line)
			}
			if i > 0 && line[0] != '\t' {
				t.Fatalf("line %q would start a new field", line)
			}
			for _, c := range []byte(line) {
				if c >= 0x7f || c < ' ' && c != '\t' {
					t.Fatalf("line %q has byte %#x", line, c)
				}
			}
		}
		if strings.Count(got, "(") != strings.Count(got, ")") {
			t.Fatalf("unbalanced comment in %q", got)
		}
	})
}

func netipFromString(s string) netip.Addr {
	addr, _ := netip.ParseAddr(s)
	return addr
}

// FuzzFoldChunking checks that how the stored message arrives (one byte at
// a time, which takes the byte-by-byte path, or in chunks of any size,
// which mostly takes the whole-line path) never changes what goes out, and
// that LinesFit is true exactly when folding changes nothing.
func FuzzFoldChunking(f *testing.F) {
	long := strings.Repeat("x", MaxLineOut)
	for _, seed := range []string{
		"",
		"a\r\nb\r\n",
		long + "\r\n" + long + "y\r\n",
		long + "\r\r\n",
		"Subject: " + long + " tail\r\n\r\nbody\r\n",
		long + long + long,
	} {
		f.Add([]byte(seed), uint16(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint16) {
		oneByte, err := io.ReadAll(FoldLongLines(iotest.OneByteReader(bytes.NewReader(in))))
		if err != nil {
			t.Fatal(err)
		}
		size := int(chunk)%4096 + 1
		chunked, err := io.ReadAll(FoldLongLines(&chunkReader{b: in, size: size}))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(oneByte, chunked) {
			t.Fatalf("chunks of %d gave %q, one byte at a time %q", size, chunked, oneByte)
		}
		if LinesFit(in) && !bytes.Equal(chunked, in) {
			t.Fatalf("LinesFit(%q) but folding changed it to %q", in, chunked)
		}
	})
}

// chunkReader returns b in reads of at most size bytes.
type chunkReader struct {
	b    []byte
	size int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.size)], r.b)
	r.b = r.b[n:]
	return n, nil
}
