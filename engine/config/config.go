// Package config owns Postroom's settings document: its Go types, the
// defaults, strict TOML decoding, validation that names the bad key and
// value, and a complete TOML export that decodes back to the same settings.
//
// The document's keys are fixed by DESIGN.md ("Settings file"); users script
// `postroom config export` / `import` against them, so renaming a key here
// is a breaking change.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"postroom/engine/addr"
)

// Settings is the whole settings document.
type Settings struct {
	// Hostname is the EHLO name and the name in Received headers.
	Hostname string   `toml:"hostname"`
	Listen   Listen   `toml:"listen"`
	Access   Access   `toml:"access"`
	Limits   Limits   `toml:"limits"`
	Delivery Delivery `toml:"delivery"`
}

// Listen is the [listen] table: where the SMTP server accepts mail.
type Listen struct {
	Address string `toml:"address"`
	// Port is the plain SMTP port (STARTTLS offered).
	Port int `toml:"port"`
	// SubmissionPort is 587-style submission with STARTTLS and AUTH; 0 = off.
	SubmissionPort int `toml:"submission_port"`
	// TLSPort is 465-style implicit TLS; 0 = off.
	TLSPort int `toml:"tls_port"`
	// TLSCert and TLSKey are PEM file paths; both empty means a generated
	// self-signed certificate.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// AuthWithoutTLS offers AUTH on plain-text connections from loopback
	// addresses, where nobody can listen in (used by tests and local apps).
	AuthWithoutTLS bool `toml:"auth_without_tls"`
}

// Access is the [access] table; engine/policy gives the lists meaning.
type Access struct {
	TrustedNetworks   []string `toml:"trusted_networks"`
	BlockedNetworks   []string `toml:"blocked_networks"`
	AllowedSenders    []string `toml:"allowed_senders"`
	BlockedSenders    []string `toml:"blocked_senders"`
	AllowedRecipients []string `toml:"allowed_recipients"`
	BlockedRecipients []string `toml:"blocked_recipients"`
}

// Limits is the [limits] table: what one client or the whole server may use.
type Limits struct {
	MaxMessageBytes     int64    `toml:"max_message_bytes"`
	MaxRecipients       int      `toml:"max_recipients"`
	MaxConnections      int      `toml:"max_connections"`
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"`
	IdleTimeout         Duration `toml:"idle_timeout"`
	// RateLimit is messages sent per RateWindow; 0 = unlimited. Excess mail
	// waits in the queue rather than being refused.
	RateLimit  int      `toml:"rate_limit"`
	RateWindow Duration `toml:"rate_window"`
	// StrictLineEndings refuses DATA with bare CR or LF (SMTP smuggling
	// defence) instead of repairing them to CRLF.
	StrictLineEndings bool `toml:"strict_line_endings"`
	// MinDataRate is the average bytes per second a client must keep up
	// during DATA, so a slow-drip client cannot hold a connection; 0 = off.
	MinDataRate int `toml:"min_data_rate"`
	// MaxLineLength is the longest line accepted, CRLF included.
	MaxLineLength int `toml:"max_line_length"`
	// Destinations limits outbound traffic per recipient domain.
	Destinations []DestinationLimit `toml:"destinations"`
}

// DestinationLimit is one [[limits.destinations]] entry.
type DestinationLimit struct {
	// Domain is a recipient domain, or "*" for every domain without an
	// entry of its own.
	Domain string `toml:"domain"`
	// MaxConnections is concurrent outbound connections; 0 = no limit.
	MaxConnections int `toml:"max_connections"`
	// MessagesPerMinute is messages sent per minute; 0 = no limit.
	MessagesPerMinute int `toml:"messages_per_minute"`
}

// Delivery is the [delivery] table: how queued mail leaves.
type Delivery struct {
	// Mode is "mx" (direct to the recipients' MX) or "smarthost".
	Mode              string `toml:"mode"`
	Smarthost         string `toml:"smarthost"`
	SmarthostUsername string `toml:"smarthost_username"`
	SmarthostPassword string `toml:"smarthost_password"`
	// SmarthostTLS is "starttls", "tls" or "none".
	SmarthostTLS string `toml:"smarthost_tls"`
	// TLS is the outbound policy towards MX hosts: "opportunistic",
	// "required" or "none".
	TLS string `toml:"tls"`
	// SourceIP binds outbound connections to this local address; "" = any.
	SourceIP          string   `toml:"source_ip"`
	QueueScanInterval Duration `toml:"queue_scan_interval"`
	RetryInitial      Duration `toml:"retry_initial"`
	RetryMax          Duration `toml:"retry_max"`
	QueueLifetime     Duration `toml:"queue_lifetime"`
	// KeepFinished is how long sent, bounced and expired mail stays in the
	// queue listing (and on disk) before it is removed; 0 keeps it.
	KeepFinished   Duration `toml:"keep_finished"`
	ConnectTimeout Duration `toml:"connect_timeout"`
	// Resolver is "" for the system resolver or "host:port" of a DNS server.
	Resolver string `toml:"resolver"`
	// MaxConnections is concurrent outbound connections overall.
	MaxConnections int `toml:"max_connections"`
	// Routes are per-domain next hops, used before any MX lookup.
	Routes []Route `toml:"routes"`
}

// Route is one [[delivery.routes]] entry.
type Route struct {
	Domain string `toml:"domain"`
	// Host is the next hop as "host:port".
	Host string `toml:"host"`
}

// DefaultHostname is the hostname Default uses, so that defaults do not
// depend on the machine they are computed on.
const DefaultHostname = "localhost"

// Default returns the settings in effect when the file says nothing. The
// hostname is "localhost" so the result does not depend on the machine;
// the caller sets the real name (see SystemHostname). Every call returns
// fresh slices, so callers may modify the result.
func Default() Settings {
	return Settings{
		Hostname: DefaultHostname,
		Listen: Listen{
			Address: "0.0.0.0",
			Port:    25,
		},
		Access: Access{
			TrustedNetworks: []string{"127.0.0.0/8", "::1/128"},
		},
		Limits: Limits{
			MaxMessageBytes:     26214400,
			MaxRecipients:       100,
			MaxConnections:      200,
			MaxConnectionsPerIP: 20,
			IdleTimeout:         Duration(5 * time.Minute),
			RateLimit:           0,
			RateWindow:          Duration(time.Hour),
			StrictLineEndings:   false,
			MinDataRate:         1024,
			MaxLineLength:       1000,
		},
		Delivery: Delivery{
			Mode:              "mx",
			SmarthostTLS:      "starttls",
			TLS:               "opportunistic",
			QueueScanInterval: Duration(time.Minute),
			RetryInitial:      Duration(5 * time.Minute),
			RetryMax:          Duration(4 * time.Hour),
			QueueLifetime:     Duration(5 * day),
			KeepFinished:      Duration(7 * day),
			ConnectTimeout:    Duration(30 * time.Second),
			MaxConnections:    20,
		},
	}
}

// SystemHostname returns the machine's host name when it is a usable EHLO
// name, and "localhost" otherwise.
func SystemHostname() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		return DefaultHostname
	}
	if _, err := addr.NormalizeDomain(name); err != nil || strings.HasPrefix(name, "[") {
		return DefaultHostname
	}
	return name
}

// Parse reads a settings document. Keys it leaves out keep their defaults;
// an unknown key, a type mismatch or an invalid value is an error. Value
// problems and unknown keys come as a *ValidationError listing each one.
func Parse(data []byte) (Settings, error) {
	s := Default()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&s)
	if err != nil {
		return Settings{}, fmt.Errorf("settings: %w", err)
	}
	if err := checkKeys(md); err != nil {
		return Settings{}, err
	}
	s.normalize()
	if err := s.Validate(); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// checkKeys refuses keys the document does not define. MetaData.Undecoded
// catches most; the decoder also matches struct fields case-insensitively,
// so "Port" would silently set listen.port: the known-key set catches that,
// because a file that only works by accident breaks on the next export.
func checkKeys(md toml.MetaData) error {
	known := knownKeys()
	seen := map[string]bool{}
	var errs []FieldError
	report := func(k toml.Key) {
		name := k.String()
		if seen[name] {
			return
		}
		seen[name] = true
		errs = append(errs, FieldError{Key: name, Reason: "unknown key"})
	}
	for _, k := range md.Undecoded() {
		report(k)
	}
	for _, k := range md.Keys() {
		if !known[k.String()] {
			report(k)
		}
	}
	if len(errs) > 0 {
		return &ValidationError{Errors: errs}
	}
	return nil
}

// knownKeys lists every key path of the document ("listen.port",
// "delivery.routes.host"), from the toml tags so it cannot drift from the
// types.
func knownKeys() map[string]bool {
	keys := map[string]bool{}
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := prefix + f.Tag.Get("toml")
			keys[name] = true
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				walk(name+".", ft)
			}
		}
	}
	walk("", reflect.TypeFor[Settings]())
	return keys
}

// normalize turns empty lists into nil, so that a decoded `[]` and an
// absent list compare equal and Parse(Encode(s)) == s.
func (s *Settings) normalize() {
	for _, l := range []*[]string{
		&s.Access.TrustedNetworks, &s.Access.BlockedNetworks,
		&s.Access.AllowedSenders, &s.Access.BlockedSenders,
		&s.Access.AllowedRecipients, &s.Access.BlockedRecipients,
	} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if len(s.Limits.Destinations) == 0 {
		s.Limits.Destinations = nil
	}
	if len(s.Delivery.Routes) == 0 {
		s.Delivery.Routes = nil
	}
}

// Equal reports whether s and o are the same settings; an empty list and
// a nil one are the same.
func (s Settings) Equal(o Settings) bool {
	a, b := s.clone(), o.clone()
	a.normalize()
	b.normalize()
	return reflect.DeepEqual(a, b)
}

// clone copies s deeply enough that normalize cannot touch the original.
func (s Settings) clone() Settings {
	c := s
	c.Access.TrustedNetworks = cloneSlice(s.Access.TrustedNetworks)
	c.Access.BlockedNetworks = cloneSlice(s.Access.BlockedNetworks)
	c.Access.AllowedSenders = cloneSlice(s.Access.AllowedSenders)
	c.Access.BlockedSenders = cloneSlice(s.Access.BlockedSenders)
	c.Access.AllowedRecipients = cloneSlice(s.Access.AllowedRecipients)
	c.Access.BlockedRecipients = cloneSlice(s.Access.BlockedRecipients)
	c.Limits.Destinations = cloneSlice(s.Limits.Destinations)
	c.Delivery.Routes = cloneSlice(s.Delivery.Routes)
	return c
}

func cloneSlice[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append([]T(nil), s...)
}

// FieldError is one invalid value.
type FieldError struct {
	// Key is the dotted key: "listen.port", "delivery.routes[1].host",
	// "access.blocked_senders[2]" (indices count from 0).
	Key string
	// Value is the bad value as TOML would write it ("70000", `"abc"`),
	// "" for an unknown key, "(hidden)" for a password.
	Value string
	// Reason says what is wrong, for a person.
	Reason string
}

// String writes "key = value: reason".
func (e FieldError) String() string {
	if e.Value == "" {
		return e.Key + ": " + e.Reason
	}
	return e.Key + " = " + e.Value + ": " + e.Reason
}

// ValidationError lists every problem found in a settings document.
type ValidationError struct {
	Errors []FieldError
}

// Error lists the problems one per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.String()
	}
	return strings.Join(lines, "\n")
}

// Keys returns the keys with problems, sorted: handy for a GUI that marks
// fields and for tests.
func (e *ValidationError) Keys() []string {
	keys := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		keys[i] = fe.Key
	}
	sort.Strings(keys)
	return keys
}

// AsValidationError returns err's *ValidationError, if it has one.
func AsValidationError(err error) (*ValidationError, bool) {
	var ve *ValidationError
	ok := errors.As(err, &ve)
	return ve, ok
}
