package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"postroom/engine/addr"
	"postroom/engine/msgdata"
	"postroom/engine/policy"
	"postroom/storage"
)

// maxReceived is how many Received headers a message may carry before we
// call it a mail loop (RFC 5321 section 6.3 suggests a limit of this kind).
const maxReceived = 50

// storeTimeout bounds how long intake waits for the store before telling
// the client to try again later.
const storeTimeout = 30 * time.Second

// smtpServer is the intake: go-smtp behind a listener that enforces the
// connection-level rules go-smtp has no hook for.
type smtpServer struct {
	e   *Engine
	srv *smtp.Server
	tls *tls.Config // STARTTLS and port 465, run by the guard (guard.go)
	*connState

	lns []net.Listener // its views of the sockets (listen.go), set by serveOn

	liveMu sync.Mutex
	live   map[*countedConn]bool // the connections it serves now
}

// connState outlives the intake servers that settings changes replace:
// a client's connections and failed logins still count.
type connState struct {
	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
	auth  authLimiter // failed AUTH attempts, engine-wide (auth.go)
}

func newConnState() *connState { return &connState{perIP: make(map[netip.Addr]int)} }

func newSMTPServer(e *Engine) *smtpServer {
	s := e.Settings()
	srv := smtp.NewServer(&backend{e: e})
	srv.Domain = s.Hostname
	// go-smtp's DATA reader refuses a message of exactly MaxMessageBytes
	// (its budget runs out before it sees the end marker), so it gets one
	// byte more: Data enforces the real limit (guard.go, sizeCap) and the
	// guard advertises it in SIZE.
	srv.MaxMessageBytes = s.Limits.MaxMessageBytes + 1
	srv.MaxRecipients = s.Limits.MaxRecipients
	// go-smtp applies one line limit to commands and message content
	// alike, and content lines may be long (they are folded before
	// delivery). The guard already limits command lines (guard.go,
	// checkCommand), on plain and TLS connections alike, and no reader
	// of content keeps a whole line, so go-smtp's own limit is off: it
	// looked at every byte of every message once more, a tenth of
	// intake's CPU at 100 KiB.
	srv.MaxLineLength = 0
	srv.ReadTimeout = s.Limits.IdleTimeout.Std()
	srv.WriteTimeout = time.Minute
	srv.EnableSMTPUTF8 = true
	// The guard runs TLS, so go-smtp gets no TLSConfig and cannot tell a
	// TLS session from plain text: session.authAllowed decides (auth.go).
	srv.AllowInsecureAuth = true
	srv.ErrorLog = smtpLogger{e.log}
	return &smtpServer{e: e, srv: srv, tls: e.certs.tlsConfig(), connState: e.conns, live: make(map[*countedConn]bool)}
}

func (s *smtpServer) serve(ln net.Listener) {
	if err := s.srv.Serve(&guardListener{Listener: ln, s: s}); err != nil && !errors.Is(err, net.ErrClosed) {
		s.e.log.Error("SMTP server stopped", "err", err)
	}
}

// shutdown stops accepting, gives sessions in the middle of a message a few
// seconds to finish, then closes what is left: an idle client must not hold
// up a stop.
func (s *smtpServer) shutdown(ctx context.Context) error {
	grace, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(grace)
	if err != nil {
		// go-smtp's Close does nothing once Shutdown has begun: close
		// the connections ourselves.
		s.srv.Close()
		s.liveMu.Lock()
		for c := range s.live {
			c.Conn.Close()
		}
		s.liveMu.Unlock()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// guardListener refuses blocked networks and enforces the connection caps
// before go-smtp sees a connection, so such a client gets a clear reply at
// greeting and is closed.
type guardListener struct {
	net.Listener
	s *smtpServer
}

func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if gc := l.s.admit(c); gc != nil {
			return gc, nil
		}
	}
}

// admit applies the connect-time rules; it closes a refused connection and
// returns nil.
func (s *smtpServer) admit(c net.Conn) net.Conn {
	ip := remoteIP(c)
	e := s.e
	e.mu.Lock()
	pol, lim := e.policy, e.settings.Limits
	e.mu.Unlock()
	refuse := func(rule, reply string) net.Conn {
		e.refused(rule, ip, "connect", "")
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, reply+"\r\n")
		c.Close()
		return nil
	}
	if d := pol.Connect(ip); !d.Allow {
		return refuse(d.Rule, "554 5.7.1 Access denied by policy ("+d.List+")")
	}
	s.mu.Lock()
	switch {
	case lim.MaxConnections > 0 && s.total >= lim.MaxConnections:
		s.mu.Unlock()
		return refuse("max_connections", "421 4.7.0 Too many connections, try again later")
	case lim.MaxConnectionsPerIP > 0 && s.perIP[ip] >= lim.MaxConnectionsPerIP:
		s.mu.Unlock()
		return refuse("max_connections_per_ip", "421 4.7.0 Too many connections from your address, try again later")
	}
	s.total++
	s.perIP[ip]++
	s.mu.Unlock()
	// The guard (guard.go) enforces the line, HTTP and data-rate rules.
	g := newGuardConn(c, guardLimits{
		commandLine: lim.MaxLineLength,
		minDataRate: lim.MinDataRate,
		idle:        lim.IdleTimeout.Std(),
		maxMessage:  lim.MaxMessageBytes,
		tls:         s.tls,
		refused:     func(rule string) { e.refused(rule, ip, "connection", "") },
	})
	cc := &countedConn{Conn: g}
	cc.release = func() {
		s.liveMu.Lock()
		delete(s.live, cc)
		s.liveMu.Unlock()
		s.mu.Lock()
		s.total--
		if s.perIP[ip]--; s.perIP[ip] <= 0 {
			delete(s.perIP, ip)
		}
		s.mu.Unlock()
	}
	s.liveMu.Lock()
	s.live[cc] = true
	s.liveMu.Unlock()
	return cc
}

// sessionCount is how many connections the server serves now.
func (s *smtpServer) sessionCount() int {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	return len(s.live)
}

type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

func remoteIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// ruleName is the part of a policy rule that may be told to a client: the
// setting's name, never the entry that matched.
func ruleName(rule string) string {
	name, _, _ := strings.Cut(rule, " ")
	return strings.TrimSuffix(name, ":")
}

// refused logs and counts a refusal and tells the window.
func (e *Engine) refused(rule string, ip netip.Addr, stage, detail string) {
	e.log.Info("refused", "rule", rule, "client", ip.String(), "stage", stage, "detail", detail)
	e.stats.add(ruleName(rule))
	e.publish(Event{Kind: EventRefused, Text: fmt.Sprintf("%s refused at %s by %s", ip, stage, ruleName(rule))})
}

type backend struct{ e *Engine }

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{e: b.e, conn: c, ip: remoteIP(c.Conn()), guard: guardOf(c.Conn())}, nil
}

// session is one client connection's transaction state.
type session struct {
	e     *Engine
	conn  *smtp.Conn
	ip    netip.Addr
	guard *guardConn // the connection's guard (guard.go); nil in tests without one

	authUser string
	from     *addr.Address
	smtputf8 bool
	rcpts    []string

	authFailures int    // failed AUTH attempts on this connection (auth.go)
	quotaUser    string // the user whose quota this transaction holds (limits.go)

	// expected withdraws this transaction's announcement to the store
	// (storage.Store.Expect): from MAIL FROM until its message is handed
	// to the store, or the transaction ends without one.
	expected func()
}

func smtpErr(code int, enhanced smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enhanced, Message: msg}
}

// errInternal is every internal failure's reply; the details go to the log.
var errInternal = smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Local error, please try again later")

func (s *session) Reset() {
	s.releaseQuota()
	s.settle()
	s.from, s.rcpts, s.smtputf8 = nil, nil, false
}

func (s *session) Logout() error {
	s.releaseQuota()
	s.settle()
	return nil
}

// settle withdraws the transaction's announcement to the store, if any.
func (s *session) settle() {
	if s.expected != nil {
		s.expected()
		s.expected = nil
	}
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.Reset()
	if err := s.submissionAuth(); err != nil {
		return err
	}
	utf8 := opts != nil && opts.UTF8
	a, err := addr.Parse(from, addr.ParseOptions{SMTPUTF8: utf8, AllowNullSender: true})
	if err != nil {
		return addressError(err, "sender")
	}
	settings := s.e.Settings()
	if opts != nil && opts.Size > settings.Limits.MaxMessageBytes {
		return smtpErr(552, smtp.EnhancedCode{5, 3, 4}, fmt.Sprintf("Message too big: the limit is %d bytes", settings.Limits.MaxMessageBytes))
	}
	if d := s.policy().Sender(a); !d.Allow {
		s.e.refused(d.Rule, s.ip, "MAIL", a.String())
		return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Sender refused by policy ("+d.List+")")
	}
	if err := s.checkQuota(); err != nil {
		return err
	}
	s.from, s.smtputf8 = &a, utf8
	// A message is on its way: a commit starting meanwhile may wait a
	// moment for it, to store it in the same transaction.
	s.expected = s.e.store.Expect()
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.from == nil {
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "Send MAIL first")
	}
	a, err := addr.Parse(to, addr.ParseOptions{SMTPUTF8: s.smtputf8})
	if err != nil {
		return addressError(err, "recipient")
	}
	authenticated := s.authUser != ""
	if a.Suspicious() && !authenticated {
		// user%host@, bang paths and quoted local parts with '@' are the
		// classic ways to make a relay forward where it should not.
		s.e.refused("address_syntax", s.ip, "RCPT", a.String())
		return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Relaying denied: this form of address is not accepted")
	}
	if d := s.policy().Recipient(s.ip, authenticated, a); !d.Allow {
		s.e.refused(d.Rule, s.ip, "RCPT", a.String())
		if d.List == "relay" {
			return smtpErr(554, smtp.EnhancedCode{5, 7, 1}, "Relaying denied: authenticate or send from a trusted network")
		}
		return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Recipient refused by policy ("+d.List+")")
	}
	s.rcpts = append(s.rcpts, a.String())
	return nil
}

func (s *session) policy() *policy.Policy {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	return s.e.policy
}

func addressError(err error, which string) error {
	var ae *addr.Error
	if errors.As(err, &ae) && ae.Kind == addr.KindNeedsSMTPUTF8 {
		return smtpErr(553, smtp.EnhancedCode{5, 6, 7}, "Non-ASCII "+which+" address needs SMTPUTF8")
	}
	code := smtp.EnhancedCode{5, 1, 3}
	if which == "sender" {
		code = smtp.EnhancedCode{5, 1, 7}
	}
	return smtpErr(553, code, "Bad "+which+" address syntax: "+err.Error())
}

func (s *session) Data(r io.Reader) error {
	if s.from == nil || len(s.rcpts) == 0 {
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "Send MAIL and RCPT first")
	}
	e := s.e
	settings := e.Settings()
	sp := newSpool(e.opts.SpoolDir, 1<<20)
	defer sp.Close()
	// Postroom-Send-At is for us, not for the recipients: it is taken out
	// on the way to the spool (sendat.go).
	sendAt := msgdata.NewFieldFilter(sp, sendAtField)
	n := msgdata.NewNormalizer(sendAt)
	n.Strict = settings.Limits.StrictLineEndings
	buf := copyBuffers.Get().(*[]byte)
	_, err := io.CopyBuffer(n, s.guard.dataReader(r, s.conn.Conn(), settings.Limits.MaxMessageBytes), *buf)
	copyBuffers.Put(buf)
	if err == nil {
		err = n.Close()
	}
	if err == nil {
		err = sendAt.Close()
	}
	if err != nil {
		var se *smtp.SMTPError
		switch {
		case errors.As(err, &se):
			return se // the size limit, from go-smtp's reader
		case errors.Is(err, msgdata.ErrBareLineEnding):
			e.refused("strict_line_endings", s.ip, "DATA", "")
			return smtpErr(550, smtp.EnhancedCode{5, 5, 2}, "Bare CR, bare LF or NUL in message data is not accepted")
		case errors.Is(err, smtp.ErrTooLongLine):
			return smtpErr(500, smtp.EnhancedCode{5, 5, 2}, "Line too long")
		case isTimeout(err) && s.guard != nil:
			// On TLS the guard cannot see DATA: end the connection here,
			// so the rest of the message is never read as commands.
			e.refused("data_timeout", s.ip, "DATA", "")
			s.guard.poison()
			return errDataTimeout
		case errors.Is(err, errSpool):
			e.log.Error("spooling a message", "err", err)
			return smtpErr(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, try again later")
		}
		// The client went away or timed out: nothing is stored.
		e.log.Info("message not received in full", "client", s.ip.String(), "err", err)
		return errInternal
	}
	info := n.Info()
	if info.ReceivedCount > maxReceived {
		e.refused("mail_loop", s.ip, "DATA", fmt.Sprint(info.ReceivedCount, " Received headers"))
		return smtpErr(554, smtp.EnhancedCode{5, 4, 6}, "Too many Received headers: mail loop detected")
	}

	now := e.now()
	notBefore, refusal := s.notBefore(sendAt, now, settings.Delivery.QueueLifetime.Std())
	if refusal != nil {
		return refusal
	}
	traceID := newTraceID()
	var forRcpt string
	if len(s.rcpts) == 1 {
		forRcpt = s.rcpts[0]
	}
	received := msgdata.Received(msgdata.ReceivedFields{
		FromHelo: s.conn.Hostname(),
		ClientIP: s.ip,
		ByHost:   settings.Hostname,
		Protocol: s.protocol(),
		ID:       traceID,
		For:      forRcpt,
		TLS:      s.tlsText(),
		Time:     now,
	})
	body, err := sp.Reader()
	if err != nil {
		e.log.Error("reading the spool", "err", err)
		return errInternal
	}
	// A small message is stored from one buffer that, once stored, is
	// kept for its delivery moments later (body.go).
	var stored []byte
	if mem, ok := sp.inMemory(); ok && len(received)+len(mem) <= bodyInMemory {
		stored = make([]byte, 0, len(received)+len(mem))
		stored = append(append(stored, received...), mem...)
	}
	msg := &storage.NewMessage{
		Sender:     s.from.String(),
		Recipients: s.rcpts,
		ClientAddr: s.ip.String(),
		ClientHelo: s.conn.Hostname(),
		AuthUser:   s.authUser,
		ReceivedAt: now,
		Subject:    info.Subject,
		MessageID:  info.MessageID,
		EightBit:   info.EightBit,
		SMTPUTF8:   s.smtputf8,
		NotBefore:  notBefore,
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	full := io.MultiReader(strings.NewReader(received), body)
	if stored != nil {
		full = bytes.NewReader(stored)
	}
	msg.Expected = s.expected // withdrawn once the message is in line to be written
	id, err := e.store.Enqueue(ctx, msg, full)
	s.expected = nil
	if err != nil {
		if errors.Is(err, storage.ErrDiskFull) {
			e.log.Error("disk full: message refused for now", "client", s.ip.String(), "err", err)
			e.publish(Event{Kind: EventError, Text: "The disk is full: incoming mail is being refused until space is freed."})
			return smtpErr(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, try again later")
		}
		e.log.Error("storing a message", "client", s.ip.String(), "err", err)
		return errInternal
	}
	if stored != nil {
		e.bodies.put(id, stored)
	}
	e.log.Info("message queued", "id", id, "trace", traceID, "from", msg.Sender, "rcpts", len(s.rcpts),
		"size", info.Size+int64(len(received)), "client", s.ip.String())
	e.publish(Event{Kind: EventReceived, MessageID: id, Text: msg.Subject})
	e.Wake()
	return smtpErr(250, smtp.EnhancedCode{2, 0, 0}, fmt.Sprintf("OK: queued as %d", id))
}

// copyBuffers are Data's copy buffers: io.Copy allocating 32 KiB for
// every message was a quarter of what intake allocated.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (s *session) protocol() string {
	p := "ESMTP"
	if _, ok := tlsStateOf(s.conn); ok {
		p += "S"
	}
	if s.authUser != "" {
		p += "A"
	}
	return p
}

func (s *session) tlsText() string {
	st, ok := tlsStateOf(s.conn)
	if !ok {
		return ""
	}
	return strings.ReplaceAll(tls.VersionName(st.Version), " ", "") + " " + tls.CipherSuiteName(st.CipherSuite)
}

func newTraceID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// smtpLogger sends go-smtp's own messages (mostly connection errors) to
// our structured log.
type smtpLogger struct{ log *slog.Logger }

func (l smtpLogger) Printf(format string, v ...any) {
	l.log.Debug("smtp", "msg", fmt.Sprintf(format, v...))
}

func (l smtpLogger) Println(v ...any) {
	l.log.Debug("smtp", "msg", strings.TrimSpace(fmt.Sprintln(v...)))
}
