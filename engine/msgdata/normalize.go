// Package msgdata owns what the relay does to the bytes of a message at
// intake, and the small parsers other packages need on stored messages.
//
// go-smtp hands the DATA handler a reader that has already removed the
// dot-stuffing and the final ".\r\n". Before the bytes are stored they pass
// through a [Normalizer], which makes every line end in CRLF (so the stored
// message can be sent on unchanged: the outgoing SMTP client only has to
// dot-stuff it) and, in the same single pass, collects the facts the queue and
// the window show ([Info]). [SplitHeader] reads the header section back out of
// a stored message, and [Received] builds the trace header the relay prepends.
package msgdata

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// DefaultMaxHeaderBytes is how much of a header section is kept for parsing
// when no other limit is set. Real header sections are a few KiB; 64 KiB
// leaves room for long Received chains and DKIM signatures while keeping the
// memory of one intake constant whatever the client sends.
const DefaultMaxHeaderBytes = 64 << 10

// ErrBareLineEnding is returned by a strict [Normalizer] for the first bare
// CR, bare LF or NUL byte in the data. RFC 5321 section 2.3.8 forbids all
// three; the caller answers "550 5.5.2". A strict check exists because a
// relay that silently repairs such bytes can be abused for SMTP smuggling
// against servers further down the line that read them differently.
var ErrBareLineEnding = errors.New("msgdata: bare CR, bare LF or NUL in message data")

// Info holds the facts a [Normalizer] collects while the message streams
// through. Sizes and counts describe the normalised output, which is what is
// stored and later sent.
type Info struct {
	// Size is the number of bytes written to the destination.
	Size int64
	// EightBit reports whether any byte is 0x80 or above, i.e. whether the
	// message needs 8BITMIME (or SMTPUTF8) on the way out.
	EightBit bool
	// LongestLine is the length of the longest line without its CRLF.
	// Lines over 998 octets violate RFC 5322; delivery decides what to do.
	LongestLine int
	// ReceivedCount is the number of Received: fields in the header section,
	// counted over the whole header, not only the kept part, so mail loops
	// are detected whatever the header size.
	ReceivedCount int
	// Subject, From and MessageID are the first such fields, decoded for
	// display (see DisplayText). Empty when absent or beyond the kept part.
	Subject, From, MessageID string
	// HeaderBytes is the length of the header section including the empty
	// line that ends it; the whole message when it has no empty line and no
	// body, 0 when its first line is not a header field (see header.go for
	// the rule).
	HeaderBytes int64
	// HasDate and HasMessageID report whether the header section has a
	// Date: or Message-ID: field (counted over the whole header).
	HasDate, HasMessageID bool
}

// Normalizer is an [io.WriteCloser] that copies message data to another
// writer with every line ending in CRLF, and collects [Info] on the way.
// It streams: memory use is constant (a small output buffer plus at most
// MaxHeaderBytes of header) whatever the message size.
//
// In the default, lenient mode:
//   - a bare LF becomes CRLF (old printers and scanners send LF-only mail);
//   - a bare CR becomes a space, not a line break. The usual source of a bare
//     CR today is "\r\r\n" from a double text-mode conversion; turning it into
//     CRLF would insert an empty line, which inside the header would end the
//     header section early and push the remaining fields into the body. CR-only
//     line endings (classic Mac OS) are extinct. A space never changes where
//     lines begin, so what any later reader sees as lines is what we saw;
//   - a NUL becomes a space, since many programs treat NUL as end of string.
//
// With Strict set, the first bare CR, bare LF or NUL fails the Write with an
// error wrapping [ErrBareLineEnding] instead.
//
// In both modes an unterminated last line gets a CRLF at Close. Lines that
// hold only "." are ordinary data here: go-smtp has already removed the
// transparency dots, and the SMTP client that sends the message on
// (net/smtp, go-smtp) adds them again.
//
// Set the option fields before the first Write. Errors are sticky: after one,
// every later Write and Close return it.
type Normalizer struct {
	// Strict rejects bare CR, bare LF and NUL instead of repairing them.
	Strict bool
	// MaxHeaderBytes caps how much of the header section is kept to extract
	// Subject, From and Message-ID; 0 means DefaultMaxHeaderBytes.
	MaxHeaderBytes int

	dst       io.Writer
	err       error
	closed    bool
	pendingCR bool  // the last input byte was CR; its meaning depends on the next one
	inOffset  int64 // input bytes consumed, for error messages
	lineLen   int   // bytes in the current output line so far
	buf       []byte
	info      Info
	hdr       headerScanner
}

// flushAt is the size at which the output buffer is handed to dst within one
// Write. It bounds memory while still batching small writes to dst.
const flushAt = 32 << 10

// NewNormalizer returns a Normalizer writing to dst.
func NewNormalizer(dst io.Writer) *Normalizer {
	return &Normalizer{dst: dst}
}

// outBuffers holds the output buffers of closed Normalizers: growing a new
// one for every message was a good part of what intake allocated.
var outBuffers = sync.Pool{New: func() any { b := make([]byte, 0, flushAt); return &b }}

// Write normalises p and writes the result to the destination. It returns
// len(p) unless an error occurred; then it returns how many bytes of p were
// consumed before it.
func (n *Normalizer) Write(p []byte) (int, error) {
	if n.err != nil {
		return 0, n.err
	}
	if n.closed {
		n.err = errors.New("msgdata: write after close")
		return 0, n.err
	}
	n.start()
	for i := 0; i < len(p); {
		if !n.pendingCR && n.hdr.done {
			// In the body, runs of ordinary bytes are copied whole: doing
			// them one call per byte was most of intake's CPU at 100 KiB.
			if run := n.plain(p[i:]); run > 0 {
				i += run
				if err := n.maybeFlush(); err != nil {
					return i, err
				}
				continue
			}
		}
		c := p[i]
		if n.pendingCR {
			n.pendingCR = false
			if c == '\n' {
				n.eol()
				n.inOffset++
				i++
				if err := n.maybeFlush(); err != nil {
					return i, err
				}
				continue
			}
			if n.Strict {
				return i, n.fail("bare CR", n.inOffset-1)
			}
			n.content(' ')
		}
		switch c {
		case '\r':
			n.pendingCR = true
		case '\n':
			if n.Strict {
				return i, n.fail("bare LF", n.inOffset)
			}
			n.eol()
		case 0:
			if n.Strict {
				return i, n.fail("NUL", n.inOffset)
			}
			n.content(' ')
		default:
			n.content(c)
		}
		n.inOffset++
		i++
		if err := n.maybeFlush(); err != nil {
			return i, err
		}
	}
	if err := n.flush(); err != nil {
		return len(p), err
	}
	return len(p), nil
}

// Close ends the data: a CR left pending at the end is a bare CR, and an
// unterminated last line gets its CRLF. It does not close the destination.
// After Close, Info holds the final facts.
func (n *Normalizer) Close() error {
	if n.err != nil {
		return n.err
	}
	if n.closed {
		return nil
	}
	n.start()
	n.closed = true
	if n.pendingCR {
		n.pendingCR = false
		if n.Strict {
			return n.fail("bare CR", n.inOffset-1)
		}
		n.content(' ')
	}
	if n.lineLen > 0 {
		n.eol()
	}
	n.hdr.finish(&n.info)
	err := n.flush()
	if err == nil && cap(n.buf) <= 2*flushAt {
		b := n.buf[:0]
		outBuffers.Put(&b)
		n.buf = nil
	}
	return err
}

// Info returns the facts collected so far; they are final after Close
// returned nil.
func (n *Normalizer) Info() Info {
	return n.info
}

func (n *Normalizer) start() {
	if n.buf == nil && !n.closed {
		n.buf = *outBuffers.Get().(*[]byte)
	}
	if n.hdr.max == 0 {
		n.hdr.max = n.MaxHeaderBytes
		if n.hdr.max <= 0 {
			n.hdr.max = DefaultMaxHeaderBytes
		}
	}
}

func (n *Normalizer) fail(what string, offset int64) error {
	n.err = fmt.Errorf("%w: %s at byte %d", ErrBareLineEnding, what, offset)
	return n.err
}

// content emits one byte that is neither CR, LF nor NUL.
func (n *Normalizer) content(c byte) {
	n.buf = append(n.buf, c)
	if c >= 0x80 {
		n.info.EightBit = true
	}
	if !n.hdr.done {
		n.hdr.content(c, n.lineLen, &n.info)
	}
	n.lineLen++
	n.info.Size++
}

// plain emits the longest run at the start of p that holds no CR, LF or
// NUL, as content does byte by byte, and returns its length. Only for the
// body: the header scanner must see every byte.
func (n *Normalizer) plain(p []byte) int {
	var or byte
	k := 0
	for ; k < len(p); k++ {
		c := p[k]
		if c <= '\r' && (c == '\r' || c == '\n' || c == 0) {
			break
		}
		or |= c
	}
	if k == 0 {
		return 0
	}
	n.buf = append(n.buf, p[:k]...)
	if or >= 0x80 {
		n.info.EightBit = true
	}
	n.lineLen += k
	n.info.Size += int64(k)
	n.inOffset += int64(k)
	return k
}

// eol emits CRLF and ends the current line.
func (n *Normalizer) eol() {
	n.buf = append(n.buf, '\r', '\n')
	n.info.Size += 2
	if n.lineLen > n.info.LongestLine {
		n.info.LongestLine = n.lineLen
	}
	if !n.hdr.done {
		n.hdr.eol(n.lineLen, &n.info)
	}
	n.lineLen = 0
}

func (n *Normalizer) maybeFlush() error {
	if len(n.buf) < flushAt {
		return nil
	}
	return n.flush()
}

func (n *Normalizer) flush() error {
	if len(n.buf) == 0 {
		return nil
	}
	_, err := n.dst.Write(n.buf)
	n.buf = n.buf[:0]
	if err != nil {
		n.err = fmt.Errorf("msgdata: writing normalised data: %w", err)
		return n.err
	}
	return nil
}
