package msgdata

import (
	"bytes"
	"io"
)

// MaxLineOut is the longest line, without its CRLF, that goes out: RFC 5322
// section 2.1.1 and RFC 5321 section 4.5.3.1.6 (1000 octets with the CRLF).
const MaxLineOut = 998

// FoldLongLines returns a reader of r's stored message (CRLF line ends,
// as the Normalizer leaves them) in which no line is longer than
// MaxLineOut octets. Intake accepts longer lines, since old applications
// write them; a next hop may refuse them or cut them anywhere.
//
// An over-long line is broken before the last space or tab that leaves a
// non-empty first part: in the header section that is an ordinary fold,
// which changes nothing once the field is unfolded. A line without such
// white space is broken at the limit with CRLF SPACE, as Postfix does
// (smtp_line_length_limit), because a continuation line is what does least
// harm to a MIME header inside the body. The message is changed only where
// it was already invalid; it is not re-encoded (quoted-printable would keep
// body text exact, but needs MIME parsing of every part: not done). The
// continuation starts with white space, so a break can never produce a
// line "." that a next hop would read as the end of the data.
func FoldLongLines(r io.Reader) io.Reader {
	return &folder{r: r, in: make([]byte, 32<<10)}
}

// LinesFit reports whether every line of b is at most MaxLineOut octets
// (without its CRLF), that is, whether FoldLongLines would pass b on
// unchanged. A caller holding a message in memory can then skip the folder.
func LinesFit(b []byte) bool {
	n := shortLines(b)
	return n == len(b) || len(b)-n <= MaxLineOut
}

type folder struct {
	r    io.Reader
	in   []byte
	line []byte // the current line, not yet passed on
	buf  []byte // output being built when lines must be changed
	out  []byte // ready to be read
	err  error
}

func (f *folder) Read(p []byte) (int, error) {
	for len(f.out) == 0 {
		if f.err != nil {
			if len(f.line) > 0 {
				f.out, f.line = f.line, nil
				break
			}
			return 0, f.err
		}
		n, err := f.r.Read(f.in)
		f.err = err
		f.out = f.fold(f.in[:n])
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	return n, nil
}

// fold passes a chunk on. Whole lines that fit, which is nearly every line
// of nearly every message, are passed on as they are: when the chunk is
// nothing but such lines it is returned itself, uncopied (it is read out
// before f.in is filled again). The rest goes through add byte by byte.
func (f *folder) fold(chunk []byte) []byte {
	if len(f.line) == 0 {
		if n := shortLines(chunk); n == len(chunk) {
			return chunk
		}
	}
	f.buf = f.buf[:0]
	for i := 0; i < len(chunk); {
		if len(f.line) == 0 {
			if n := shortLines(chunk[i:]); n > 0 {
				f.buf = append(f.buf, chunk[i:i+n]...)
				i += n
				continue
			}
		}
		f.add(chunk[i])
		i++
	}
	return f.buf
}

// shortLines returns the length of the whole lines at the start of b that
// are at most MaxLineOut octets without their line end.
func shortLines(b []byte) int {
	n := 0
	for {
		k := bytes.IndexByte(b[n:], '\n')
		if k < 0 {
			return n
		}
		length := k
		if k > 0 && b[n+k-1] == '\r' {
			length--
		}
		if length > MaxLineOut {
			return n
		}
		n += k + 1
	}
}

func (f *folder) add(c byte) {
	f.line = append(f.line, c)
	if c == '\n' {
		f.buf = append(f.buf, f.line...)
		f.line = f.line[:0]
		return
	}
	// The CR of a line's CRLF is not part of its length.
	if len(f.line) <= MaxLineOut || (c == '\r' && len(f.line) == MaxLineOut+1) {
		return
	}
	cut := -1
	for i := len(f.line) - 1; i > 0; i-- {
		if f.line[i] == ' ' || f.line[i] == '\t' {
			cut = i
			break
		}
	}
	if cut > 0 {
		f.buf = append(append(f.buf, f.line[:cut]...), '\r', '\n')
		f.line = append(f.line[:0], f.line[cut:]...)
		return
	}
	f.buf = append(append(f.buf, f.line[:MaxLineOut]...), '\r', '\n')
	rest := f.line[MaxLineOut:]
	f.line = append(append(make([]byte, 0, MaxLineOut+2), ' '), rest...)
}
