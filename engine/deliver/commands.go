package deliver

import (
	"bufio"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// After the handshake (greeting, EHLO, STARTTLS, AUTH, all done by
// go-smtp's Client) a Session speaks SMTP itself: the Client sends one
// command and waits for its reply, and keeps its reader to itself, so it
// can neither pipeline (RFC 2920) nor share the stream with a reader that
// can. From takeOver on, every command (RSET, MAIL, RCPT, DATA, NOOP,
// QUIT) and the message content go out through queue and flush onto
// s.wire, and every reply comes back through readReply, one reader for
// the whole stream.

// checkTimeout bounds the reply that shows a kept connection is still
// there: a next hop that went silent must not hold a delivery up for long.
const checkTimeout = 10 * time.Second

// takeOver switches the session from go-smtp's Client to its own reader
// and writer, noting the extensions that shape the commands. The Client's
// reader holds nothing more: the server has only answered what was asked.
func (s *Session) takeOver() {
	s.replies = textproto.NewReader(bufio.NewReaderSize(s.wire, 1024))
	s.pipelining, _ = s.client.Extension("PIPELINING")
	s.hasSize, _ = s.client.Extension("SIZE")
	s.has8BitMIME, _ = s.client.Extension("8BITMIME")
	s.hasSMTPUTF8, _ = s.client.Extension("SMTPUTF8")
}

// queue adds a command line to the next write. The caller makes sure the
// line holds no CR or LF.
func (s *Session) queue(line string) {
	s.out = append(append(s.out, line...), '\r', '\n')
}

// flush writes the queued commands, all in one write. trackConn gives the
// write its deadline.
func (s *Session) flush() error {
	if len(s.out) == 0 {
		return nil
	}
	_, err := s.wire.Write(s.out)
	s.out = s.out[:0]
	return err
}

// readReply sends what is queued and reads the next reply, waiting at most
// timeout for it. Whether commands go one by one or as a pipelined group
// is only a matter of how many are queued before the first readReply.
//
// The error is the connection's, or a reply that is not well formed; either
// way the stream can no longer be trusted. Any well-formed reply, a
// refusal included, is a reply.
func (s *Session) readReply(timeout time.Duration) (reply, error) {
	if err := s.flush(); err != nil {
		return reply{}, err
	}
	_ = s.wire.SetReadDeadline(time.Now().Add(timeout))
	code, msg, err := s.replies.ReadResponse(0)
	if err != nil {
		return reply{}, err
	}
	return parseReply(code, msg), nil
}

// mailCommand is MAIL FROM with the parameters go-smtp's Client.Mail gives
// it for the options Send uses, byte for byte: BODY=8BITMIME whenever the
// server offers it (harmless for 7-bit mail), SIZE= when the server has
// SIZE and the size is known, SMTPUTF8 when the message needs it.
func (s *Session) mailCommand(from string, size int64, utf8 bool) string {
	var b strings.Builder
	b.Grow(len(from) + 64)
	b.WriteString("MAIL FROM:<")
	b.WriteString(from)
	b.WriteString(">")
	if s.has8BitMIME {
		b.WriteString(" BODY=8BITMIME")
	}
	if s.hasSize && size > 0 {
		b.WriteString(" SIZE=")
		b.WriteString(strconv.FormatInt(size, 10))
	}
	if utf8 {
		b.WriteString(" SMTPUTF8")
	}
	return b.String()
}

// rcptCommand is RCPT TO without parameters, as go-smtp's Client.Rcpt
// sends it with no options.
func rcptCommand(to string) string { return "RCPT TO:<" + to + ">" }

// simpleCommand sends a command outside a transaction (NOOP, QUIT) and
// checks that its reply has the code want.
func (s *Session) simpleCommand(verb string, want int, timeout time.Duration) error {
	s.queue(verb)
	r, err := s.readReply(timeout)
	if err != nil {
		return err
	}
	if r.code != want {
		return fmt.Errorf("%s answered %s", verb, r)
	}
	return nil
}
