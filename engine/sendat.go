package engine

// Scheduled sending: an application asks for a later delivery with a
// "Postroom-Send-At:" header field holding an RFC 5322 date. Intake takes
// the field out of the message on its way to the spool (the recipients
// never see it) and stores the time as the message's NotBefore: its
// recipients wait in state "scheduled", the scheduler wakes for them
// without polling (NextDue sees their time), the limits apply when they
// become due, and the queue lifetime counts from that time (Due.Start).
//
// A time in the past means now. A time beyond the queue lifetime is
// refused, as `postroom queue schedule` refuses it: mail the relay would
// not try to deliver for that long is better refused while the application
// can still tell its user.
//
// The SMTP FUTURERELEASE extension (RFC 4865, HOLDFOR/HOLDUNTIL on MAIL
// FROM) is not offered: go-smtp v0.25.1 builds the EHLO keyword list
// itself, with no way to add one, and answers any MAIL parameter it does
// not know with "500 5.5.4 Unknown MAIL FROM argument" before the session
// is called (conn.go handleMail), so the parameters never reach us.

import (
	"fmt"
	"net/mail"
	"time"

	"github.com/emersion/go-smtp"

	"postroom/engine/msgdata"
)

// sendAtField is the header field that asks for a later delivery.
const sendAtField = "Postroom-Send-At"

// notBefore turns the Postroom-Send-At field taken out of the message
// into its NotBefore (zero: at once), or the refusal of the message.
func (s *session) notBefore(f *msgdata.FieldFilter, now time.Time, lifetime time.Duration) (time.Time, *smtp.SMTPError) {
	at, refusal := sendAtTime(f.Values(), f.Truncated(), now, lifetime)
	if refusal != nil {
		s.e.refused("send_at", s.ip, "DATA", refusal.Message)
		return time.Time{}, refusal
	}
	return at, nil
}

// sendAtTime is notBefore's decision, without the session.
func sendAtTime(values []string, truncated bool, now time.Time, lifetime time.Duration) (time.Time, *smtp.SMTPError) {
	switch {
	case len(values) == 0:
		return time.Time{}, nil
	case len(values) > 1:
		return time.Time{}, smtpErr(550, smtp.EnhancedCode{5, 6, 0}, "More than one "+sendAtField+" field: say once when to send")
	}
	at, err := mail.ParseDate(values[0])
	if err != nil || truncated {
		return time.Time{}, smtpErr(550, smtp.EnhancedCode{5, 6, 0},
			sendAtField+" is not an RFC 5322 date such as \"Mon, 07 Dec 2026 09:00:00 +0100\"")
	}
	if !at.After(now) {
		return time.Time{}, nil // the past means now
	}
	if lifetime > 0 && at.After(now.Add(lifetime)) {
		return time.Time{}, smtpErr(550, smtp.EnhancedCode{5, 7, 0}, fmt.Sprintf(
			"%s %s is beyond the queue lifetime: the message would expire before it is sent", sendAtField, at.UTC().Format(time.RFC3339)))
	}
	return at, nil
}
