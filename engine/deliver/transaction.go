package deliver

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// send is Send without the bookkeeping: one mail transaction.
//
// With PIPELINING, [RSET,] MAIL, every RCPT and DATA go out in one write
// and their replies are read after it, in order; after DATA's 354 the
// content and the final "." go in the last write of the message (RFC 2920
// section 3.1). A message thus costs two writes and two reads of the
// socket, where one command at a time costs one of each per command.
// Without PIPELINING each command waits for the reply to the one before.
// The replies are judged the same way in both.
//
// A session from a Pool starts its first message with RSET under
// PIPELINING, instead of the NOOP the Pool sends to other servers: the
// reply to RSET, or its absence, shows whether the kept connection is
// still there before anything of the message counts.
func (s *Session) send(env Envelope) ([]RcptResult, *Error) {
	o := newOutcome(s.info.Host, env.To)
	needUTF8, ok := s.precheck(env, o)
	if !ok {
		return o.results, nil
	}
	var rcpts []int // indexes of the recipients that are sent
	for i, to := range env.To {
		if validAddress(to) {
			rcpts = append(rcpts, i)
		} else {
			o.set(reply{553, "5.1.3", "not sent: the recipient address is not valid"}, i)
		}
	}
	if len(rcpts) == 0 {
		return o.results, nil
	}

	d := dialogue{s: s, pipelined: s.pipelining}
	cmd := s.cfg.CommandTimeout
	reset := s.needReset || (d.pipelined && s.reused)
	mail := s.mailCommand(env.From, env.Size, needUTF8)
	if d.pipelined {
		if reset {
			s.queue("RSET")
		}
		s.queue(mail)
		for _, i := range rcpts {
			s.queue(rcptCommand(env.To[i]))
		}
		s.queue("DATA")
	}

	if reset {
		if e := s.reset(d); e != nil {
			return o.refused(), e
		}
	}

	r, err := d.ask(mail, cmd)
	if err != nil {
		return o.refused(), s.connErr("MAIL FROM", err, false)
	}
	s.needReset = true
	mailOK := r.positive(2)
	if !mailOK {
		if !r.refusal() {
			return o.refused(), s.protocolErr("MAIL FROM", r, false)
		}
		o.set(r, rcpts...)
		s.note421(r)
		if r.code == 421 || !d.pipelined {
			return o.results, nil
		}
		// The server has the RCPTs and DATA too and answers them; the
		// recipients keep MAIL's reply.
	}

	var accepted []int
	for k, i := range rcpts {
		r, err := d.ask(rcptCommand(env.To[i]), cmd)
		if err != nil {
			return o.refused(), s.connErr("RCPT TO", err, false)
		}
		switch {
		case !mailOK:
			if r.code == 421 {
				s.note421(r)
				return o.results, nil
			}
		case r.positive(2):
			accepted = append(accepted, i)
		case r.code == 421:
			// The server is closing: this and every recipient not
			// yet judged get its reply.
			o.set(r, slices.Concat(accepted, rcpts[k:])...)
			s.note421(r)
			return o.results, nil
		case r.refusal():
			o.set(r, i)
		default:
			return o.refused(), s.protocolErr("RCPT TO", r, false)
		}
	}

	ready := mailOK && len(accepted) > 0
	if !ready && !d.pipelined {
		return o.results, nil
	}
	r, err = d.ask("DATA", cmd)
	if err != nil {
		return o.refused(), s.connErr("DATA", err, false)
	}
	switch {
	case r.positive(3) && !ready:
		return o.results, s.endEmpty()
	case r.positive(3):
	case r.refusal():
		if ready {
			o.set(r, accepted...)
		}
		s.note421(r)
		return o.results, nil
	default:
		return o.refused(), s.protocolErr("DATA", r, false)
	}

	if err := writeMessage(s.wire, env.Body); err != nil {
		var be *bodyError
		if errors.As(err, &be) {
			// There is no way to abandon DATA but to drop the
			// connection; the server discards the partial message.
			return o.refused(), s.connErr("reading the message to send", be.err, false)
		}
		// The write that failed held the final ".", which therefore
		// did not reach the server whole.
		return o.refused(), s.connErr("sending the message", err, false)
	}
	// All of the message is out, its final "." included: from here on a
	// lost connection may hide a delivery.
	r, err = s.readReply(s.cfg.DataTimeout)
	if err != nil {
		return o.refused(), s.connErr("waiting for the reply to the end of the message", err, true)
	}
	s.needReset = false
	if !r.positive(2) && !r.refusal() {
		return o.refused(), s.protocolErr("the end of the message", r, true)
	}
	o.set(r, accepted...)
	s.note421(r)
	return o.results, nil
}

// precheck gives every recipient a permanent result, and ok false, when the
// message cannot go to this server as it is. needUTF8 says MAIL FROM must
// carry SMTPUTF8.
func (s *Session) precheck(env Envelope, o *outcome) (needUTF8, ok bool) {
	needUTF8 = env.SMTPUTF8 || !isASCII(env.From)
	for _, to := range env.To {
		needUTF8 = needUTF8 || !isASCII(to)
	}
	all := make([]int, len(env.To))
	for i := range all {
		all[i] = i
	}
	switch {
	case !validAddress(env.From):
		o.set(reply{553, "5.1.7", "not sent: the sender address is not valid"}, all...)
	case env.EightBit && !s.has8BitMIME:
		o.set(reply{554, "5.6.3", fmt.Sprintf("not sent: %s does not support 8BITMIME and the message has 8-bit content (no conversion is done)", s.info.Host)}, all...)
	case needUTF8 && !s.hasSMTPUTF8:
		o.set(reply{553, "5.6.7", fmt.Sprintf("not sent: %s does not support SMTPUTF8, which the message or its addresses need", s.info.Host)}, all...)
	default:
		return needUTF8, true
	}
	return needUTF8, false
}

// reset reads the reply to RSET (sending RSET first without pipelining).
// Any failure, a 421 included, is the session's: on a kept connection it
// is how a connection the next hop dropped while idle shows, and nothing
// of the message has counted yet.
func (s *Session) reset(d dialogue) *Error {
	timeout := s.cfg.CommandTimeout
	if s.reused {
		timeout = min(timeout, checkTimeout)
	}
	r, err := d.ask("RSET", timeout)
	if err != nil {
		return s.connErr("RSET", err, false)
	}
	if !r.positive(2) {
		return &Error{Host: s.where, Code: r.code, Enhanced: r.enhanced, Err: fmt.Errorf("RSET answered %s", r)}
	}
	s.needReset = false
	return nil
}

// endEmpty ends a DATA the server took without any recipient accepted, as
// a server that answers DATA before it judges the recipients does:
// RFC 2920 section 3.1 has the client send a lone "." then, and the reply
// to it does not matter. The transaction stays open for the next RSET.
func (s *Session) endEmpty() *Error {
	s.queue(".")
	if _, err := s.readReply(s.cfg.DataTimeout); err != nil {
		return s.connErr("ending a DATA that had no recipient", err, false)
	}
	return nil
}

// connErr is a failure of the connection while doing what.
func (s *Session) connErr(what string, err error, duplicate bool) *Error {
	return &Error{Host: s.where, Err: fmt.Errorf("%s: %w", what, err), DuplicatePossible: duplicate}
}

// protocolErr is a reply of the wrong kind for what was asked (a 354 to
// MAIL, a 250 to DATA): the server and we no longer agree on where the
// dialogue is.
func (s *Session) protocolErr(what string, r reply, duplicate bool) *Error {
	return &Error{Host: s.where, Code: r.code, Enhanced: r.enhanced,
		Err: fmt.Errorf("%s: unexpected reply %s", what, r), DuplicatePossible: duplicate}
}

// dialogue sends a transaction's commands either as one pipelined group,
// queued before the first reply is read, or one at a time.
type dialogue struct {
	s         *Session
	pipelined bool
}

// ask sends line, unless it is already queued as part of the pipelined
// group, and reads the next reply.
func (d dialogue) ask(line string, timeout time.Duration) (reply, error) {
	if !d.pipelined {
		d.s.queue(line)
	}
	return d.s.readReply(timeout)
}

// outcome is one message's per-recipient results, filled in as the
// replies come.
type outcome struct {
	results []RcptResult
	judged  []bool
}

func newOutcome(host string, to []string) *outcome {
	o := &outcome{results: make([]RcptResult, len(to)), judged: make([]bool, len(to))}
	for i, rcpt := range to {
		o.results[i] = RcptResult{Rcpt: rcpt, Host: host}
	}
	return o
}

// set gives reply r to the recipients at the indexes which.
func (o *outcome) set(r reply, which ...int) {
	for _, i := range which {
		res := &o.results[i]
		res.Code, res.Enhanced, res.Text = r.code, r.enhanced, r.text
		res.Permanent = r.code >= 500 && r.code < 600
		o.judged[i] = true
	}
}

// refused returns the results of the recipients refused so far, for the
// error path of Send.
func (o *outcome) refused() []RcptResult {
	var out []RcptResult
	for i, r := range o.results {
		if o.judged[i] && !r.Delivered() {
			out = append(out, r)
		}
	}
	return out
}
