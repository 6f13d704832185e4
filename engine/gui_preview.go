package engine

// The queue inspector's text preview of a message: what a person would
// read in a mail program, so that the owner can tell an invoice from a
// newsletter without opening the raw message. It reads at most
// previewReadLimit bytes of the stored message, walks its MIME parts for
// the first text/plain part (or else text/html with the tags taken out),
// undoes the transfer encoding and turns the common charsets into UTF-8.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"unicode/utf8"
)

// previewReadLimit bounds how much of a message the preview reads: enough
// for the text of any ordinary message, and a 25 MB attachment is never
// read whole for a glance.
const previewReadLimit = 512 << 10

// previewDepth bounds the nesting of multipart parts the preview follows.
const previewDepth = 4

// BodyPreview returns up to maxRunes characters of a message's readable
// text. A message without a text part says so in words rather than
// failing: the window shows the result as it is.
func (e *Engine) BodyPreview(ctx context.Context, id int64, maxRunes int) (string, error) {
	body, err := e.store.OpenBody(ctx, id)
	if err != nil {
		return "", err
	}
	defer body.Close()
	raw, err := io.ReadAll(io.LimitReader(body, previewReadLimit))
	if err != nil {
		return "", fmt.Errorf("reading message %d: %w", id, err)
	}
	return previewText(raw, maxRunes), nil
}

// previewText is BodyPreview without the store.
func previewText(raw []byte, maxRunes int) string {
	msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return "(The message could not be read as mail: " + err.Error() + ")"
	}
	text, found := findText(textproto.MIMEHeader(msg.Header), msg.Body, 0)
	if !found {
		return "(This message has no text to show; it holds only attachments or other content.)"
	}
	text = strings.TrimSpace(strings.ReplaceAll(text, "\r\n", "\n"))
	if text == "" {
		return "(The message's text is empty.)"
	}
	return truncateRunes(text, maxRunes)
}

// findText returns the readable text of a part: itself when it is text,
// or its first text/plain descendant, or else its first text/html one.
func findText(h textproto.MIMEHeader, body io.Reader, depth int) (string, bool) {
	ctype, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || ctype == "" {
		ctype, params = "text/plain", map[string]string{} // RFC 2045's default
	}
	if strings.EqualFold(h.Get("Content-Disposition"), "attachment") ||
		strings.HasPrefix(strings.ToLower(h.Get("Content-Disposition")), "attachment;") {
		return "", false
	}
	switch {
	case ctype == "text/plain":
		return decodePart(h, params, body), true
	case ctype == "text/html":
		return htmlToText(decodePart(h, params, body)), true
	case strings.HasPrefix(ctype, "multipart/") && params["boundary"] != "" && depth < previewDepth:
		mr := multipart.NewReader(body, params["boundary"])
		var html string
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				break
			}
			text, ok := findText(p.Header, p, depth+1)
			if !ok {
				continue
			}
			pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
			if pt == "text/html" {
				if html == "" {
					html = text
				}
				continue
			}
			return text, true
		}
		return html, html != ""
	}
	return "", false
}

// decodePart undoes the transfer encoding and the charset of a text part.
func decodePart(h textproto.MIMEHeader, params map[string]string, body io.Reader) string {
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, newlineStripper{body})
	}
	b, err := io.ReadAll(body)
	if err != nil && len(b) == 0 && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "(The text could not be decoded: " + err.Error() + ")"
	}
	return toUTF8(b, params["charset"])
}

// newlineStripper drops the line breaks of base64 text, which the
// standard decoder would take for corrupt input only at the end.
type newlineStripper struct{ r io.Reader }

func (n newlineStripper) Read(p []byte) (int, error) {
	for {
		k, err := n.r.Read(p)
		j := 0
		for _, c := range p[:k] {
			if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// toUTF8 converts text in the charsets desktop mail programs use most;
// others keep their valid UTF-8 and ASCII and show U+FFFD for the rest.
func toUTF8(b []byte, charset string) string {
	switch strings.ToLower(strings.TrimSpace(charset)) {
	case "iso-8859-1", "latin1", "iso-8859-15", "windows-1252", "cp1252":
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
			if c >= 0x80 && c < 0xa0 {
				// Windows-1252's printable characters there; ISO-8859-1
				// has only control codes, which no text uses.
				r[i] = cp1252[c-0x80]
			}
		}
		return string(r)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// cp1252 (read-only) is Windows-1252 from 0x80 to 0x9f.
var cp1252 = [32]rune{
	'€', '\uFFFD', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\uFFFD', 'Ž', '\uFFFD',
	'\uFFFD', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\uFFFD', 'ž', 'Ÿ',
}

var (
	htmlDrop   = regexp.MustCompile(`(?is)<(script|style|head)\b.*?</(script|style|head)\s*>`)
	htmlBreak  = regexp.MustCompile(`(?i)<(br|/p|/div|/tr|/h[1-6]|/li)\b[^>]*>`)
	htmlTag    = regexp.MustCompile(`(?s)<[^>]*>`)
	blankLines = regexp.MustCompile(`\n[ \t]*(\n[ \t]*)+`)
	spaces     = regexp.MustCompile(`[ \t]+`)
)

// htmlToText is a rough rendering of HTML mail as text: enough to read
// what it says, not to show how it looks.
func htmlToText(s string) string {
	s = htmlDrop.ReplaceAllString(s, "")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\n", " ")
	s = htmlBreak.ReplaceAllString(s, "\n")
	s = htmlTag.ReplaceAllString(s, "")
	s = html.UnescapeString(s)
	s = strings.ReplaceAll(s, "\u00a0", " ")
	s = spaces.ReplaceAllString(s, " ")
	s = blankLines.ReplaceAllString(s, "\n\n")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, "\n")
}

// truncateRunes cuts s to at most n characters (n <= 0: no limit), saying
// that it did.
func truncateRunes(s string, n int) string {
	if n <= 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for k := range s {
		if i == n {
			return s[:k] + "\n…"
		}
		i++
	}
	return s
}
