package engine

import (
	"context"
	"fmt"
	"strings"

	"postroom/engine/dsn"
	"postroom/engine/msgdata"
	"postroom/storage"
)

// maxOriginalHeader caps how much of the original header a DSN carries.
const maxOriginalHeader = 64 << 10

// buildDSN writes the RFC 3464 report for one message's failed recipients.
func (e *Engine) buildDSN(ctx context.Context, ob storage.OwedBounce) ([]byte, error) {
	s := e.Settings()
	var header []byte
	if body, err := e.store.OpenBody(ctx, ob.Message.ID); err == nil {
		header, err = msgdata.SplitHeader(body, maxOriginalHeader)
		body.Close()
		if err != nil {
			// A truncated header is still worth returning; anything else
			// leaves the report without it rather than without a report.
			e.log.Warn("reading the original header for a bounce", "id", ob.Message.ID, "err", err)
		}
	}
	now := e.now()
	lifetime := s.Delivery.QueueLifetime.String()
	report := dsn.Report{
		ReportingMTA:    s.Hostname,
		From:            "MAILER-DAEMON@" + s.Hostname,
		To:              ob.Message.Sender,
		QueueID:         fmt.Sprint(ob.Message.ID),
		ArrivalDate:     ob.Message.ReceivedAt,
		Date:            now,
		MessageID:       fmt.Sprintf("<dsn.%d.%d@%s>", ob.Message.ID, now.UnixNano(), s.Hostname),
		OriginalHeaders: header,
	}
	for _, r := range ob.Recipients {
		rec := dsn.Recipient{
			Address:     r.Address,
			Action:      "failed",
			Status:      statusOf(r),
			RemoteMTA:   r.Host,
			LastAttempt: r.At,
		}
		if r.Code > 0 {
			rec.Diagnostic = fmt.Sprintf("%d %s", r.Code, r.Text)
		}
		switch {
		case r.State == storage.Expired:
			rec.Reason = "The message could not be delivered within " + lifetime + ". Last error: " + r.Text
		case r.Code == 0 && r.Text != "":
			rec.Reason = r.Text
		case r.Code == 0:
			rec.Reason = "The message was returned by the relay's administrator."
		default:
			rec.Reason = "The recipient's mail server refused the message."
		}
		report.Recipients = append(report.Recipients, rec)
	}
	return dsn.Build(report)
}

// statusOf is the RFC 3463 status for a failed recipient: the enhanced code
// the remote server gave, else a general one for the kind of failure.
func statusOf(r storage.OwedRecipient) string {
	if fields := strings.Fields(r.Text); len(fields) > 0 && isEnhancedCode(fields[0]) && fields[0][0] == '5' {
		return fields[0]
	}
	if r.State == storage.Expired {
		return "4.4.7" // delivery time expired
	}
	return "5.0.0"
}

func isEnhancedCode(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}
