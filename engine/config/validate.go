package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"postroom/engine/addr"
	"postroom/engine/policy"
)

// Bounds that are not obvious from the key's meaning.
const (
	// minMessageBytes is the smallest max_message_bytes: below 1 KiB no
	// real message (headers alone) fits.
	minMessageBytes = 1024
	// maxMessageBytes keeps one message within SQLite's default limit for
	// a single value (SQLITE_MAX_LENGTH, 10^9 bytes).
	maxMessageBytes = 1_000_000_000
	// minLineLength is RFC 5321's line limit (4.5.3.1.6), which every
	// server must accept; lower would refuse compliant mail.
	minLineLength = 1000
	// maxLineLength bounds the buffer one client can make us hold.
	maxLineLength = 1 << 20
	// minInterval is the shortest scan interval, retry delay, timeout or
	// window: anything shorter is a typo ("1ms" for "1m") that would spin.
	minInterval = time.Second
)

// validator collects FieldErrors.
type validator struct {
	errs []FieldError
}

func (v *validator) add(key, value, reason string) {
	v.errs = append(v.errs, FieldError{Key: key, Value: value, Reason: reason})
}

func (v *validator) str(key, value, reason string) { v.add(key, quoteTOML(value), reason) }

func (v *validator) port(key string, port int, zeroOff bool) {
	switch {
	case zeroOff && port == 0:
	case port < 1 || port > 65535:
		reason := "must be a port number from 1 to 65535"
		if zeroOff {
			reason += ", or 0 for off"
		}
		v.add(key, strconv.Itoa(port), reason)
	}
}

func (v *validator) atLeast(key string, n, minimum int64, reason string) {
	if n < minimum {
		v.add(key, strconv.FormatInt(n, 10), reason)
	}
}

func (v *validator) duration(key string, d Duration, minimum time.Duration) bool {
	if d.Std() < minimum {
		v.add(key, quoteTOML(d.String()), fmt.Sprintf("must be at least %s", Duration(minimum)))
		return false
	}
	return true
}

func (v *validator) oneOf(key, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.str(key, value, "must be one of "+quoteList(allowed))
}

func (v *validator) text(key, value string) {
	if !utf8.ValidString(value) {
		v.add(key, strconv.QuoteToASCII(value), "is not valid UTF-8")
	}
}

// hostPort checks "host:port" with a host name or IP and a numeric port.
func (v *validator) hostPort(key, value string) {
	if err := checkHostPort(value); err != nil {
		v.str(key, value, err.Error())
	}
}

func checkHostPort(value string) error {
	host, port, err := net.SplitHostPort(value)
	if err != nil {
		return fmt.Errorf("must be host:port (an IPv6 address in brackets, as in [2001:db8::1]:25)")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return fmt.Errorf("port must be a number from 1 to 65535")
	}
	if host == "" {
		return fmt.Errorf("host is empty")
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if err := checkDomainName(host); err != nil {
		return fmt.Errorf("host is neither an IP address nor a domain name: %w", err)
	}
	return nil
}

// checkDomainName accepts a domain name (not an address literal).
func checkDomainName(s string) error {
	if strings.HasPrefix(s, "[") {
		return fmt.Errorf("an address literal is not a domain name")
	}
	_, err := addr.NormalizeDomain(s)
	return err
}

// Validate checks every value and returns nil or a *ValidationError naming
// each bad key and value.
func (s *Settings) Validate() error {
	v := &validator{}

	if err := checkDomainName(s.Hostname); err != nil {
		v.str("hostname", s.Hostname, "must be a domain name: "+err.Error())
	}

	s.Listen.validate(v)
	s.Access.validate(v)
	s.Limits.validate(v)
	s.Delivery.validate(v)

	if len(v.errs) == 0 {
		return nil
	}
	return &ValidationError{Errors: v.errs}
}

func (l *Listen) validate(v *validator) {
	if _, err := netip.ParseAddr(l.Address); err != nil {
		v.str("listen.address", l.Address, "must be an IP address (0.0.0.0 or :: for all)")
	}
	v.port("listen.port", l.Port, false)
	v.port("listen.submission_port", l.SubmissionPort, true)
	v.port("listen.tls_port", l.TLSPort, true)
	if l.SubmissionPort != 0 && l.SubmissionPort == l.Port {
		v.add("listen.submission_port", strconv.Itoa(l.SubmissionPort), "is the same as listen.port")
	}
	if l.TLSPort != 0 && (l.TLSPort == l.Port || l.TLSPort == l.SubmissionPort) {
		v.add("listen.tls_port", strconv.Itoa(l.TLSPort), "is the same as another listening port")
	}
	v.text("listen.tls_cert", l.TLSCert)
	v.text("listen.tls_key", l.TLSKey)
	switch {
	case l.TLSCert != "" && l.TLSKey == "":
		v.str("listen.tls_key", l.TLSKey, "must be set when listen.tls_cert is (both or neither)")
	case l.TLSCert == "" && l.TLSKey != "":
		v.str("listen.tls_cert", l.TLSCert, "must be set when listen.tls_key is (both or neither)")
	}
}

func (a *Access) validate(v *validator) {
	networks := func(name string, list []string) {
		for i, entry := range list {
			if _, err := policy.ParseNetwork(entry); err != nil {
				v.str(fmt.Sprintf("access.%s[%d]", name, i), entry, err.Error())
			}
		}
	}
	addresses := func(name string, list []string) {
		for i, entry := range list {
			if _, err := policy.ParseAddressEntry(entry); err != nil {
				v.str(fmt.Sprintf("access.%s[%d]", name, i), entry, err.Error())
			}
		}
	}
	networks(policy.ListTrustedNetworks, a.TrustedNetworks)
	networks(policy.ListBlockedNetworks, a.BlockedNetworks)
	addresses(policy.ListAllowedSenders, a.AllowedSenders)
	addresses(policy.ListBlockedSenders, a.BlockedSenders)
	addresses(policy.ListAllowedRecipients, a.AllowedRecipients)
	addresses(policy.ListBlockedRecipients, a.BlockedRecipients)
}

func (l *Limits) validate(v *validator) {
	if l.MaxMessageBytes < minMessageBytes || l.MaxMessageBytes > maxMessageBytes {
		v.add("limits.max_message_bytes", strconv.FormatInt(l.MaxMessageBytes, 10),
			fmt.Sprintf("must be from %d (1 KiB) to %d", minMessageBytes, maxMessageBytes))
	}
	v.atLeast("limits.max_recipients", int64(l.MaxRecipients), 1, "must be at least 1")
	v.atLeast("limits.max_connections", int64(l.MaxConnections), 1, "must be at least 1")
	if l.MaxConnectionsPerIP < 1 {
		v.add("limits.max_connections_per_ip", strconv.Itoa(l.MaxConnectionsPerIP), "must be at least 1")
	} else if l.MaxConnections >= 1 && l.MaxConnectionsPerIP > l.MaxConnections {
		v.add("limits.max_connections_per_ip", strconv.Itoa(l.MaxConnectionsPerIP), "must not exceed limits.max_connections")
	}
	v.duration("limits.idle_timeout", l.IdleTimeout, minInterval)
	v.atLeast("limits.rate_limit", int64(l.RateLimit), 0, "must be 0 (unlimited) or more")
	v.duration("limits.rate_window", l.RateWindow, minInterval)
	v.atLeast("limits.min_data_rate", int64(l.MinDataRate), 0, "must be 0 (off) or more bytes per second")
	if l.MaxLineLength < minLineLength || l.MaxLineLength > maxLineLength {
		v.add("limits.max_line_length", strconv.Itoa(l.MaxLineLength),
			fmt.Sprintf("must be from %d (RFC 5321) to %d", minLineLength, maxLineLength))
	}
	seen := map[string]int{}
	for i, d := range l.Destinations {
		key := fmt.Sprintf("limits.destinations[%d]", i)
		name := d.Domain
		if d.Domain != "*" {
			if err := checkDomainName(d.Domain); err != nil {
				v.str(key+".domain", d.Domain, `must be a domain name or "*": `+err.Error())
				name = ""
			} else {
				name, _ = addr.NormalizeDomain(d.Domain)
			}
		}
		if name != "" {
			if first, dup := seen[name]; dup {
				v.str(key+".domain", d.Domain, fmt.Sprintf("repeats limits.destinations[%d]", first))
			} else {
				seen[name] = i
			}
		}
		v.atLeast(key+".max_connections", int64(d.MaxConnections), 0, "must be 0 (no limit) or more")
		v.atLeast(key+".messages_per_minute", int64(d.MessagesPerMinute), 0, "must be 0 (no limit) or more")
	}
}

func (d *Delivery) validate(v *validator) {
	v.oneOf("delivery.mode", d.Mode, "mx", "smarthost")
	switch {
	case d.Smarthost != "":
		v.hostPort("delivery.smarthost", d.Smarthost)
	case d.Mode == "smarthost":
		v.str("delivery.smarthost", d.Smarthost, `must be set (host:port) when delivery.mode is "smarthost"`)
	}
	v.text("delivery.smarthost_username", d.SmarthostUsername)
	if !utf8.ValidString(d.SmarthostPassword) {
		v.add("delivery.smarthost_password", "(hidden)", "is not valid UTF-8")
	}
	if d.SmarthostPassword != "" && d.SmarthostUsername == "" {
		v.add("delivery.smarthost_password", "(hidden)", "is set but delivery.smarthost_username is empty")
	}
	v.oneOf("delivery.smarthost_tls", d.SmarthostTLS, "starttls", "tls", "none")
	v.oneOf("delivery.tls", d.TLS, "opportunistic", "required", "none")
	if d.SourceIP != "" {
		if _, err := netip.ParseAddr(d.SourceIP); err != nil {
			v.str("delivery.source_ip", d.SourceIP, `must be an IP address of this machine, or "" for any`)
		}
	}
	v.duration("delivery.queue_scan_interval", d.QueueScanInterval, minInterval)
	initialOK := v.duration("delivery.retry_initial", d.RetryInitial, minInterval)
	maxOK := v.duration("delivery.retry_max", d.RetryMax, minInterval)
	if initialOK && maxOK && d.RetryMax < d.RetryInitial {
		v.add("delivery.retry_max", quoteTOML(d.RetryMax.String()), "must not be shorter than delivery.retry_initial")
	}
	v.duration("delivery.queue_lifetime", d.QueueLifetime, minInterval)
	if d.KeepFinished != 0 {
		v.duration("delivery.keep_finished", d.KeepFinished, time.Hour)
	}
	v.duration("delivery.connect_timeout", d.ConnectTimeout, minInterval)
	if d.Resolver != "" {
		v.hostPort("delivery.resolver", d.Resolver)
	}
	v.atLeast("delivery.max_connections", int64(d.MaxConnections), 1, "must be at least 1")
	seen := map[string]int{}
	for i, r := range d.Routes {
		key := fmt.Sprintf("delivery.routes[%d]", i)
		if err := checkDomainName(r.Domain); err != nil {
			v.str(key+".domain", r.Domain, "must be a domain name: "+err.Error())
		} else {
			name, _ := addr.NormalizeDomain(r.Domain)
			if first, dup := seen[name]; dup {
				v.str(key+".domain", r.Domain, fmt.Sprintf("repeats delivery.routes[%d]", first))
			} else {
				seen[name] = i
			}
		}
		v.hostPort(key+".host", r.Host)
	}
}
