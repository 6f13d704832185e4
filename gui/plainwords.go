package gui

// Mail servers answer in codes ("451 4.7.1") and Go's network errors in
// system words ("connect: connection refused"); the owner of a small
// business reads neither. These functions say what happened and what to
// do about it, and keep the server's own words after it for whoever the
// owner asks for help.

import (
	"fmt"
	"strings"
)

// maxServerWords cuts a server's reply shown after the plain sentence.
const maxServerWords = 160

// deliveryTrouble is one kind of failed delivery, recognised by words in
// the error or by its enhanced status code.
type deliveryTrouble struct {
	clues []string // any of these, lower case, in "code text"
	words string
}

// deliveryTroubles (read-only) are tried in order; the first match wins,
// so the specific ones come before the general ones.
var deliveryTroubles = []deliveryTrouble{
	{[]string{"returned to the sender by the relay's administrator"},
		"someone returned it to its sender from the Queue tab"},
	{[]string{"queue lifetime", "expired", "gave up"},
		"Postroom kept trying for the whole time set under Settings > Delivery and then gave up"},
	{[]string{"greylist", "graylist", "4.7.1 please retry"},
		"the receiving server asked Postroom to try again later (greylisting); this is normal for a new sender and usually clears within an hour"},
	{[]string{"535", "5.7.8", "username and password not accepted", "authentication failed", "invalid credentials"},
		"your email provider refused the username or password; check them under Settings > Delivery (some providers need an app password)"},
	{[]string{"530 ", "5.7.0 authentication required", "must issue a starttls", "authentication required"},
		"your email provider wants a login; enter the username and password under Settings > Delivery"},
	{[]string{"5.7.26", "5.7.27", "dmarc", "spf", "dkim", "unauthenticated", "not authenticated", "sender authentication"},
		"the receiving server did not trust the sender's domain; publish the records shown under Settings > DKIM & DNS"},
	{[]string{"5.1.1", "5.1.0", "user unknown", "unknown user", "no such user", "does not exist", "recipient rejected", "address rejected", "mailbox unavailable", "invalid recipient", "no mailbox"},
		"the recipient's address does not exist; check its spelling"},
	{[]string{"5.2.2", "4.2.2", "mailbox full", "over quota", "quota exceeded", "insufficient storage"},
		"the recipient's mailbox is full"},
	{[]string{"5.3.4", "too large", "too big", "size limit", "exceeds"},
		"the message is larger than the receiving server accepts"},
	{[]string{"spam", "blocklist", "block list", "blacklist", "spamhaus", "listed", "reputation", "5.7.1", "policy"},
		"the receiving server refused the mail as possible spam, or because this computer's internet address is on a block list; sending through your email provider (Settings > Delivery) usually helps"},
	{[]string{"no such host", "nxdomain", "no mx", "null mx", "does not accept mail", "no mail server"},
		"the recipient's domain has no mail server; check the spelling of the address after the @"},
	{[]string{"network is unreachable", "no route to host"},
		"this computer could not reach the internet"},
	{[]string{"connection refused"},
		"the receiving mail server did not take the connection; it may be down"},
	{[]string{"i/o timeout", "deadline exceeded", "timed out", "timeout"},
		"the receiving mail server did not answer in time; many internet providers block outgoing port 25, and then sending through your email provider (Settings > Delivery) is the way"},
	{[]string{"certificate", "x509", "tls", "handshake"},
		"a secure connection to the receiving server could not be set up"},
	{[]string{"421", "too many", "rate", "busy", "4.7.0", "temporarily"},
		"the receiving server is busy or accepts mail only slowly from new senders; Postroom will try again"},
}

// explainDelivery says in plain words why delivery failed or was put
// off, followed by the server's own words.
func explainDelivery(code int, text string) string {
	text = strings.TrimSpace(text)
	words := deliveryWords(code, text)
	if text == "" {
		return words + "."
	}
	return words + ". (The server said: " + cut(text, maxServerWords) + ")"
}

// deliveryWords is explainDelivery's sentence alone, for a table cell.
func deliveryWords(code int, text string) string {
	hay := strings.ToLower(fmt.Sprint(code, " ", text))
	words := ""
	for _, t := range deliveryTroubles {
		for _, c := range t.clues {
			if strings.Contains(hay, c) {
				words = t.words
				break
			}
		}
		if words != "" {
			break
		}
	}
	if words == "" {
		switch {
		case code >= 500 || strings.HasPrefix(text, "5"):
			words = "the receiving server refused the mail"
		case code >= 400 || strings.HasPrefix(text, "4"):
			words = "the receiving server asked Postroom to try again later"
		default:
			words = "the delivery failed"
		}
	}
	return words
}

// refusalRules (read-only) say what refused an incoming message, by the
// rule name at the end of a refusal event ("... by blocked_senders").
var refusalRules = map[string]string{
	"blocked_networks":    "its computer is on the blocked networks list",
	"relay":               "its computer is not on the list of networks that may send, and it did not log in",
	"allowed_senders":     "the sender is not on the allowed senders list",
	"blocked_senders":     "the sender is on the blocked senders list",
	"allowed_recipients":  "the recipient is not on the allowed recipients list",
	"blocked_recipients":  "the recipient is on the blocked recipients list",
	"quota":               "the user has sent as many messages as their quota allows",
	"send_at":             "its Postroom-Send-At time was not usable",
	"mail_loop":           "it had passed through too many mail servers (a mail loop)",
	"strict_line_endings": "it had malformed line endings",
	"data_timeout":        "the sending program was too slow",
	"submission_auth":     "it came to the submission port without logging in",
	"address_syntax":      "an address in it was not valid",
	"max_connections":     "too many programs were connected at once",
	"auth_failures":       "of too many wrong passwords",
}

// explainRefusal turns "192.0.2.7 refused at MAIL by blocked_senders"
// into a sentence.
func explainRefusal(text string) string {
	before, rule, ok := strings.Cut(text, " by ")
	if !ok {
		return "Postroom refused mail: " + text
	}
	client, stage, _ := strings.Cut(before, " refused at ")
	why := refusalRules[rule]
	if why == "" {
		for name, w := range refusalRules {
			if strings.HasPrefix(rule, name) {
				why = w
			}
		}
	}
	if why == "" {
		why = "of the rule " + rule
	}
	what := "mail"
	if stage == "connect" || stage == "connection" {
		what = "a connection"
	}
	return fmt.Sprintf("Postroom refused %s from %s because %s.", what, client, why)
}

func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
