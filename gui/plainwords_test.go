package gui

import (
	"strings"
	"testing"
)

func TestExplainDeliveryInPlainWords(t *testing.T) {
	for _, tc := range []struct {
		code       int
		text, want string
	}{
		{451, "451 4.7.1 Greylisted, please try again in 5 minutes", "greylisting"},
		{550, "550 5.1.1 <x@example.com>: Recipient address rejected: User unknown", "the recipient's address does not exist"},
		{552, "552 5.2.2 Mailbox full", "mailbox is full"},
		{550, "550 5.7.26 Unauthenticated email from example.org is not accepted due to domain's DMARC policy", "did not trust the sender's domain"},
		{554, "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org", "block list"},
		{0, "dial tcp 198.51.100.4:25: i/o timeout", "did not answer in time"},
		{0, "lookup nosuch.example: no such host", "has no mail server"},
		{0, "dial tcp 127.0.0.1:2526: connect: connection refused", "did not take the connection"},
		{535, "535 5.7.8 Username and Password not accepted", "refused the username or password"},
		{499, "499 something odd", "asked Postroom to try again later"},
		{599, "599 something odd", "refused the mail"},
	} {
		got := explainDelivery(tc.code, tc.text)
		if !strings.Contains(got, tc.want) {
			t.Errorf("explainDelivery(%d, %q) = %q, want it to say %q", tc.code, tc.text, got, tc.want)
		}
		if !strings.HasSuffix(got, "(The server said: "+tc.text+")") {
			t.Errorf("explainDelivery(%d, %q) = %q, want the server's words kept at the end", tc.code, tc.text, got)
		}
	}
}

func TestExplainRefusal(t *testing.T) {
	for text, want := range map[string]string{
		"192.0.2.7 refused at connect by blocked_networks":   "Postroom refused a connection from 192.0.2.7 because its computer is on the blocked networks list.",
		"192.0.2.7 refused at RCPT by blocked_recipients":    "Postroom refused mail from 192.0.2.7 because the recipient is on the blocked recipients list.",
		"192.0.2.7 refused at connection by max_connections": "Postroom refused a connection from 192.0.2.7 because too many programs were connected at once.",
		"192.0.2.7 refused at MAIL by something_new":         "Postroom refused mail from 192.0.2.7 because of the rule something_new.",
	} {
		if got := explainRefusal(text); got != want {
			t.Errorf("explainRefusal(%q) = %q, want %q", text, got, want)
		}
	}
}
