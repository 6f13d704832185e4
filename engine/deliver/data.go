package deliver

import (
	"bytes"
	"io"
	"sync"
)

// writeMessage sends a message's content after DATA's 354, dot-stuffed,
// and the final "." line, in large writes straight onto w (the
// connection): the end of the content and the "." go in the same, last
// write, so a 4 KiB message takes one write in all.
//
// go-smtp's DataCommand writes through net/textproto's dotWriter, which
// takes one byte at a time into a 4 KiB buffer: for a 100 KiB message that
// was, after the disk, the relay's largest CPU cost, and 25 system calls.
// The output is what the dotWriter makes of the same input, its Close
// included: a "." that begins a line is doubled, a bare LF becomes CRLF,
// the content ends in CRLF, and ".\r\n" follows.
//
// A read error from body is returned as a *bodyError; anything else is the
// connection's. When the error is the connection's, the write that failed
// is the one with the final ".", or one before it.
func writeMessage(w io.Writer, body io.Reader) error {
	b := dataBuffers.Get().(*buffers)
	defer dataBuffers.Put(b)
	s := stuffer{w: w, out: b.out[:0]}
	defer func() { b.out = s.out[:0] }()
	in := b.in
	for {
		n, err := body.Read(in)
		if n > 0 {
			if werr := s.write(in[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return &bodyError{err}
		}
	}
	// The stuffer keeps the last bytes back, so they tell how the content
	// ended: at the start of a line, after a CR (whose LF the dotWriter
	// supplies), or within a line (including no content at all).
	switch {
	case bytes.HasSuffix(s.out, []byte("\r\n")):
		s.out = append(s.out, ".\r\n"...)
	case bytes.HasSuffix(s.out, []byte("\r")):
		s.out = append(s.out, "\n.\r\n"...)
	default:
		s.out = append(s.out, "\r\n.\r\n"...)
	}
	_, err := w.Write(s.out)
	return err
}

// dataChunk is the size of one write onto the connection.
const dataChunk = 32 << 10

// buffers are one sending's reading and writing space, reused: a
// message costs no allocation of its size.
type buffers struct{ in, out []byte }

var dataBuffers = sync.Pool{New: func() any {
	return &buffers{in: make([]byte, dataChunk), out: make([]byte, 0, 2*dataChunk)}
}}

// bodyError is a failure to read the message being sent, as opposed to a
// failure of the connection.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// stuffer dot-stuffs content into out and writes it to w in chunks,
// always keeping the last two bytes back (see writeMessage).
type stuffer struct {
	w         io.Writer
	out       []byte
	midLine   bool // the next byte does not begin a line
	lastWasCR bool // the last input byte was '\r'
}

func (s *stuffer) write(p []byte) error {
	for len(p) > 0 {
		if !s.midLine && p[0] == '.' {
			s.out = append(s.out, '.')
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.out = append(s.out, p...)
			s.midLine, s.lastWasCR = true, p[len(p)-1] == '\r'
			break
		}
		bare := (i == 0 && !s.lastWasCR) || (i > 0 && p[i-1] != '\r')
		if bare {
			s.out = append(append(s.out, p[:i]...), '\r', '\n')
		} else {
			s.out = append(s.out, p[:i+1]...)
		}
		s.midLine, s.lastWasCR = false, false
		p = p[i+1:]
		if len(s.out) >= dataChunk {
			if err := s.flush(); err != nil {
				return err
			}
		}
	}
	if len(s.out) >= dataChunk {
		return s.flush()
	}
	return nil
}

// flush writes all but the last two bytes.
func (s *stuffer) flush() error {
	n := len(s.out) - 2
	if _, err := s.w.Write(s.out[:n]); err != nil {
		return err
	}
	s.out = append(s.out[:0], s.out[n:]...)
	return nil
}
