package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// ConnInfo describes an open session, for the attempt log.
type ConnInfo struct {
	Host       string // next-hop host name (MX name, route or smarthost host)
	Addr       string // "ip:port" connected to
	LocalAddr  string // our "ip:port"
	TLS        bool
	TLSVersion string // "TLS1.3"; "" without TLS
	// CertVerified says the certificate is valid for Host under the
	// configured roots. In opportunistic mode TLS is used either way.
	CertVerified bool
	// TLSError says why opportunistic TLS was abandoned for plain text
	// (a failed handshake, a refused STARTTLS); "" otherwise.
	TLSError      string
	Authenticated bool
}

// Envelope is one message to send.
type Envelope struct {
	From string   // "" for the null sender of bounces
	To   []string // all for this session's next hop
	// Size is the message size in bytes, announced with SIZE= when the
	// server supports it (0: not announced).
	Size int64
	// EightBit says the body has 8-bit data; the next hop must offer
	// 8BITMIME. SMTPUTF8 says the message needs SMTPUTF8 (UTF-8 headers);
	// non-ASCII addresses need it too, whether or not this is set.
	EightBit, SMTPUTF8 bool
	// Body is the exact message, CRLF line endings, without dot-stuffing.
	Body io.Reader
}

// RcptResult is the outcome for one recipient.
type RcptResult struct {
	Rcpt     string
	Code     int    // SMTP reply code (250 on success)
	Enhanced string // RFC 3463 code such as "5.1.1", or ""
	Text     string // reply text, on one line
	// Permanent says the recipient should bounce (5xx); otherwise a
	// non-2xx result defers.
	Permanent bool
	Host      string // the next hop that answered
}

// Delivered reports whether the next hop took responsibility for the
// recipient.
func (r RcptResult) Delivered() bool { return r.Code >= 200 && r.Code < 300 }

// Session is one SMTP connection to a next hop, reused for several messages.
// It is not safe for concurrent use.
type Session struct {
	cfg    Config
	route  Route
	where  string // "host [addr]", for errors
	conn   *trackConn
	wire   net.Conn     // what is written to and read from: conn, or TLS over it
	client *smtp.Client // the handshake only; then replies and out (commands.go)
	info   ConnInfo

	replies *textproto.Reader // every reply after the handshake
	out     []byte            // commands queued for the next write

	pipelining, hasSize      bool
	has8BitMIME, hasSMTPUTF8 bool
	needReset                bool  // a transaction was left open
	broken                   error // why the connection is unusable
	closed                   bool
	reused                   bool // came from a Pool and has sent nothing since
}

// tlsPolicy is what one connection attempt does about TLS.
type tlsPolicy int

const (
	tlsOff           tlsPolicy = iota // never STARTTLS
	tlsOpportunistic                  // STARTTLS when offered, no verification required
	tlsStartRequired                  // STARTTLS required, certificate verified
	tlsImplicit                       // TLS on connect, certificate verified
)

// Dial opens a session to the first next hop of route that greets with 220
// and accepts EHLO (and, for the smarthost, TLS and AUTH as configured),
// trying every address of every host in order. The error lists what went
// wrong at each address; it is permanent only when the smarthost refused our
// credentials with a 5xx.
func Dial(ctx context.Context, cfg *Config, route Route) (*Session, error) {
	c := cfg.withDefaults()
	if len(route.Hosts) == 0 {
		return nil, &Error{Err: fmt.Errorf("route %q has no next hop", route.Key)}
	}
	var failures []*Error
	for _, hop := range route.Hosts {
		addrs, err := c.hopAddrs(ctx, hop)
		if err != nil {
			failures = append(failures, &Error{Host: hop.Host, Err: err})
			continue
		}
		for _, addr := range addrs {
			s, e := dialAddr(ctx, &c, route, hop, addr)
			if e == nil {
				return s, nil
			}
			if ctx.Err() != nil {
				return nil, &Error{Host: e.Host, Err: fmt.Errorf("interrupted (%w): %w", context.Cause(ctx), e.Err)}
			}
			if e.Permanent {
				return nil, e
			}
			failures = append(failures, e)
		}
	}
	if len(failures) == 1 {
		return nil, failures[0]
	}
	return nil, &Error{Err: fmt.Errorf("no next hop of %s accepted a session: %w", route.Key, joinedErrors(failures))}
}

// joinedErrors lists the failures of several attempts on one line.
type joinedErrors []*Error

func (j joinedErrors) Error() string {
	parts := make([]string, len(j))
	for i, e := range j {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

func (j joinedErrors) Unwrap() []error {
	errs := make([]error, len(j))
	for i, e := range j {
		errs[i] = e
	}
	return errs
}

// hopAddrs returns the "ip:port" addresses to try for hop, leaving out those
// of the other IP family than SourceIP (they could not be reached from it).
func (c *Config) hopAddrs(ctx context.Context, hop Hop) ([]string, error) {
	ips := hop.Addrs
	if ips == nil {
		if _, err := netip.ParseAddr(hop.Host); err == nil {
			ips = []string{hop.Host}
		} else {
			name := hop.Host
			if strings.Contains(name, ".") {
				name += "." // rooted: no search-list surprises
			}
			if ips, err = c.Resolver.LookupHost(ctx, name); err != nil {
				return nil, fmt.Errorf("looking up %s: %w", hop.Host, err)
			}
		}
	}
	var src netip.Addr
	if c.SourceIP != "" {
		var err error
		if src, err = netip.ParseAddr(c.SourceIP); err != nil {
			return nil, fmt.Errorf("source IP %q is not an IP address", c.SourceIP)
		}
	}
	var out []string
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			continue
		}
		if src.IsValid() && src.Unmap().Is4() != a.Unmap().Is4() {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(hop.Port)).String())
	}
	if len(out) == 0 {
		if src.IsValid() {
			return nil, fmt.Errorf("%s has no address of the same IP family as the source IP %s (addresses: %v)", hop.Host, src, ips)
		}
		return nil, fmt.Errorf("%s has no usable address", hop.Host)
	}
	return out, nil
}

// connect opens the TCP connection.
func (c *Config) connect(ctx context.Context, addr string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
	defer cancel()
	if c.Dial != nil {
		return c.Dial(dctx, "tcp", addr)
	}
	var d net.Dialer
	if c.SourceIP != "" {
		ip := net.ParseIP(c.SourceIP)
		if ip == nil {
			return nil, fmt.Errorf("source IP %q is not an IP address", c.SourceIP)
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return d.DialContext(dctx, "tcp", addr)
}

// dialAddr makes the session with one address, applying the route's TLS
// policy.
func dialAddr(ctx context.Context, c *Config, route Route, hop Hop, addr string) (*Session, *Error) {
	policy := tlsOff
	switch route.Kind {
	case RouteSmarthost:
		switch c.SmarthostTLS {
		case SmarthostSTARTTLS:
			policy = tlsStartRequired
		case SmarthostImplicitTLS:
			policy = tlsImplicit
		}
	default:
		switch c.TLS {
		case TLSOpportunistic:
			policy = tlsOpportunistic
		case TLSRequired:
			policy = tlsStartRequired
		}
	}
	s, e, handshakeFailed := openSession(ctx, c, route, hop, addr, policy)
	if e != nil && handshakeFailed && policy == tlsOpportunistic && ctx.Err() == nil {
		// Some servers offer STARTTLS and then cannot finish a handshake
		// (old ciphers, broken certificates chains); Postfix then retries
		// in plain text, and so do we: opportunistic TLS must not cost mail.
		s, e2, _ := openSession(ctx, c, route, hop, addr, tlsOff)
		if e2 != nil {
			return nil, e2
		}
		s.info.TLSError = e.Err.Error()
		return s, nil
	}
	return s, e
}

// openSession connects, greets, does TLS and AUTH. handshakeFailed reports a
// failed TLS handshake after STARTTLS, which opportunistic mode retries in
// plain text.
func openSession(ctx context.Context, c *Config, route Route, hop Hop, addr string, policy tlsPolicy) (_ *Session, _ *Error, handshakeFailed bool) {
	where := hop.Host + " [" + addr + "]"
	fail := func(format string, args ...any) *Error {
		return &Error{Host: where, Err: fmt.Errorf(format, args...)}
	}
	raw, err := c.connect(ctx, addr)
	if err != nil {
		return nil, fail("connect: %w", err), false
	}
	// Until the session is handed over, ctx may end it; Send watches its own
	// ctx afterwards.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	ok := false
	defer func() {
		if !ok {
			raw.Close()
		}
	}()

	s := &Session{
		cfg:   *c,
		route: route,
		where: where,
		conn:  &trackConn{Conn: raw, writeTimeout: c.CommandTimeout},
		info:  ConnInfo{Host: hop.Host, Addr: addr, LocalAddr: raw.LocalAddr().String()},
	}
	var conn net.Conn = s.conn
	if policy == tlsImplicit {
		tc, err := s.handshake(ctx, hop.Host, true)
		if err != nil {
			return nil, fail("TLS handshake: %w", err), false
		}
		conn = tc
	}
	s.client = s.newClient(conn)
	if err := s.client.Hello(c.HeloName); err != nil {
		return nil, replyError(where, "greeting or EHLO", err, false), false
	}

	if policy == tlsOpportunistic || policy == tlsStartRequired {
		if offered, _ := s.client.Extension("STARTTLS"); !offered {
			if policy == tlsStartRequired {
				switch {
				case route.Kind != RouteSmarthost:
					return nil, fail("next hop does not offer STARTTLS and TLS is required"), false
				case c.SmarthostUsername != "":
					return nil, fail("smarthost does not offer STARTTLS; not sending the password in clear"), false
				default:
					return nil, fail("smarthost does not offer STARTTLS, which the settings require"), false
				}
			}
		} else {
			tc, err := s.startTLS(ctx, hop.Host, policy == tlsStartRequired)
			var refused *smtp.SMTPError
			switch {
			case err == nil:
				// go-smtp's Client expects a greeting on a new connection;
				// after STARTTLS there is none, so it is given one that
				// stands for the 220 the server already sent.
				s.client = s.newClient(&greetedConn{Conn: tc, pre: []byte("220 STARTTLS done\r\n")})
				if err := s.client.Hello(c.HeloName); err != nil {
					return nil, replyError(where, "EHLO after STARTTLS", err, false), false
				}
			case errors.As(err, &refused) && policy == tlsOpportunistic && refused.Code != 421:
				// The server refused STARTTLS but the connection is still
				// a clean plain-text session.
				s.info.TLSError = fmt.Sprintf("STARTTLS refused: %d %s", refused.Code, oneLine(refused.Message))
			case errors.As(err, &refused):
				return nil, replyError(where, "STARTTLS", err, false), false
			default:
				return nil, fail("STARTTLS: %w", err), true
			}
		}
	}

	if route.Kind == RouteSmarthost && c.SmarthostUsername != "" {
		if e := s.auth(); e != nil {
			return nil, e, false
		}
	}
	s.takeOver()
	ok = true
	return s, nil, false
}

// newClient wraps conn in a go-smtp Client with our timeouts.
func (s *Session) newClient(conn net.Conn) *smtp.Client {
	s.wire = conn // message content goes straight onto it (data.go)
	cl := smtp.NewClient(conn)
	cl.CommandTimeout = s.cfg.CommandTimeout
	cl.SubmissionTimeout = s.cfg.DataTimeout
	return cl
}

// startTLS sends STARTTLS and does the handshake. go-smtp's Client does not
// export STARTTLS on an existing session, so the command is sent here on the
// raw connection (whose reader is fresh, so nothing a server pipelined before
// TLS can leak into the TLS session). A refusal comes back as *smtp.SMTPError.
func (s *Session) startTLS(ctx context.Context, host string, verify bool) (*tls.Conn, error) {
	_ = s.conn.SetDeadline(time.Now().Add(s.cfg.CommandTimeout))
	if _, err := io.WriteString(s.conn, "STARTTLS\r\n"); err != nil {
		return nil, err
	}
	code, msg, err := textproto.NewReader(bufio.NewReaderSize(s.conn, 1024)).ReadResponse(220)
	_ = s.conn.SetDeadline(time.Time{})
	if err != nil {
		var te *textproto.Error
		if errors.As(err, &te) {
			return nil, &smtp.SMTPError{Code: code, Message: msg}
		}
		return nil, err
	}
	return s.handshake(ctx, host, verify)
}

// handshake runs TLS on the raw connection. Without verify the certificate
// is still checked, only to report the outcome in ConnInfo.
func (s *Session) handshake(ctx context.Context, host string, verify bool) (*tls.Conn, error) {
	cfg := &tls.Config{ServerName: host, RootCAs: s.cfg.RootCAs, InsecureSkipVerify: !verify}
	tc := tls.Client(s.conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, s.cfg.CommandTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, err
	}
	state := tc.ConnectionState()
	s.info.TLS = true
	s.info.TLSVersion = strings.ReplaceAll(tls.VersionName(state.Version), " ", "")
	s.info.CertVerified = verify || certVerifies(state, host, s.cfg.RootCAs)
	return tc, nil
}

// certVerifies checks the peer chain against roots and host.
func certVerifies(state tls.ConnectionState, host string, roots *x509.CertPool) bool {
	if len(state.PeerCertificates) == 0 {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := state.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter})
	return err == nil
}

// auth logs in to the smarthost with PLAIN, or LOGIN when PLAIN is not
// offered (some older Exchange servers).
func (s *Session) auth() *Error {
	user, pass := s.cfg.SmarthostUsername, s.cfg.SmarthostPassword
	offered, mechs := s.client.Extension("AUTH")
	if !offered {
		return &Error{Host: s.where, Err: errors.New("smarthost does not offer AUTH but a username is configured")}
	}
	var mech sasl.Client
	name := "PLAIN"
	switch {
	case s.client.SupportsAuth("PLAIN"):
		mech = sasl.NewPlainClient("", user, pass)
	case s.client.SupportsAuth("LOGIN"):
		mech, name = &loginClient{username: user, password: pass}, "LOGIN"
	default:
		return &Error{Host: s.where, Err: fmt.Errorf("smarthost offers neither AUTH PLAIN nor LOGIN (it offers %q)", mechs)}
	}
	if err := s.client.Auth(mech); err != nil {
		// A 5xx means the credentials are wrong; trying again later will
		// not help until someone fixes the settings.
		return replyError(s.where, fmt.Sprintf("AUTH %s as %q", name, user), err, true)
	}
	s.info.Authenticated = true
	return nil
}

// Info describes the connection.
func (s *Session) Info() ConnInfo { return s.info }

// Usable reports whether Send may still be called: false after a connection
// failure, a 421, or Close.
func (s *Session) Usable() bool { return !s.closed && s.broken == nil }

// Reused reports whether the session came from a Pool and has not sent a
// message since. A connection failure on such a session, unless
// DuplicatePossible, means only that the next hop dropped the idle
// connection: the message may go again on a fresh session.
func (s *Session) Reused() bool { return s.reused }

// check makes sure an idle session is still there: NOOP and its 250.
func (s *Session) check(ctx context.Context) error {
	if !s.Usable() {
		return errors.New("session is not usable")
	}
	stop := context.AfterFunc(ctx, func() { s.conn.Conn.Close() })
	defer stop()
	err := s.simpleCommand("NOOP", 250, min(s.cfg.CommandTimeout, checkTimeout))
	if err != nil {
		s.broken = err
		s.conn.Conn.Close()
	}
	return err
}

// Send sends one message: MAIL FROM (with SIZE= when the server has SIZE,
// SMTPUTF8 when needed, and BODY=8BITMIME whenever the server offers it,
// as go-smtp's Client adds it), one RCPT per recipient, each judged on its
// own reply, and DATA when at least one was accepted; the reply to the
// final "." applies to every accepted recipient. When the server offers
// PIPELINING (RFC 2920) the commands up to DATA go out together and the
// message with its final "." in one more write (see send).
//
// With a nil error there is one result per env.To, in order. A non-nil error
// means the connection is unusable (network failure, timeout, ctx ended);
// the results then hold only the recipients refused before the failure,
// and every other recipient's fate is err's: temporary, and possibly
// delivered when DuplicatePossible(err) says so. A 421 reply is a result
// (temporary) for the recipients it concerns, and leaves the session
// unusable. On a Reused session, an error that is not DuplicatePossible
// means nothing of the message counted.
//
// A message needing 8BITMIME or SMTPUTF8 that the server lacks gets
// permanent results without anything being sent: this package does not
// convert.
func (s *Session) Send(ctx context.Context, env Envelope) ([]RcptResult, error) {
	switch {
	case s.closed:
		return nil, &Error{Host: s.where, Err: errors.New("session is closed")}
	case s.broken != nil:
		return nil, &Error{Host: s.where, Err: fmt.Errorf("session is no longer usable: %w", s.broken)}
	case env.Body == nil:
		return nil, &Error{Host: s.where, Err: errors.New("envelope has no body")}
	case ctx.Err() != nil:
		return nil, &Error{Host: s.where, Err: context.Cause(ctx)}
	}
	// A blocked read or write returns once the connection is closed.
	stop := context.AfterFunc(ctx, func() { s.conn.Conn.Close() })
	results, err := s.send(env)
	defer func() { s.reused = false }()
	if !stop() {
		if err == nil {
			s.broken = context.Cause(ctx)
		} else {
			err.Err = fmt.Errorf("interrupted (%w): %w", context.Cause(ctx), err.Err)
		}
	}
	if err != nil {
		s.broken = err
		s.conn.Conn.Close()
		return results, err
	}
	return results, nil
}

// note421 marks the session unusable after "421 closing": the server is
// about to drop the connection.
func (s *Session) note421(r reply) {
	if r.code == 421 {
		s.broken = fmt.Errorf("server is closing the connection: %d %s", r.code, r.text)
		s.conn.Conn.Close()
	}
}

// Close ends the session politely (QUIT) when it is still usable, and closes
// the connection. Closing twice is harmless.
func (s *Session) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.broken != nil {
		s.conn.Conn.Close()
		return nil
	}
	// QUIT is a courtesy; do not let a slow server hold us for long.
	err := s.simpleCommand("QUIT", 221, min(s.cfg.CommandTimeout, 30*time.Second))
	s.conn.Conn.Close()
	if err != nil {
		return &Error{Host: s.where, Err: fmt.Errorf("QUIT: %w", err)}
	}
	return nil
}

// validAddress rejects what would break the command line; the server judges
// the rest.
func validAddress(a string) bool {
	return !strings.ContainsAny(a, "\r\n\x00<>")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
