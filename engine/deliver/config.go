// Package deliver is the outbound SMTP side of the relay: it turns a
// recipient domain into an ordered list of next hops (static routes, the
// smarthost, or MX records), opens one SMTP session to the first next hop
// that answers (STARTTLS and AUTH according to the settings), and sends
// messages over it, judging every recipient on its own reply.
//
// It knows nothing about the queue or the database: the scheduler claims due
// recipients, groups them by Route.Key, calls Dial once per group and Send
// once per message, and records what comes back. Every failure says whether
// it is permanent (bounce) or temporary (defer); anything not known to be
// permanent is temporary.
package deliver

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"time"
)

// Resolver is what delivery needs from DNS; *net.Resolver satisfies it.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// NewResolver returns the system resolver when server is "", else a
// resolver that sends every query to server ("host:port"; port 53 when
// left out), for sites whose system resolver does not see the public DNS.
func NewResolver(server string) Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
	}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			// The Go resolver picks "udp" and retries over "tcp" when the
			// answer is truncated; both go to the configured server.
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}
}

// TLSMode is the TLS policy for delivery to MX hosts and static routes
// (settings key delivery.tls). The zero value is TLSOpportunistic.
type TLSMode int

const (
	// TLSOpportunistic uses STARTTLS when offered without requiring the
	// certificate to verify (most MX certificates do not match, RFC 7435),
	// and falls back to a new plain-text connection when the handshake
	// fails, as Postfix does. Whether the certificate verified is reported.
	TLSOpportunistic TLSMode = iota
	// TLSRequired needs STARTTLS and a certificate valid for the MX host
	// name; otherwise the next hop is skipped and mail defers.
	TLSRequired
	// TLSNone never sends STARTTLS.
	TLSNone
)

// String returns the settings-file spelling of m.
func (m TLSMode) String() string {
	switch m {
	case TLSOpportunistic:
		return "opportunistic"
	case TLSRequired:
		return "required"
	case TLSNone:
		return "none"
	}
	return fmt.Sprintf("TLSMode(%d)", int(m))
}

// ParseTLSMode reads the settings-file spelling of a TLSMode.
func ParseTLSMode(s string) (TLSMode, error) {
	for _, m := range []TLSMode{TLSOpportunistic, TLSRequired, TLSNone} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown TLS mode %q (want opportunistic, required or none)", s)
}

// SmarthostTLS is the TLS policy towards the smarthost (settings key
// delivery.smarthost_tls). The zero value is SmarthostSTARTTLS. In both TLS
// modes the certificate must verify for the smarthost's host name, and AUTH
// is only ever sent once TLS is up.
type SmarthostTLS int

const (
	// SmarthostSTARTTLS requires STARTTLS (usually port 587).
	SmarthostSTARTTLS SmarthostTLS = iota
	// SmarthostImplicitTLS starts TLS on connect (usually port 465).
	SmarthostImplicitTLS
	// SmarthostNone is plain text; AUTH then sends the password in clear,
	// which the user chose knowingly.
	SmarthostNone
)

// String returns the settings-file spelling of m.
func (m SmarthostTLS) String() string {
	switch m {
	case SmarthostSTARTTLS:
		return "starttls"
	case SmarthostImplicitTLS:
		return "tls"
	case SmarthostNone:
		return "none"
	}
	return fmt.Sprintf("SmarthostTLS(%d)", int(m))
}

// ParseSmarthostTLS reads the settings-file spelling of a SmarthostTLS.
func ParseSmarthostTLS(s string) (SmarthostTLS, error) {
	for _, m := range []SmarthostTLS{SmarthostSTARTTLS, SmarthostImplicitTLS, SmarthostNone} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown smarthost TLS mode %q (want starttls, tls or none)", s)
}

// Defaults used for zero Config fields.
const (
	DefaultConnectTimeout = 30 * time.Second
	// DefaultCommandTimeout is RFC 5321's 5 minutes (section 4.5.3.2).
	DefaultCommandTimeout = 5 * time.Minute
	// DefaultDataTimeout is RFC 5321's 10 minutes for the reply to the
	// final ".", during which the server may be scanning the message.
	DefaultDataTimeout = 10 * time.Minute
	DefaultPort        = 25
)

// Config is how to deliver. The zero value of every field but HeloName
// has a sensible default; a Config is not modified by this package and may be
// shared by concurrent sessions.
type Config struct {
	// HeloName is our host name for EHLO ("localhost" when empty, which
	// many servers frown upon).
	HeloName string
	// SourceIP binds outbound connections to this local address when
	// non-empty; next-hop addresses of the other IP family are skipped.
	SourceIP string
	// ConnectTimeout bounds each TCP connect (DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// CommandTimeout bounds each SMTP command's reply, the greeting, the
	// TLS handshake, and each write of message data (DefaultCommandTimeout).
	CommandTimeout time.Duration
	// DataTimeout bounds the reply to the final "." (DefaultDataTimeout).
	DataTimeout time.Duration
	// TLS is the policy for MX hosts and static routes.
	TLS TLSMode
	// Routes maps a recipient domain (lowercase, no trailing dot) to a
	// "host:port" next hop, checked before the smarthost and MX.
	Routes map[string]string
	// Smarthost ("host:port"), when non-empty, takes every domain not in
	// Routes.
	Smarthost         string
	SmarthostTLS      SmarthostTLS
	SmarthostUsername string // AUTH is used when non-empty
	SmarthostPassword string
	// RootCAs verifies certificates; nil means the system roots.
	RootCAs *x509.CertPool
	// Resolver answers DNS queries; nil means the system resolver.
	Resolver Resolver
	// Port is the port of MX hosts (DefaultPort).
	Port int
	// Dial, when set, replaces the default dialer (net.Dialer with SourceIP
	// and ConnectTimeout), for tests and fault injection. It is called with
	// a context bounded by ConnectTimeout; SourceIP is then up to it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c *Config) withDefaults() Config {
	d := *c
	if d.HeloName == "" {
		d.HeloName = "localhost"
	}
	if d.ConnectTimeout <= 0 {
		d.ConnectTimeout = DefaultConnectTimeout
	}
	if d.CommandTimeout <= 0 {
		d.CommandTimeout = DefaultCommandTimeout
	}
	if d.DataTimeout <= 0 {
		d.DataTimeout = DefaultDataTimeout
	}
	if d.Resolver == nil {
		d.Resolver = net.DefaultResolver
	}
	if d.Port <= 0 {
		d.Port = DefaultPort
	}
	return d
}
