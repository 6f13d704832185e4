package msgdata

import "io"

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

type folder struct {
	r    io.Reader
	in   []byte
	line []byte // the current line, not yet passed on
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
		for _, c := range f.in[:n] {
			f.add(c)
		}
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	return n, nil
}

func (f *folder) add(c byte) {
	f.line = append(f.line, c)
	if c == '\n' {
		f.out = append(f.out, f.line...)
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
		f.out = append(append(f.out, f.line[:cut]...), '\r', '\n')
		f.line = append(f.line[:0], f.line[cut:]...)
		return
	}
	f.out = append(append(f.out, f.line[:MaxLineOut]...), '\r', '\n')
	rest := f.line[MaxLineOut:]
	f.line = append(append(make([]byte, 0, MaxLineOut+2), ' '), rest...)
}
