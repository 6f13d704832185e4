package engine

// The connection guard sits between the TCP connection and go-smtp and adds
// what go-smtp has no hook for:
//
//   - a command line longer than limits.max_line_length (1000 octets by
//     default, CRLF included) is answered "500 5.5.2" and dropped, while
//     message content lines may be as long as go-smtp's own ceiling;
//   - a command line that looks like HTTP (a browser, or a proxy scanner
//     trying CONNECT) closes the connection at once;
//   - an EHLO or HELO name that is neither a host name nor an address
//     literal is answered "501 5.5.2" (addr.CheckHelo), so that what later
//     goes into the Received field and the queue is a name, not client junk;
//   - inside DATA and BDAT chunks the client must keep up an average of
//     limits.min_data_rate bytes per second after a grace period, and may
//     never be silent for limits.idle_timeout; go-smtp itself sets one read
//     deadline when it reads the DATA command, which would cut a slow but
//     steady large upload and let a trickle run for the whole idle timeout;
//   - a read timeout inside DATA or a chunk answers "421 4.4.2" and ends
//     the connection: nothing the client sends afterwards is read as a
//     command (go-smtp issue #196, where the rest of a timed-out message
//     was interpreted as commands after the reply).
//
// The guard also does TLS, both STARTTLS and the implicit TLS of
// listen.tls_port, because go-smtp would put its own *tls.Conn between the
// guard and itself and leave the guard only ciphertext: every rule above
// would stop at the handshake. So go-smtp is given no TLSConfig; the guard
// adds STARTTLS to the EHLO reply, answers the command itself, throws away
// whatever the client pipelined after it in clear text (the STARTTLS command
// injection of CVE-2011-0411), and then asks for a new EHLO as RFC 3207
// section 4.2 requires. The session learns about TLS from the guard
// (tlsStateOf), since go-smtp cannot know.
//
// To tell commands from content the guard follows the dialogue byte by
// byte. It hands go-smtp one command line per Read, so that the reply
// written next belongs to that line: a "354" after DATA starts content, a
// multi-line "250" after EHLO is where STARTTLS is offered. Content ends
// exactly where go-smtp's own reader ends it (<CR><LF>.<CR><LF>), and a
// BDAT chunk after its announced size, so both always agree on what is a
// command.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"postroom/engine/addr"
)

// dataRateGrace is how long a client may send slower than min_data_rate at
// the start of DATA (TCP slow start, a client assembling the message). It is
// never longer than the idle timeout.
const dataRateGrace = 30 * time.Second

// handshakeTimeout bounds a TLS handshake when the idle timeout is longer
// (or off): a client that opens port 465 and says nothing holds a
// connection slot only this long.
const handshakeTimeout = time.Minute

// maxLongLines is how many refused command lines (over-long, with control
// bytes, or a bad EHLO name) a client may send before it is disconnected,
// like go-smtp's limit of three errors.
const maxLongLines = 3

// guardLimits are the settings a guard enforces.
type guardLimits struct {
	commandLine int           // longest command line, line end included
	minDataRate int           // bytes per second in DATA; 0 = off
	idle        time.Duration // longest silence anywhere
	maxMessage  int64         // max_message_bytes, for the SIZE keyword
	tls         *tls.Config   // for STARTTLS and implicit TLS; nil = no TLS
	// refused is told about every refusal: "http_command",
	// "command_too_long", "control_bytes", "bad_helo", "data_timeout",
	// "tls_handshake".
	refused func(rule string)
}

func (l guardLimits) grace() time.Duration {
	if l.idle > 0 {
		return min(dataRateGrace, l.idle)
	}
	return dataRateGrace
}

func (l guardLimits) handshake() time.Duration {
	if l.idle > 0 {
		return min(handshakeTimeout, l.idle)
	}
	return handshakeTimeout
}

// guardMode is what the next bytes from the client are.
type guardMode int

const (
	modeCommand  guardMode = iota // command lines
	modeData                      // DATA content up to <CR><LF>.<CR><LF>
	modeChunk                     // a BDAT chunk of a known size
	modeSkipLine                  // the rest of an over-long command line
)

// awaiting is the command whose reply decides the next mode.
type awaiting int

const (
	awaitNothing awaiting = iota
	awaitData
	awaitEHLO
)

// errDataTimeout is the reply to a client too slow or silent inside DATA.
var errDataTimeout = smtpErr(421, smtp.EnhancedCode{4, 4, 2}, "Timeout or too slow while receiving data, closing connection")

// guardConn is a net.Conn that enforces guardLimits; see the top of the
// file. go-smtp reads it from one goroutine; Write may race with Read only
// at shutdown, so the mode is kept under a mutex. Deadlines, addresses and
// Close go to the TCP connection (embedded) even under TLS.
type guardConn struct {
	net.Conn
	lim guardLimits

	// buf holds bytes read from the client that go-smtp has not had yet;
	// the first ready of them are checked and may be handed out.
	buf   []byte
	ready int
	store []byte // buf's backing array, reused
	// reading is 1 while Read runs and 2 once Close has given store back.
	reading atomic.Int32

	mu       sync.Mutex
	tlsConn  *tls.Conn // once TLS is on: what is read and written
	needHelo bool      // TLS just started: only EHLO/HELO, NOOP, RSET or QUIT
	mode     guardMode
	await    awaiting
	dot      int       // go-smtp's end-of-data state machine (see dotState)
	chunk    int64     // bytes left in the BDAT chunk
	started  time.Time // when content started, for the data rate
	received int64     // content bytes since started
	long     int       // refused command lines so far
	ended    bool      // no more reading: EOF from now on
	closeOn  bool      // close the connection after the next write
	held     []byte    // the lines of a multi-line reply so far (Write)
}

func newGuardConn(c net.Conn, lim guardLimits) *guardConn {
	if lim.commandLine <= 0 {
		lim.commandLine = 1000
	}
	return &guardConn{Conn: c, lim: lim}
}

// implicitTLS makes the connection TLS from its first byte (port 465). The
// handshake happens when go-smtp writes its greeting; the deadline set here
// bounds it.
func (g *guardConn) implicitTLS() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tlsConn = tls.Server(g.Conn, g.lim.tls)
	g.Conn.SetDeadline(time.Now().Add(g.lim.handshake()))
}

// wire is what the guard reads the client from and writes replies to: the
// TCP connection, or TLS over it.
func (g *guardConn) wire() io.ReadWriter {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tlsConn != nil {
		return g.tlsConn
	}
	return g.Conn
}

// tlsState is the connection's TLS state, when TLS is on.
func (g *guardConn) tlsState() (tls.ConnectionState, bool) {
	g.mu.Lock()
	tc := g.tlsConn
	g.mu.Unlock()
	if tc == nil {
		return tls.ConnectionState{}, false
	}
	st := tc.ConnectionState()
	return st, st.HandshakeComplete
}

// tlsStateOf is the TLS state of a session's connection: from the guard
// that runs TLS, or from go-smtp (which knows only its own TLS, used by
// servers built without a guard, as in tests).
func tlsStateOf(c *smtp.Conn) (tls.ConnectionState, bool) {
	if st, ok := c.TLSConnectionState(); ok {
		return st, true
	}
	if g := guardOf(c.Conn()); g != nil {
		return g.tlsState()
	}
	return tls.ConnectionState{}, false
}

// implicitTLSListener turns each guarded connection of a listener into an
// implicit-TLS one (listen.tls_port).
type implicitTLSListener struct{ net.Listener }

func (l implicitTLSListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if g := guardOf(c); g != nil && g.lim.tls != nil {
			g.implicitTLS()
			return c, nil
		}
		// Never serve port 465 in clear text.
		c.Close()
	}
}

// guardOf finds the guard under a connection go-smtp hands to a session.
func guardOf(c net.Conn) *guardConn {
	for {
		switch v := c.(type) {
		case *guardConn:
			return v
		case *countedConn:
			c = v.Conn
		case interface{ NetConn() net.Conn }: // *kindConn, *tls.Conn
			c = v.NetConn()
		default:
			return nil
		}
	}
}

// Read hands go-smtp checked bytes: one whole command line at a time in
// command mode, content up to its end in DATA or a chunk.
func (g *guardConn) Read(p []byte) (n int, err error) {
	if !g.reading.CompareAndSwap(0, 1) {
		return 0, net.ErrClosed
	}
	defer func() {
		if err != nil {
			g.releaseBuf()
		}
		g.reading.Store(0)
	}()
	for {
		g.mu.Lock()
		mode, ended := g.mode, g.ended
		g.mu.Unlock()
		if ended {
			return 0, io.EOF
		}
		if g.ready > 0 {
			n := copy(p, g.buf[:g.ready])
			g.consume(n)
			return n, nil
		}
		if len(g.buf) > 0 {
			before := len(g.buf)
			if err := g.check(mode); err != nil {
				return 0, err
			}
			if g.ready > 0 || len(g.buf) != before {
				continue // something to hand out, or a line was dropped
			}
		}
		if err := g.fill(mode); err != nil {
			return 0, err
		}
	}
}

// readBufSize is the size of a connection's read buffer, and what fill
// reads at most at a time.
const readBufSize = 16 << 10

// readBufs are the read buffers of connections that have ended: every
// connection needs one, and allocating 16 KiB for each was a quarter of
// what intake allocated.
var readBufs = sync.Pool{New: func() any { return new([readBufSize]byte) }}

// releaseBuf gives the read buffer back once Read has failed (the client
// left, a timeout, the connection poisoned) or the connection is closed.
// Only one goroutine at a time touches buf and store (a Read, or Close
// when no Read runs), so nothing uses the buffer after this; a Read after
// all takes a fresh one. Whatever was unread goes with it: after a failed
// Read there is nothing left to hand out.
func (g *guardConn) releaseBuf() {
	if cap(g.store) == readBufSize {
		readBufs.Put((*[readBufSize]byte)(g.store[:readBufSize]))
	}
	g.store, g.buf, g.ready = nil, nil, 0
}

// Close closes the connection and gives the read buffer back: go-smtp
// reads no more after QUIT, so a failed Read would never come to do it. A
// Read under way in another goroutine keeps the buffer; the closed
// connection fails it, and it gives the buffer back itself.
func (g *guardConn) Close() error {
	err := g.Conn.Close()
	if g.reading.CompareAndSwap(0, 2) {
		g.releaseBuf()
	}
	return err
}

// consume drops n handed-out bytes from the front of buf.
func (g *guardConn) consume(n int) {
	g.ready -= n
	g.buf = g.buf[n:]
	if len(g.buf) == 0 {
		g.buf = g.store[:0]
	}
}

// check looks at buf in the given mode and sets ready (or changes mode).
func (g *guardConn) check(mode guardMode) error {
	switch mode {
	case modeCommand:
		return g.checkCommand()
	case modeSkipLine:
		i := bytes.IndexByte(g.buf, '\n')
		if i < 0 {
			g.buf = g.buf[:0]
			return nil
		}
		g.buf = g.buf[i+1:]
		g.setMode(modeCommand)
	case modeData:
		g.ready = g.scanData()
	case modeChunk:
		g.mu.Lock()
		n := int(min(int64(len(g.buf)), g.chunk))
		g.chunk -= int64(n)
		if g.chunk == 0 {
			g.mode = modeCommand
		}
		g.mu.Unlock()
		g.ready = n
	}
	return nil
}

// checkCommand hands out the next command line if it passes, answers it
// itself when it does not (or when it is STARTTLS), and waits for more
// bytes when the line is not complete.
func (g *guardConn) checkCommand() error {
	i := bytes.IndexByte(g.buf, '\n')
	if i < 0 {
		if len(g.buf) >= g.lim.commandLine {
			return g.badLine(-1, "command_too_long", "500 5.5.2 Line too long")
		}
		return nil
	}
	if i+1 > g.lim.commandLine {
		return g.badLine(i, "command_too_long", "500 5.5.2 Line too long")
	}
	line := g.buf[:i+1]
	if looksLikeHTTP(line) {
		g.lim.refused("http_command")
		g.end()
		g.Conn.Close()
		return io.EOF
	}
	if hasControl(line) {
		// go-smtp echoes an unknown command in its reply: a bare CR
		// there would split our reply for the client.
		return g.badLine(i, "control_bytes", "500 5.5.2 Control characters in command")
	}
	verb, arg := commandWord(line)
	g.mu.Lock()
	needHelo, isTLS := g.needHelo, g.tlsConn != nil
	g.mu.Unlock()
	switch {
	case verb == "STARTTLS" && g.lim.tls != nil:
		if isTLS {
			return g.answer(i, "502 5.5.1 Already running in TLS")
		}
		return g.startTLS()
	case verb == "EHLO" || verb == "HELO":
		if name, _, _ := strings.Cut(arg, " "); name != "" {
			if err := addr.CheckHelo(name); err != nil {
				return g.badLine(i, "bad_helo", "501 5.5.2 Invalid "+verb+" name: "+err.Error())
			}
		}
		g.mu.Lock()
		g.needHelo = false
		g.mu.Unlock()
	case needHelo && verb != "NOOP" && verb != "RSET" && verb != "QUIT":
		return g.answer(i, "503 5.5.1 Send EHLO again after STARTTLS")
	}
	g.command(line)
	g.ready = i + 1
	return nil
}

// commandWord splits a command line the way go-smtp's parseCmd does: the
// upper-cased verb (any line starting with STARTTLS is STARTTLS), and the
// argument.
func commandWord(line []byte) (verb, arg string) {
	s := strings.TrimRight(string(line), "\r\n")
	upper := strings.ToUpper(s)
	switch {
	case strings.HasPrefix(upper, "STARTTLS"):
		return "STARTTLS", ""
	case len(s) == 4:
		return upper, ""
	case len(s) > 4 && s[4] == ' ':
		return upper[:4], strings.TrimSpace(s[5:])
	}
	return "", ""
}

// answer replies to a command line go-smtp does not see, and skips it,
// without counting it as an error.
func (g *guardConn) answer(end int, reply string) error {
	g.buf = g.buf[end+1:]
	g.Conn.SetWriteDeadline(time.Now().Add(time.Minute))
	_, err := io.WriteString(g.wire(), reply+"\r\n")
	return err
}

// badLine answers a command line go-smtp must not see, and skips it: up to
// end, the index of its LF, or (end < 0) up to a LF still to come.
func (g *guardConn) badLine(end int, rule, reply string) error {
	g.lim.refused(rule)
	g.long++
	if end >= 0 {
		g.buf = g.buf[end+1:]
	} else {
		g.buf = g.buf[:0]
	}
	g.Conn.SetWriteDeadline(time.Now().Add(time.Minute))
	if g.long >= maxLongLines {
		io.WriteString(g.wire(), "421 4.7.0 Too many bad commands, closing connection\r\n")
		g.end()
		g.Conn.Close()
		return io.EOF
	}
	io.WriteString(g.wire(), reply+"\r\n")
	if end < 0 {
		g.setMode(modeSkipLine)
	}
	return nil
}

// startTLS answers STARTTLS and runs the handshake. Whatever the client
// sent after the command went in clear text before our 220 and is thrown
// away: it must not count as part of the TLS session (CVE-2011-0411). A
// failed handshake ends the connection; there is no going back to clear
// text after a half-done handshake.
func (g *guardConn) startTLS() error {
	g.buf = g.buf[:0]
	g.Conn.SetDeadline(time.Now().Add(g.lim.handshake()))
	if _, err := io.WriteString(g.Conn, "220 2.0.0 Ready to start TLS\r\n"); err != nil {
		return err
	}
	tc := tls.Server(g.Conn, g.lim.tls)
	if err := tc.Handshake(); err != nil {
		g.lim.refused("tls_handshake")
		g.end()
		g.Conn.Close()
		return io.EOF
	}
	g.mu.Lock()
	g.tlsConn, g.needHelo = tc, true
	g.mu.Unlock()
	// Back to the idle timeout go-smtp set for this command line.
	g.Conn.SetWriteDeadline(time.Time{})
	if g.lim.idle > 0 {
		g.Conn.SetReadDeadline(time.Now().Add(g.lim.idle))
	} else {
		g.Conn.SetReadDeadline(time.Time{})
	}
	return nil
}

// command notes what a command line handed to go-smtp does to the mode:
// DATA and EHLO depend on the reply, BDAT's chunk follows at once. The
// parsing follows go-smtp's (parseCmd, handleBdat) so both agree.
func (g *guardConn) command(line []byte) {
	verb, arg := commandWord(line)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.await = awaitNothing
	switch {
	case verb == "EHLO":
		g.await = awaitEHLO
	case verb == "DATA" && arg == "":
		g.await = awaitData
	case verb == "BDAT" && arg != "":
		args := strings.Fields(arg)
		if len(args) == 0 || len(args) > 2 || (len(args) == 2 && !strings.EqualFold(args[1], "LAST")) {
			return
		}
		size, err := strconv.ParseUint(args[0], 10, 32)
		if err != nil || size == 0 {
			return
		}
		g.mode, g.chunk = modeChunk, int64(size)
		g.startContent()
	}
}

// startContent starts the data-rate clock. Called with mu held.
func (g *guardConn) startContent() {
	g.started, g.received = time.Now(), 0
}

// Write passes go-smtp's replies through and learns from the first reply
// line after DATA or EHLO what comes next. go-smtp writes each reply line
// with its own Write.
func (g *guardConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	offerTLS := false
	switch g.await {
	case awaitData:
		if bytes.HasPrefix(p, []byte("354")) {
			g.mode, g.dot = modeData, 0
			g.startContent()
		}
	case awaitEHLO:
		// After the first line ("250-Hello name"), before the keywords.
		offerTLS = bytes.HasPrefix(p, []byte("250-")) && g.lim.tls != nil && g.tlsConn == nil
	}
	g.await = awaitNothing
	closeAfter := g.closeOn
	var w io.Writer = g.Conn
	if g.tlsConn != nil {
		w = g.tlsConn
	}
	out := g.fixSize(p)
	if offerTLS {
		out = append(out[:len(out):len(out)], "250-STARTTLS\r\n"...)
	}
	// go-smtp writes (and flushes) a multi-line reply line by line: the
	// lines before the last are held back and go with it, so that an EHLO
	// reply is one write, not one per extension.
	if continued(out) && !closeAfter && len(g.held)+len(out) <= maxHeldReply {
		g.held = append(g.held, out...)
		g.mu.Unlock()
		return len(p), nil
	}
	if len(g.held) > 0 {
		out = append(g.held, out...)
		g.held = nil
	}
	g.mu.Unlock()
	_, err := w.Write(out)
	if closeAfter {
		g.Conn.Close()
	}
	if err != nil {
		return 0, err
	}
	// All of p was written, in whatever form: a count of the rewritten
	// bytes would look like a short write to go-smtp's buffered writer.
	return len(p), nil
}

// fill reads more from the client. In content it sets the read deadline
// that the data rate and the idle timeout allow, and turns a timeout into
// the 421 reply that also ends the connection.
func (g *guardConn) fill(mode guardMode) error {
	if cap(g.buf)-len(g.buf) < 4096 {
		// Move what is left to the front, into a bigger buffer only when
		// that would leave less than 4 KiB to read into.
		switch {
		case g.store == nil && len(g.buf) == 0:
			g.store = readBufs.Get().(*[readBufSize]byte)[:0]
		case cap(g.store) < len(g.buf)+4096:
			g.store = make([]byte, 0, len(g.buf)+readBufSize)
		}
		n := copy(g.store[:len(g.buf)], g.buf)
		g.buf = g.store[:n]
	}
	content := mode == modeData || mode == modeChunk
	if content {
		g.mu.Lock()
		deadline := g.lim.deadline(g.started, g.received, time.Now())
		g.mu.Unlock()
		g.Conn.SetReadDeadline(deadline)
	}
	n, err := g.wire().Read(g.buf[len(g.buf):cap(g.buf)])
	g.buf = g.buf[:len(g.buf)+n]
	if content {
		g.mu.Lock()
		g.received += int64(n)
		g.mu.Unlock()
	}
	if err != nil && n == 0 {
		if content && isTimeout(err) {
			g.lim.refused("data_timeout")
			g.poison()
			return errDataTimeout
		}
		return err
	}
	return nil
}

// deadline is when the client, having sent received bytes since started,
// falls below the minimum data rate or has been silent too long.
func (l guardLimits) deadline(started time.Time, received int64, now time.Time) time.Time {
	var d time.Time
	if l.idle > 0 {
		d = now.Add(l.idle)
	}
	if l.minDataRate > 0 {
		owed := time.Duration(float64(received) / float64(l.minDataRate) * float64(time.Second))
		rate := started.Add(max(l.grace(), owed))
		if d.IsZero() || rate.Before(d) {
			d = rate
		}
	}
	return d
}

// poison ends reading: go-smtp gets EOF from now on, so whatever the
// client still sends is never read as a command, and the connection is
// closed once the reply has been written.
func (g *guardConn) poison() {
	g.mu.Lock()
	g.ended, g.closeOn = true, true
	g.mu.Unlock()
}

func (g *guardConn) end() {
	g.mu.Lock()
	g.ended = true
	g.mu.Unlock()
}

func (g *guardConn) setMode(m guardMode) {
	g.mu.Lock()
	g.mode = m
	g.mu.Unlock()
}

// scanData runs go-smtp's end-of-data state machine (data.go, taken from
// net/textproto) over buf and returns how many bytes belong to the
// content, switching to command mode when the end marker is among them.
func (g *guardConn) scanData() int {
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
	)
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.dot
	for i, c := range g.buf {
		switch st {
		case stateBeginLine:
			switch c {
			case '.':
				st = stateDot
			case '\r':
				st = stateCR
			default:
				st = stateData
			}
		case stateDot:
			if c == '\r' {
				st = stateDotCR
			} else {
				st = stateData
			}
		case stateDotCR:
			if c == '\n' {
				g.mode, g.dot = modeCommand, 0
				return i + 1
			}
			st = stateData
		case stateCR:
			if c == '\n' {
				st = stateBeginLine
			} else {
				st = stateData
			}
		case stateData:
			if c == '\r' {
				st = stateCR
			}
		}
	}
	g.dot = st
	return len(g.buf)
}

// hasControl reports whether a command line has a control byte other than
// its line end and tabs.
func hasControl(line []byte) bool {
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	for _, c := range line {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return true
		}
	}
	return false
}

// httpMethods are request lines no SMTP client sends; the space after the
// method keeps "POSTMASTER" style words from matching.
var httpMethods = []string{"GET ", "POST ", "HEAD ", "PUT ", "CONNECT ", "OPTIONS ", "DELETE "}

// looksLikeHTTP reports whether a command line is an HTTP request line or
// header: a browser pointed at the port, or a scanner looking for an open
// proxy. Postfix refuses the same (smtpd_forbidden_commands).
func looksLikeHTTP(line []byte) bool {
	s := strings.ToUpper(string(line))
	for _, m := range httpMethods {
		if strings.HasPrefix(s, m) {
			return true
		}
	}
	return strings.HasPrefix(s, "HOST:") || strings.HasPrefix(s, "USER-AGENT:")
}

// fixSize rewrites the SIZE keyword of the EHLO reply from go-smtp's
// setting, one byte over the limit (see newSMTPServer), to the limit.
// maxHeldReply bounds what Write holds back of a multi-line reply.
const maxHeldReply = 4096

// continued reports whether p is whole reply lines that another line of
// the same reply follows ("250-PIPELINING\r\n"). A part of a longer line
// (go-smtp's buffered writer splits one over 4 KiB) is not.
func continued(p []byte) bool {
	if !bytes.HasSuffix(p, []byte("\r\n")) {
		return false
	}
	for line := range bytes.Lines(p) {
		if len(line) < 6 || !isDigit(line[0]) || !isDigit(line[1]) || !isDigit(line[2]) || line[3] != '-' ||
			!bytes.HasSuffix(line, []byte("\r\n")) {
			return false
		}
	}
	return true
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

func (g *guardConn) fixSize(p []byte) []byte {
	if g.lim.maxMessage <= 0 || len(p) < 9 || (string(p[:9]) != "250-SIZE " && string(p[:9]) != "250 SIZE ") {
		return p
	}
	if string(p[9:]) != strconv.FormatInt(g.lim.maxMessage+1, 10)+"\r\n" {
		return p
	}
	return []byte(string(p[:9]) + strconv.FormatInt(g.lim.maxMessage, 10) + "\r\n")
}

// sizeCap refuses content over max bytes with go-smtp's own 552 5.3.4.
type sizeCap struct {
	r    io.Reader
	left int64
}

func (c *sizeCap) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.left -= int64(n); c.left < 0 {
		return n, smtp.ErrDataTooLarge
	}
	return n, err
}

// dataReader wraps the DATA reader of a session: it enforces the size
// limit (go-smtp is given one byte more). The data rate is the guard's
// own business, on plain and TLS connections alike; c is not needed.
func (g *guardConn) dataReader(r io.Reader, c net.Conn, maxBytes int64) io.Reader {
	return &sizeCap{r: r, left: maxBytes}
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
