package msgdata

import (
	"bytes"
	"io"
	"strings"
)

// maxFieldValue bounds how much of one removed field's value a FieldFilter
// keeps: a date needs a few dozen bytes, and a client must not make intake
// hold an unbounded field in memory.
const maxFieldValue = 1000

// FieldFilter is an [io.WriteCloser] that copies a message to another
// writer without the header fields of one name, and keeps their values.
// The relay uses it for fields addressed to itself (Postroom-Send-At), which
// the recipients must never see.
//
// It expects the CRLF lines a [Normalizer] writes and streams like one:
// only the start of a line that may be the field's name is held back, so
// memory stays constant whatever the message. The header section ends as
// SplitHeader and the Normalizer say (the empty line, or the first line that
// is neither a field nor a continuation of one); a field of the name in the
// body is body text and is kept.
type FieldFilter struct {
	dst  io.Writer
	name string // lower case
	err  error

	inBody   bool
	sawField bool
	// The line being read: its first bytes held back while they may still
	// be the name, and how far the line has been classified.
	pending   []byte
	lineState fieldLineState
	capturing bool // the current line belongs to a removed field

	values    []string
	value     []byte
	truncated bool
	out       []byte
}

type fieldLineState uint8

const (
	lineStart     fieldLineState = iota // nothing of the line seen yet
	lineName                            // reading a field name that may be ours
	lineNameWSP                         // our name, then spaces (obsolete syntax)
	lineOtherName                       // a field name that is not ours, before its colon
	lineOtherWSP                        // another name, then spaces
	linePass                            // the rest of a line that is kept
	lineDrop                            // the rest of a line that is removed
)

// NewFieldFilter returns a filter that removes the header fields called
// name (matched case-insensitively) on the way to dst.
func NewFieldFilter(dst io.Writer, name string) *FieldFilter {
	return &FieldFilter{dst: dst, name: strings.ToLower(name)}
}

// Values returns the removed fields' values in order, unfolded and trimmed.
func (f *FieldFilter) Values() []string { return f.values }

// Truncated reports whether a removed value was longer than kept.
func (f *FieldFilter) Truncated() bool { return f.truncated }

// Write implements io.Writer.
func (f *FieldFilter) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	f.out = f.out[:0]
	i := 0
	for ; i < len(p) && !f.inBody; i++ {
		f.step(p[i])
	}
	// The header's bytes as filtered, then the body as it is, without a
	// copy.
	for _, b := range [2][]byte{f.out, p[i:]} {
		if len(b) == 0 {
			continue
		}
		if _, err := f.dst.Write(b); err != nil {
			f.err = err
			return 0, err
		}
	}
	return len(p), nil
}

// Close writes what was held back and ends the last removed field.
func (f *FieldFilter) Close() error {
	if f.err != nil {
		return f.err
	}
	f.endField()
	if len(f.pending) > 0 {
		_, f.err = f.dst.Write(f.pending)
		f.pending = nil
	}
	return f.err
}

func (f *FieldFilter) step(c byte) {
	switch f.lineState {
	case lineStart:
		switch {
		case c == '\r' || c == '\n':
			// The empty line: the header section ends here.
			f.endField()
			f.inBody = true
			f.out = append(f.out, c)
		case isWSP(c):
			if !f.sawField {
				f.inBody = true // body text that starts with a space
				f.out = append(f.out, c)
				return
			}
			if f.capturing {
				f.lineState = lineDrop
				f.keep(c)
				return
			}
			f.lineState = linePass
			f.out = append(f.out, c)
		default:
			f.endField()
			f.pending = append(f.pending[:0], c)
			f.lineState = lineName
			f.classify(c)
		}
	case lineName, lineNameWSP:
		f.pending = append(f.pending, c)
		f.classify(c)
	case lineOtherName, lineOtherWSP:
		f.out = append(f.out, c)
		f.classify(c)
	case linePass:
		f.out = append(f.out, c)
		if c == '\n' {
			f.lineState = lineStart
		}
	case lineDrop:
		if c == '\n' {
			f.lineState = lineStart
			return
		}
		if c != '\r' {
			f.keep(c)
		}
	}
}

// classify follows the start of a line until it is known to be the
// removed field, another field, or body text. The line's first byte is
// already in pending.
func (f *FieldFilter) classify(c byte) {
	n := len(f.pending) - 1 // c's position when the line is still held back
	switch f.lineState {
	case lineName:
		switch {
		case c == ':' && n == len(f.name):
			f.startField()
		case isWSP(c) && n == len(f.name):
			f.lineState = lineNameWSP
		case isFtext(c) && n < len(f.name) && lower(c) == f.name[n]:
			// still our name
		default:
			f.release()
			f.otherName(c)
		}
	case lineNameWSP:
		switch {
		case c == ':':
			f.startField()
		case isWSP(c) && len(f.pending) < 64:
		default:
			f.release()
			f.otherName(c)
		}
	case lineOtherName, lineOtherWSP:
		f.otherName(c)
	}
}

// otherName follows a line that is not the removed field until its colon
// (a field: kept) or a byte no field name has (body text: the header
// section ended at the line before).
func (f *FieldFilter) otherName(c byte) {
	switch {
	case c == ':' && f.lineState != lineStart:
		f.sawField = true
		f.lineState = linePass
	case isFtext(c) && f.lineState != lineOtherWSP:
		f.lineState = lineOtherName
	case isWSP(c) && f.lineState != lineStart:
		f.lineState = lineOtherWSP
	default:
		f.inBody = true
	}
}

// release sends the held-back start of a line on and classifies it again
// as some other line.
func (f *FieldFilter) release() {
	held := f.pending
	f.pending = f.pending[:0]
	f.out = append(f.out, held...)
	f.lineState = lineStart
	for _, b := range held[:len(held)-1] {
		f.otherName(b)
		if f.inBody {
			return
		}
	}
}

func (f *FieldFilter) startField() {
	f.pending = f.pending[:0]
	f.sawField = true
	f.capturing = true
	f.value = f.value[:0]
	f.lineState = lineDrop
}

func (f *FieldFilter) keep(c byte) {
	if len(f.value) >= maxFieldValue {
		f.truncated = true
		return
	}
	f.value = append(f.value, c)
}

func (f *FieldFilter) endField() {
	if !f.capturing {
		return
	}
	f.capturing = false
	f.values = append(f.values, string(bytes.TrimSpace(f.value)))
}
