package msgdata

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Where the header section ends
//
// RFC 5322 ends the header section at the first empty line. Mail from
// devices often has no header at all, or a first line that is plainly text,
// so like Postfix's cleanup we also end it at the first line that is neither
// a header field ("name:" with a printable name, optionally followed by
// spaces before the colon, the RFC 5322 obsolete form) nor a continuation
// line (starting with a space or tab) of a preceding field. Such a line is
// the first line of the body. The Normalizer and SplitHeader share this rule
// so that HeaderBytes and the split agree.

// lineKind is what the start of the current line has shown it to be.
type lineKind uint8

const (
	lineUnknown      lineKind = iota // no colon or WSP decision yet
	lineField                        // "name:" seen
	lineContinuation                 // starts with WSP after a field
)

// headerScanner follows the normalised output byte by byte until the header
// section ends. It counts fields over the whole header in constant memory and
// keeps at most max bytes for extracting display values.
type headerScanner struct {
	done     bool
	max      int
	kept     []byte
	sawField bool

	kind       lineKind
	afterName  bool     // spaces seen after the name, only ':' or WSP may follow
	nameLen    int      // length of the field name so far
	name       [16]byte // first bytes of the name, lower-cased: enough for "message-id"
	lineStart  int64    // output offset where the current line began
	keptAtLine int      // len(kept) when the current line began
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

// isFtext reports whether c may appear in a field name (RFC 5322 ftext).
func isFtext(c byte) bool { return c >= 33 && c <= 126 && c != ':' }

// content sees one content byte; col is its position in the line.
func (h *headerScanner) content(c byte, col int, info *Info) {
	if len(h.kept) < h.max {
		h.kept = append(h.kept, c)
	}
	if h.kind != lineUnknown {
		return
	}
	switch {
	case col == 0 && isWSP(c):
		if !h.sawField {
			h.end(info) // a continuation of nothing: body text
			return
		}
		h.kind = lineContinuation
	case c == ':' && h.nameLen > 0:
		h.field(info)
	case !h.afterName && isFtext(c):
		if h.nameLen < len(h.name) {
			h.name[h.nameLen] = lower(c)
		}
		h.nameLen++
	case isWSP(c) && h.nameLen > 0:
		h.afterName = true
	default:
		h.end(info)
	}
}

// eol sees the CRLF ending a line of lineLen content bytes.
func (h *headerScanner) eol(lineLen int, info *Info) {
	if h.max-len(h.kept) >= 2 {
		h.kept = append(h.kept, '\r', '\n')
	}
	switch {
	case lineLen == 0:
		// The empty line ends the header section and belongs to it.
		info.HeaderBytes = info.Size
		h.finish(info)
		return
	case h.kind == lineUnknown:
		h.end(info) // a whole line without a colon: body text
		return
	}
	h.kind = lineUnknown
	h.afterName = false
	h.nameLen = 0
	h.lineStart = info.Size
	h.keptAtLine = len(h.kept)
}

func (h *headerScanner) field(info *Info) {
	h.kind = lineField
	h.sawField = true
	if h.nameLen > len(h.name) {
		return
	}
	switch string(h.name[:h.nameLen]) {
	case "received":
		info.ReceivedCount++
	case "date":
		info.HasDate = true
	case "message-id":
		info.HasMessageID = true
	}
}

// end ends the header section before the current line, which is body.
func (h *headerScanner) end(info *Info) {
	info.HeaderBytes = h.lineStart
	h.kept = h.kept[:h.keptAtLine]
	h.finish(info)
}

// finish extracts the display values from the kept header and releases it.
// At the end of data without an empty line, the whole message was header.
func (h *headerScanner) finish(info *Info) {
	if h.done {
		return
	}
	if info.HeaderBytes == 0 && h.sawField {
		info.HeaderBytes = info.Size
	}
	h.done = true
	for name, value := range fields(h.kept) {
		var dst *string
		switch strings.ToLower(name) {
		case "subject":
			dst = &info.Subject
		case "from":
			dst = &info.From
		case "message-id":
			dst = &info.MessageID
		default:
			continue
		}
		if *dst == "" {
			*dst = DisplayText(value)
		}
	}
	h.kept = nil
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// fields yields the name and unfolded raw value of each field in a header
// section, in order. Lines that are not fields are skipped.
func fields(header []byte) func(yield func(name, value string) bool) {
	return func(yield func(name, value string) bool) {
		var name string
		var value []byte
		have := false
		for len(header) > 0 {
			line := header
			if i := bytes.Index(header, []byte("\r\n")); i >= 0 {
				line, header = header[:i], header[i+2:]
			} else {
				header = nil
			}
			if len(line) > 0 && isWSP(line[0]) {
				if have {
					value = append(value, line...) // unfolding removes only the CRLF
				}
				continue
			}
			if have && !yield(name, string(value)) {
				return
			}
			have = false
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 {
				continue
			}
			name = string(bytes.TrimRight(line[:colon], " \t"))
			value = append(value[:0], line[colon+1:]...)
			have = true
		}
		if have {
			yield(name, string(value))
		}
	}
}

// maxDisplayRunes is how long a display value may be: enough for any real
// subject line, short enough for a queue table cell and a log line.
const maxDisplayRunes = 200

// DisplayText turns a raw, unfolded header field value into text fit for a
// queue view or a log: RFC 2047 encoded words are decoded, invalid UTF-8 is
// replaced, tabs become spaces, all other control characters (which could
// forge log lines or confuse a terminal) are removed, surrounding space is
// trimmed, and the result is cut to 200 runes.
//
// Besides UTF-8, ISO-8859-1 and US-ASCII, encoded words in Windows-1252 and
// ISO-8859-15 are decoded, as both are common from desktop mail programs;
// other charsets keep their ASCII characters and show U+FFFD for the rest,
// which is enough to recognise a message.
func DisplayText(raw string) string {
	dec := mime.WordDecoder{CharsetReader: displayCharsetReader}
	s, err := dec.DecodeHeader(raw)
	if err != nil {
		s = raw
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	n := 0
	for _, r := range strings.TrimSpace(s) {
		if r == '\t' {
			r = ' '
		} else if unicode.IsControl(r) {
			continue
		}
		if n == maxDisplayRunes {
			break
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}

// windows1252 maps bytes 0x80..0x9F of Windows-1252; 0 marks unused bytes.
var windows1252 = [32]rune{
	'€', 0, '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', 0, 'Ž', 0,
	0, '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', 0, 'ž', 'Ÿ',
}

// iso885915 lists where ISO-8859-15 differs from ISO-8859-1.
var iso885915 = map[byte]rune{
	0xA4: '€', 0xA6: 'Š', 0xA8: 'š', 0xB4: 'Ž', 0xB8: 'ž', 0xBC: 'Œ', 0xBD: 'œ', 0xBE: 'Ÿ',
}

// displayCharsetReader converts the charsets mime.WordDecoder does not know.
func displayCharsetReader(charset string, input io.Reader) (io.Reader, error) {
	raw, err := io.ReadAll(input)
	if err != nil {
		return nil, fmt.Errorf("msgdata: reading encoded word: %w", err)
	}
	var b strings.Builder
	for _, c := range raw {
		switch {
		case c < 0x80:
			b.WriteByte(c)
		case charset == "windows-1252" || charset == "cp1252":
			r := rune(c)
			if c < 0xA0 {
				r = windows1252[c-0x80]
			}
			if r == 0 {
				r = utf8.RuneError
			}
			b.WriteRune(r)
		case charset == "iso-8859-15" || charset == "latin-9":
			if r, ok := iso885915[c]; ok {
				b.WriteRune(r)
			} else {
				b.WriteRune(rune(c))
			}
		default:
			b.WriteRune(utf8.RuneError)
		}
	}
	return strings.NewReader(b.String()), nil
}

// ErrHeaderTruncated is returned by SplitHeader, together with the fields
// that fit, when the header section is longer than the limit.
var ErrHeaderTruncated = errors.New("msgdata: header section longer than the limit")

// SplitHeader reads the header section of a stored message from r and
// returns its fields, each line ending in CRLF, without the empty line that
// ends the section. It uses the same end-of-header rule as the Normalizer.
// It reads no further than needed: at most about max bytes, and never the
// body. max <= 0 means DefaultMaxHeaderBytes.
//
// If the header is longer than max, SplitHeader returns the whole fields that
// fit (never half of a folded field) and an error wrapping
// ErrHeaderTruncated, so a DSN can still carry what fits. LF-only line
// endings are accepted and returned as CRLF, for messages stored by hand.
func SplitHeader(r io.Reader, max int) (header []byte, err error) {
	if max <= 0 {
		max = DefaultMaxHeaderBytes
	}
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() { br.Reset(nil); headerReaders.Put(br) }()
	var out []byte
	fieldStart := 0 // where the field being read began in out
	sawField := false
	for {
		line, tooLong, err := readLine(br, max+1)
		atEOF := errors.Is(err, io.EOF)
		if err != nil && !atEOF {
			return out, fmt.Errorf("msgdata: reading header: %w", err)
		}
		if atEOF && len(line) == 0 {
			return out, nil
		}
		switch {
		case len(line) == 0 && !tooLong:
			return out, nil // the empty line
		case isWSP(line[0]):
			if !sawField {
				return out, nil
			}
		case isFieldLine(line):
			fieldStart = len(out)
			sawField = true
		default:
			return out, nil // body text
		}
		if tooLong || len(out)+len(line)+2 > max {
			return out[:fieldStart], fmt.Errorf("%w (%d bytes)", ErrHeaderTruncated, max)
		}
		out = append(out, line...)
		out = append(out, '\r', '\n')
		if atEOF { // the last line had no line ending
			return out, nil
		}
	}
}

// headerReaders are SplitHeader's readers, reused: every delivery reads
// its message's header, and took a fresh 4 KiB buffer to do it. Lines are
// copied out of the buffer (readLine), so nothing keeps it.
var headerReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// readLine reads one line without its CRLF or LF. A line longer than limit is
// cut and reported, and the rest of it is not read.
func readLine(br *bufio.Reader, limit int) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > limit {
			return line[:limit], true, nil
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		return line, false, err
	}
}

// isFieldLine reports whether line starts a header field: a non-empty name
// of printable characters, optional spaces, then a colon.
func isFieldLine(line []byte) bool {
	i := 0
	for i < len(line) && isFtext(line[i]) {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(line) && isWSP(line[i]) {
		i++
	}
	return i < len(line) && line[i] == ':'
}
