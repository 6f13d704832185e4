// Package dsn builds the delivery status notifications (bounces) the relay
// sends back to a message's sender, as RFC 3464 multipart/report messages
// (RFC 6522) with three parts: a friendly text for the person, a
// message/delivery-status part for programs, and the original headers as
// text/rfc822-headers.
//
// Everything in a Report may come from outside (the original sender, the
// recipient addresses, the remote server's reply, the original headers), so
// the builder assumes every string is hostile: single-line fields lose CR, LF
// and other control characters, machine-readable fields are kept to ASCII,
// long text is folded, and the MIME boundary is checked against the content.
// Build is a pure function of its input, so the output is tested byte for
// byte against golden files.
package dsn

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"postroom/engine/msgdata"
)

// Report is everything one notification says. One Report covers one
// message and any number of its recipients, so a message with three failed
// recipients produces one bounce, not three.
type Report struct {
	// ReportingMTA is our host name (the hostname setting).
	ReportingMTA string
	// From is the notification's From address, usually
	// "MAILER-DAEMON@" + hostname. It is sent from the null sender <>.
	From string
	// To is the original envelope sender. It must not be empty: mail from
	// <> never bounces.
	To string
	// QueueID identifies the original message in our queue; it is quoted in
	// the text and used for the MIME boundary.
	QueueID string
	// ArrivalDate is when the original message was accepted; zero leaves
	// Arrival-Date out.
	ArrivalDate time.Time
	// Date is the notification's date. The caller's clock supplies it, so the
	// output is reproducible.
	Date time.Time
	// MessageID is the notification's own Message-ID, with or without the
	// angle brackets.
	MessageID string
	// Recipients are the recipients being reported on; at least one.
	Recipients []Recipient
	// OriginalHeaders is the header section of the original message (from
	// msgdata.SplitHeader). Anything after its first empty line is ignored,
	// so a whole message never leaks its body into a bounce.
	OriginalHeaders []byte
}

// Recipient is the status of one recipient.
type Recipient struct {
	// Address is the recipient's envelope address.
	Address string
	// Action is the RFC 3464 action: "failed" (bounces and expiry; the
	// default when empty), "delayed", "delivered", "relayed" or "expanded".
	Action string
	// Status is the RFC 3463 status code, e.g. "5.1.1". When empty or not a
	// status code it becomes the generic code of the action's class
	// ("5.0.0" for failed, "4.0.0" for delayed, "2.0.0" otherwise).
	Status string
	// RemoteMTA is the host name of the server that answered, if any.
	RemoteMTA string
	// Diagnostic is that server's reply, e.g. "550 5.1.1 no such user".
	Diagnostic string
	// LastAttempt is when delivery was last tried; zero leaves it out.
	LastAttempt time.Time
	// Reason is a short sentence for people, e.g. "The recipient's server
	// refused the address."
	Reason string
}

// ErrInvalidReport is wrapped by the errors Build returns for a Report it
// cannot turn into a notification.
var ErrInvalidReport = errors.New("dsn: invalid report")

// Limits on what is copied from a Report. They keep every generated line far
// below the 998-octet limit of RFC 5322 even before folding, and a bounce
// small whatever a remote server answered.
const (
	maxAddressLen    = 512
	maxHostLen       = 253
	maxDiagnosticLen = 4096
	maxReasonRunes   = 500
	maxHeaderBytes   = msgdata.DefaultMaxHeaderBytes
	foldWidth        = 78  // RFC 5322 2.1.1: SHOULD be no more than 78
	hardLineLimit    = 998 // RFC 5322 2.1.1: MUST be no more than 998
	textWidth        = 72  // the friendly text wraps here
)

var statusCode = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)

// Build returns the notification as a complete RFC 5322 message with CRLF
// line endings, ready to be queued from the null sender to r.To.
//
// Non-ASCII recipient addresses are written in the message/delivery-status
// part with the RFC 6533 "utf-8" address type in its 7-bit utf-8-addr-xtext
// form ("utf-8; j\x{F6}rg@example.de"), which keeps that part plain ASCII
// message/delivery-status that every bounce parser reads, instead of
// message/global-delivery-status, which would need SMTPUTF8 on the way back.
// In the friendly text (UTF-8, quoted-printable) they appear as they are.
// Only when the original sender's own address is not ASCII does the To
// header carry UTF-8 (RFC 6532); delivering to such an address needs
// SMTPUTF8 anyway.
func Build(r Report) ([]byte, error) {
	rcpts, err := normalizeRecipients(r.Recipients)
	if err != nil {
		return nil, err
	}
	reportingMTA := cleanHost(r.ReportingMTA)
	from := cleanAddress(r.From)
	to := cleanAddress(r.To)
	messageID := cleanMessageID(r.MessageID)
	switch {
	case reportingMTA == "":
		return nil, fmt.Errorf("%w: no reporting MTA host name", ErrInvalidReport)
	case from == "":
		return nil, fmt.Errorf("%w: no From address", ErrInvalidReport)
	case to == "":
		return nil, fmt.Errorf("%w: no original sender (mail from <> never bounces)", ErrInvalidReport)
	case messageID == "":
		return nil, fmt.Errorf("%w: no Message-ID", ErrInvalidReport)
	case r.Date.IsZero():
		return nil, fmt.Errorf("%w: no date", ErrInvalidReport)
	}
	queueID := cleanASCII(r.QueueID, isIDByte, 64)
	original, original8bit := originalHeaders(r.OriginalHeaders)

	text, err := humanPart(reportingMTA, queueID, original, rcpts)
	if err != nil {
		return nil, err
	}
	status := statusPart(r, reportingMTA, queueID, rcpts)
	boundary, err := chooseBoundary(queueID, text, status, original)
	if err != nil {
		return nil, err
	}

	var b bytes.Buffer
	writeField(&b, "From", "Mail Delivery System <"+from+">")
	writeField(&b, "To", "<"+to+">")
	writeField(&b, "Subject", mime.QEncoding.Encode("utf-8", subject(rcpts)))
	writeField(&b, "Date", r.Date.Format(time.RFC1123Z))
	writeField(&b, "Message-ID", "<"+messageID+">")
	writeField(&b, "MIME-Version", "1.0")
	// RFC 3834: marks the message as automatic so that vacation responders
	// and other robots do not answer it.
	writeField(&b, "Auto-Submitted", "auto-replied")
	writeField(&b, "Content-Type", `multipart/report; report-type=delivery-status; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	b.WriteString("This is a MIME-formatted delivery status notification.\r\n")

	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n")
	b.WriteString("Content-Description: Notification\r\n\r\n")
	b.Write(text)

	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: message/delivery-status\r\n")
	b.WriteString("Content-Description: Delivery report\r\n\r\n")
	b.Write(status)

	b.WriteString("\r\n--" + boundary + "\r\n")
	// RFC 6522 names the type text/rfc822-headers. Quoted-printable only
	// when the headers need it, so the common case stays readable.
	if original8bit {
		b.WriteString("Content-Type: text/rfc822-headers; charset=utf-8\r\n")
		b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n")
		original, err = encodeQP(original)
		if err != nil {
			return nil, err
		}
	} else {
		b.WriteString("Content-Type: text/rfc822-headers\r\n")
		b.WriteString("Content-Transfer-Encoding: 7bit\r\n")
	}
	b.WriteString("Content-Description: Headers of the original message\r\n\r\n")
	b.Write(original)
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

// recipient is a Recipient cleaned for output.
type recipient struct {
	address    string // UTF-8, single line
	action     string
	status     string
	remoteMTA  string
	diagnostic string // single line, may hold UTF-8
	lastTry    time.Time
	reason     string
}

func normalizeRecipients(in []Recipient) ([]recipient, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("%w: no recipients", ErrInvalidReport)
	}
	out := make([]recipient, 0, len(in))
	for i, r := range in {
		rc := recipient{
			address:    cleanAddress(r.Address),
			action:     strings.ToLower(strings.TrimSpace(r.Action)),
			status:     strings.TrimSpace(r.Status),
			remoteMTA:  cleanHost(r.RemoteMTA),
			diagnostic: cleanText(r.Diagnostic, maxDiagnosticLen),
			lastTry:    r.LastAttempt,
			reason:     cleanText(r.Reason, maxReasonRunes),
		}
		if rc.address == "" {
			return nil, fmt.Errorf("%w: recipient %d has no address", ErrInvalidReport, i+1)
		}
		switch rc.action {
		case "":
			rc.action = "failed"
		case "failed", "delayed", "delivered", "relayed", "expanded":
		default:
			return nil, fmt.Errorf("%w: recipient %d: unknown action %q", ErrInvalidReport, i+1, cleanText(r.Action, 20))
		}
		if !statusCode.MatchString(rc.status) {
			switch rc.action {
			case "failed":
				rc.status = "5.0.0"
			case "delayed":
				rc.status = "4.0.0"
			default:
				rc.status = "2.0.0"
			}
		}
		if rc.reason == "" {
			switch rc.action {
			case "failed":
				rc.reason = "The message could not be delivered."
			case "delayed":
				rc.reason = "The message has not been delivered yet."
			}
		}
		out = append(out, rc)
	}
	return out, nil
}

// subject names the outcome, and the recipient when there is only one.
func subject(rcpts []recipient) string {
	failed, delayed := 0, 0
	for _, r := range rcpts {
		switch r.action {
		case "failed":
			failed++
		case "delayed":
			delayed++
		}
	}
	var s string
	switch {
	case failed == len(rcpts):
		s = "Undelivered mail returned to sender"
	case delayed == len(rcpts):
		s = "Delayed mail (still being retried)"
	default:
		s = "Delivery status notification"
	}
	if len(rcpts) == 1 {
		s += ": " + rcpts[0].address
	}
	return s
}

// humanPart writes the friendly explanation, quoted-printable encoded.
func humanPart(reportingMTA, queueID string, original []byte, rcpts []recipient) ([]byte, error) {
	var t strings.Builder
	t.WriteString("This is the mail relay at " + reportingMTA + ".\n\n")

	if len(original) > 0 {
		// The subject helps the sender recognise the message; the
		// Normalizer decodes it for display and cannot fail on io.Discard.
		n := msgdata.NewNormalizer(io.Discard)
		_, _ = n.Write(original)
		_ = n.Close()
		if subject := n.Info().Subject; subject != "" {
			wrap(&t, "Your message: \""+subject+"\"", "")
			t.WriteString("\n")
		}
	}
	groups := []struct {
		actions []string
		intro   string
	}{
		{[]string{"failed"}, "Your message could not be delivered to the following recipients. " +
			"It has been returned to you; the reason for each recipient is given below."},
		{[]string{"delayed"}, "Your message has not yet been delivered to the following recipients. " +
			"The relay keeps trying, so you do not need to send it again."},
		{[]string{"delivered", "relayed", "expanded"}, "For your information, the status of the following recipients:"},
	}
	for _, g := range groups {
		var listed []recipient
		for _, rc := range rcpts {
			for _, a := range g.actions {
				if rc.action == a {
					listed = append(listed, rc)
				}
			}
		}
		if len(listed) == 0 {
			continue
		}
		wrap(&t, g.intro, "")
		t.WriteString("\n")
		for _, rc := range listed {
			t.WriteString("<" + rc.address + ">\n")
			if rc.reason != "" {
				wrap(&t, rc.reason, "    ")
			}
			if rc.diagnostic != "" {
				who := "The receiving server"
				if rc.remoteMTA != "" {
					who = "The server " + rc.remoteMTA
				}
				wrap(&t, who+" answered: "+rc.diagnostic, "    ")
			}
			t.WriteString("\n")
		}
	}
	ref := ""
	if queueID != "" {
		ref = " and quote the reference " + queueID
	}
	wrap(&t, "The headers of your original message are attached. If you need help, "+
		"forward this whole message to your mail administrator"+ref+".", "")

	// Quoted-printable keeps the part 7-bit for servers without 8BITMIME and
	// breaks long lines (a long address or reply) softly below 76 characters.
	return encodeQP([]byte(strings.ReplaceAll(t.String(), "\n", "\r\n")))
}

// wrap writes text as lines of at most textWidth characters where words
// allow, each prefixed by indent.
func wrap(t *strings.Builder, text, indent string) {
	line := indent
	for _, w := range strings.Fields(text) {
		if line != indent && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(w) > textWidth {
			t.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += w
	}
	t.WriteString(line + "\n")
}

func encodeQP(p []byte) ([]byte, error) {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	if _, err := w.Write(p); err != nil {
		return nil, fmt.Errorf("dsn: encoding quoted-printable: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("dsn: encoding quoted-printable: %w", err)
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes(), nil
}

// statusPart writes the message/delivery-status fields (RFC 3464 section
// 2.2 and 2.3). The part is 7-bit ASCII throughout.
func statusPart(r Report, reportingMTA, queueID string, rcpts []recipient) []byte {
	var b bytes.Buffer
	writeField(&b, "Reporting-MTA", "dns; "+reportingMTA)
	if queueID != "" {
		// An extension field as Postfix writes X-Postfix-Queue-ID: it lets
		// the sender's administrator find the message in our log.
		writeField(&b, "X-Postroom-Queue-ID", queueID)
	}
	if !r.ArrivalDate.IsZero() {
		writeField(&b, "Arrival-Date", r.ArrivalDate.Format(time.RFC1123Z))
	}
	for _, rc := range rcpts {
		b.WriteString("\r\n")
		writeField(&b, "Final-Recipient", addressField(rc.address))
		writeField(&b, "Action", rc.action)
		writeField(&b, "Status", rc.status)
		if rc.remoteMTA != "" {
			writeField(&b, "Remote-MTA", "dns; "+rc.remoteMTA)
		}
		if rc.diagnostic != "" {
			writeField(&b, "Diagnostic-Code", "smtp; "+asciiOnly(rc.diagnostic))
		}
		if !rc.lastTry.IsZero() {
			writeField(&b, "Last-Attempt-Date", rc.lastTry.Format(time.RFC1123Z))
		}
	}
	return b.Bytes()
}

// addressField is the value of Final-Recipient: "rfc822; addr" for ASCII
// addresses, else RFC 6533 "utf-8; " with utf-8-addr-xtext, in which every
// non-ASCII character and the ASCII characters '\', '+' and '=' are written
// as \x{HEX}.
func addressField(addr string) string {
	ascii := true
	for i := 0; i < len(addr); i++ {
		if addr[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return "rfc822; " + addr
	}
	var b strings.Builder
	b.WriteString("utf-8; ")
	for _, r := range addr {
		if r > ' ' && r < 0x7f && r != '\\' && r != '+' && r != '=' {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, `\x{%X}`, r)
	}
	return b.String()
}

// chooseBoundary derives the MIME boundary from the queue ID, so it is stable
// for golden tests and recognisable in a log, and proves it absent from the
// content. "=_" cannot occur in quoted-printable output, which makes a clash
// possible only through the original headers or a diagnostic, which someone
// could craft; then a hash of the content is added, which the content cannot
// contain without knowing its own hash.
func chooseBoundary(queueID string, parts ...[]byte) (string, error) {
	// RFC 2046 allows 70 characters: 15 + 1 + 36 + 17 fit.
	base := "=_postroom-dsn"
	if queueID != "" {
		base += "-" + queueID[:min(len(queueID), 36)]
	}
	candidate := base
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	for i := 0; i < 16; i++ {
		clash := false
		for _, p := range parts {
			if bytes.Contains(p, []byte(candidate)) {
				clash = true
				break
			}
		}
		if !clash {
			return candidate, nil
		}
		h.Write([]byte{byte(i)})
		candidate = base + "." + hex.EncodeToString(h.Sum(nil))[:16]
	}
	return "", errors.New("dsn: no MIME boundary absent from the content")
}

// originalHeaders returns the header section to attach, with CRLF line
// endings, no empty line, no NUL or bare CR, and at most maxHeaderBytes of
// whole fields. eightBit reports whether it needs quoted-printable: a byte
// above 0x7F or a line too long for 7bit.
func originalHeaders(raw []byte) (header []byte, eightBit bool) {
	// SplitHeader stops at the empty line and keeps whole fields; a
	// truncated header is still worth attaching.
	header, _ = msgdata.SplitHeader(bytes.NewReader(raw), maxHeaderBytes)
	lineLen := 0
	for i, c := range header {
		switch {
		case c == 0, c == '\r' && (i+1 == len(header) || header[i+1] != '\n'):
			header[i] = ' '
		case c == '\n':
			lineLen = 0
			continue
		case c >= 0x80:
			eightBit = true
		}
		lineLen++
		if lineLen > hardLineLimit {
			eightBit = true
		}
	}
	return header, eightBit
}

// writeField writes "name: value" folded at spaces to lines of at most
// foldWidth characters where the words allow, and never over hardLineLimit:
// a word too long for one line is split across continuation lines (which
// adds a space to the unfolded value, the price of a legal message). Runs of
// spaces in value become one; value must already be a single line.
func writeField(b *bytes.Buffer, name, value string) {
	line := name + ":"
	empty := true // no word on this line yet
	for _, w := range strings.Fields(value) {
		for w != "" {
			if !empty && len(line)+1+len(w) > foldWidth {
				b.WriteString(line + "\r\n")
				line, empty = "", true
			}
			piece := cutUTF8(w, hardLineLimit-len(line)-1)
			line += " " + piece
			empty = false
			w = w[len(piece):]
		}
	}
	b.WriteString(line + "\r\n")
}

// cutUTF8 returns the longest prefix of s of at most n bytes that does not
// end inside a UTF-8 sequence (at least one byte, so progress is made).
func cutUTF8(s string, n int) string {
	if n <= 0 {
		n = 1
	}
	if n >= len(s) {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	if i == 0 {
		return s[:n]
	}
	return s[:i]
}

// cleanText makes s one line of printable text: invalid UTF-8 is replaced,
// line breaks, tabs and runs of spaces become one space, other control
// characters go, and the result is cut to max runes.
func cleanText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	n := 0
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = true
			continue
		case unicode.IsControl(r):
			continue
		}
		if space && n > 0 {
			b.WriteByte(' ')
			n++
		}
		space = false
		if n >= max {
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// cleanAddress makes an envelope address safe inside angle brackets: one
// line, no control characters, no angle brackets or spaces, at most
// maxAddressLen bytes. Quoted local parts with spaces lose their spaces;
// such addresses are vanishingly rare and a header must stay one field.
func cleanAddress(s string) string {
	s = strings.ToValidUTF8(s, "")
	var b strings.Builder
	for _, r := range s {
		if r <= ' ' || r == 0x7f || unicode.IsControl(r) || unicode.IsSpace(r) || r == '<' || r == '>' {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > maxAddressLen {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

func cleanHost(s string) string { return cleanASCII(s, isHostByte, maxHostLen) }

func cleanMessageID(s string) string {
	return cleanASCII(s, func(c byte) bool { return c > ' ' && c < 0x7f && c != '<' && c != '>' }, 250)
}

// asciiOnly replaces every non-ASCII rune, for the 7-bit status part.
func asciiOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= utf8.RuneSelf {
			return '?'
		}
		return r
	}, s)
}

// cleanASCII keeps the bytes of s that keep allows, up to max bytes.
func cleanASCII(s string, keep func(byte) bool, max int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < max; i++ {
		if keep(s[i]) {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func isHostByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '-' || c == '_' || c == '[' || c == ']' || c == ':'
}

// isIDByte allows what may stand in a MIME boundary and a header unquoted.
func isIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_'
}
