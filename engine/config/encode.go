package config

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Encode writes the complete settings document: every key, in DESIGN.md's
// order, with a short comment on each, durations as strings ("5d"). It is
// what `postroom config export` prints, so a user can edit it and import it
// again: Parse(Encode(s)) equals s for any valid s. It is written by hand
// rather than with toml.Encoder to control order and comments.
func (s Settings) Encode() ([]byte, error) {
	w := &tomlWriter{}
	w.comment("Postroom settings. Keys left out take their defaults. Durations are Go")
	w.comment(`duration strings plus "d" for days ("30s", "5m", "4h", "5d").`)
	w.blank()
	w.str("hostname", s.Hostname, "EHLO name and the name in Received headers")

	l := s.Listen
	w.table("listen")
	w.str("address", l.Address, "")
	w.int("port", int64(l.Port), "plain SMTP with STARTTLS")
	w.int("submission_port", int64(l.SubmissionPort), "587 with STARTTLS + AUTH when > 0")
	w.int("tls_port", int64(l.TLSPort), "465 implicit TLS when > 0")
	w.str("tls_cert", l.TLSCert, "PEM paths; empty = a generated self-signed certificate")
	w.str("tls_key", l.TLSKey, "")
	w.bool("auth_without_tls", l.AuthWithoutTLS, "allow AUTH without TLS on loopback connections")

	a := s.Access
	w.table("access")
	w.list("trusted_networks", a.TrustedNetworks, "may relay without AUTH")
	w.list("blocked_networks", a.BlockedNetworks, "refused at connect")
	w.list("allowed_senders", a.AllowedSenders, `"user@example.com", "example.com", ".example.com" (subdomains); empty = any`)
	w.list("blocked_senders", a.BlockedSenders, "")
	w.list("allowed_recipients", a.AllowedRecipients, "empty = any; never grants relaying")
	w.list("blocked_recipients", a.BlockedRecipients, "a block always wins over an allow")

	m := s.Limits
	w.table("limits")
	w.int("max_message_bytes", m.MaxMessageBytes, "advertised in SIZE, enforced while reading DATA")
	w.int("max_recipients", int64(m.MaxRecipients), "")
	w.int("max_connections", int64(m.MaxConnections), "")
	w.int("max_connections_per_ip", int64(m.MaxConnectionsPerIP), "")
	w.str("idle_timeout", m.IdleTimeout.String(), "a silent client is disconnected")
	w.int("rate_limit", int64(m.RateLimit), "messages sent per rate_window, 0 = unlimited")
	w.str("rate_window", m.RateWindow.String(), "")
	w.bool("strict_line_endings", m.StrictLineEndings, "refuse bare CR/LF in DATA instead of repairing")
	w.int("min_data_rate", int64(m.MinDataRate), "bytes/second a client must average in DATA, 0 = off")
	w.int("max_line_length", int64(m.MaxLineLength), "")
	for _, d := range m.Destinations {
		w.arrayTable("limits.destinations", `per recipient domain; "*" = every other domain; 0 = no limit`)
		w.str("domain", d.Domain, "")
		w.int("max_connections", int64(d.MaxConnections), "")
		w.int("messages_per_minute", int64(d.MessagesPerMinute), "")
	}

	d := s.Delivery
	w.table("delivery")
	w.str("mode", d.Mode, `"mx" (direct to recipients' MX) or "smarthost"`)
	w.str("smarthost", d.Smarthost, "host:port")
	w.str("smarthost_username", d.SmarthostUsername, "")
	w.str("smarthost_password", d.SmarthostPassword, "")
	w.str("smarthost_tls", d.SmarthostTLS, `"starttls" | "tls" | "none"`)
	w.str("tls", d.TLS, `outbound to MX: "opportunistic" | "required" | "none"`)
	w.str("source_ip", d.SourceIP, "bind outbound connections to this local address")
	w.str("queue_scan_interval", d.QueueScanInterval.String(), "how often the queue is checked for due mail")
	w.str("retry_initial", d.RetryInitial.String(), "first retry delay; grows with jitter up to retry_max")
	w.str("retry_max", d.RetryMax.String(), "")
	w.str("queue_lifetime", d.QueueLifetime.String(), "then the sender gets a bounce (DSN)")
	w.str("keep_finished", d.KeepFinished.String(), `sent and returned mail is removed after this; "0s" keeps it`)
	w.str("connect_timeout", d.ConnectTimeout.String(), "")
	w.str("resolver", d.Resolver, `"" = system resolver; "host:port" = that DNS server`)
	w.int("max_connections", int64(d.MaxConnections), "concurrent outbound connections overall")
	for _, r := range d.Routes {
		w.arrayTable("delivery.routes", "per-domain next hop, before MX lookup")
		w.str("domain", r.Domain, "")
		w.str("host", r.Host, "")
	}

	if w.err != nil {
		return nil, w.err
	}
	return []byte(w.b.String()), nil
}

// tomlWriter writes TOML lines with aligned trailing comments.
type tomlWriter struct {
	b   strings.Builder
	err error
}

// commentColumn is where trailing comments start, as in DESIGN.md.
const commentColumn = 38

func (w *tomlWriter) blank() { w.b.WriteByte('\n') }

func (w *tomlWriter) comment(text string) {
	w.b.WriteString("# " + text + "\n")
}

func (w *tomlWriter) table(name string) {
	w.blank()
	w.b.WriteString("[" + name + "]\n")
}

func (w *tomlWriter) arrayTable(name, comment string) {
	w.blank()
	w.line("[["+name+"]]", comment)
}

func (w *tomlWriter) line(text, comment string) {
	w.b.WriteString(text)
	if comment != "" {
		if pad := commentColumn - utf8.RuneCountInString(text); pad > 0 {
			w.b.WriteString(strings.Repeat(" ", pad))
		} else {
			w.b.WriteByte(' ')
		}
		w.b.WriteString("# " + comment)
	}
	w.b.WriteByte('\n')
}

func (w *tomlWriter) str(key, value, comment string) {
	if !utf8.ValidString(value) && w.err == nil {
		w.err = fmt.Errorf("settings: %s is not valid UTF-8", key)
	}
	w.line(key+" = "+quoteTOML(value), comment)
}

func (w *tomlWriter) int(key string, value int64, comment string) {
	w.line(key+" = "+strconv.FormatInt(value, 10), comment)
}

func (w *tomlWriter) bool(key string, value bool, comment string) {
	w.line(key+" = "+strconv.FormatBool(value), comment)
}

func (w *tomlWriter) list(key string, values []string, comment string) {
	quoted := make([]string, len(values))
	for i, v := range values {
		if !utf8.ValidString(v) && w.err == nil {
			w.err = fmt.Errorf("settings: %s[%d] is not valid UTF-8", key, i)
		}
		quoted[i] = quoteTOML(v)
	}
	w.line(key+" = ["+strings.Join(quoted, ", ")+"]", comment)
}

// quoteTOML writes s as a TOML basic string. Control characters are
// escaped (TOML forbids them raw), so the result is also safe to show in
// an error message. Invalid UTF-8 is written as U+FFFD; Encode refuses it
// before that matters.
func quoteTOML(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

func quoteList(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = quoteTOML(v)
	}
	return strings.Join(quoted, ", ")
}
