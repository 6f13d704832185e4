package deliver

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// Error is a failure that is not a single recipient's reply: a next hop that
// could not be reached, a TLS or AUTH policy that could not be met, a DNS
// answer that rules the domain out, or a connection lost during a
// transaction. The scheduler decides from Permanent whether to bounce or
// defer, and logs DuplicatePossible as "duplicate possible".
type Error struct {
	// Host is the next hop the failure is about ("" when it is about the
	// domain as a whole, as for DNS).
	Host string
	// Code and Enhanced hold the server's reply when the failure is one
	// (a 5xx to AUTH, say); 0 and "" otherwise.
	Code     int
	Enhanced string
	// Permanent says retrying cannot help. Anything not known to be
	// permanent is temporary, as in maddy: a wrong guess towards temporary
	// only delays a bounce, a wrong guess towards permanent loses mail.
	Permanent bool
	// DuplicatePossible is set when the connection failed after the final
	// "." of DATA was sent: the server may have taken the message even
	// though we never saw its reply.
	DuplicatePossible bool
	// Err is the underlying cause.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Host != "" {
		b.WriteString(e.Host)
		b.WriteString(": ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("delivery failed")
	}
	if e.DuplicatePossible {
		b.WriteString(" (the connection failed after the end of the message was sent; the server may have accepted it: duplicate possible)")
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err is known to be permanent (the recipients
// should bounce). Errors of unknown kind are temporary.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// DuplicatePossible reports whether err happened after the whole message had
// been sent, so that the next hop may have accepted it.
func DuplicatePossible(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.DuplicatePossible
}

// reply is one SMTP reply in the form RcptResult and Error carry.
type reply struct {
	code     int
	enhanced string
	text     string
}

// replyOf converts a go-smtp reply error. ok is false when err is not an SMTP
// reply (a network failure, a timeout, a local check).
func replyOf(err error) (r reply, ok bool) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return reply{}, false
	}
	return reply{
		code:     se.Code,
		enhanced: formatEnhanced(se.EnhancedCode),
		text:     oneLine(se.Message),
	}, true
}

// parseReply converts a reply as net/textproto reads it (code, and the
// lines' text joined by "\n") the way go-smtp converts one into an
// SMTPError: a leading RFC 3463 code is taken off the first line, and off
// the lines after it that repeat it (RFC 2034 has every line carry it).
func parseReply(code int, msg string) reply {
	enhanced, text := splitEnhanced(msg)
	if enhanced != "" {
		text = strings.ReplaceAll(text, "\n"+enhanced+" ", "\n")
	}
	return reply{code: code, enhanced: enhanced, text: oneLine(text)}
}

// positive reports whether r is in the class that lets the command go on:
// 2 for most, 3 for DATA's "354 go ahead".
func (r reply) positive(class int) bool { return r.code/100 == class }

// refusal reports whether r is a 4xx or 5xx reply. Anything neither
// positive nor a refusal is a protocol error, after which the dialogue
// cannot be trusted.
func (r reply) refusal() bool { return r.code >= 400 && r.code < 600 }

// String renders r as the server said it, on one line.
func (r reply) String() string {
	parts := []string{strconv.Itoa(r.code)}
	if r.enhanced != "" {
		parts = append(parts, r.enhanced)
	}
	if r.text != "" {
		parts = append(parts, r.text)
	}
	return strings.Join(parts, " ")
}

// formatEnhanced renders an RFC 3463 code, or "" when the server sent none
// (go-smtp leaves a zero or NoEnhancedCode value then).
func formatEnhanced(c smtp.EnhancedCode) string {
	if (c[0] != 2 && c[0] != 4 && c[0] != 5) || c[1] < 0 || c[2] < 0 {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
}

// splitEnhanced separates a leading RFC 3463 code from reply text, as go-smtp
// leaves it in the text of a successful reply ("2.0.0 Ok: queued as X").
func splitEnhanced(text string) (enhanced, rest string) {
	first, after, _ := strings.Cut(text, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return "", text
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 3 {
			return "", text
		}
		for _, r := range p {
			if r < '0' || r > '9' {
				return "", text
			}
		}
	}
	return first, after
}

// oneLine joins a multi-line reply so it fits one log line or one
// Diagnostic-Code field.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// replyError turns a reply to a session-level command (greeting, EHLO,
// STARTTLS, AUTH, RSET) into an *Error; 5xx is permanent only when
// permanentOn5xx is set, since a 5xx greeting from one MX says nothing final
// about the domain (Postfix moves on and defers).
func replyError(host, what string, err error, permanentOn5xx bool) *Error {
	e := &Error{Host: host, Err: fmt.Errorf("%s: %w", what, err)}
	if r, ok := replyOf(err); ok {
		e.Code, e.Enhanced = r.code, r.enhanced
		e.Permanent = permanentOn5xx && r.code >= 500 && r.code < 600
	}
	return e
}
