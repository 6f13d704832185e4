package engine

// The connection guard sits between the TCP connection and go-smtp and adds
// what go-smtp has no hook for:
//
//   - a command line longer than limits.max_line_length (1000 octets by
//     default, CRLF included) is answered "500 5.5.2" and dropped, while
//     message content lines may be as long as go-smtp's own ceiling;
//   - a command line that looks like HTTP (a browser, or a proxy scanner
//     trying CONNECT) closes the connection at once;
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
// To tell commands from content the guard follows the dialogue byte by
// byte. It hands go-smtp one command line per Read, so that the reply
// written next belongs to that line: a "354" after DATA starts content, a
// "220" after STARTTLS hands the connection over to TLS, and from then on
// the guard only passes bytes through (it cannot read ciphertext; session.Data
// enforces the data rate itself on TLS connections, see dataDeadlines). Content
// ends exactly where go-smtp's own reader ends it (<CR><LF>.<CR><LF>), and a
// BDAT chunk after its announced size, so both always agree on what is a
// command.

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// dataRateGrace is how long a client may send slower than min_data_rate at
// the start of DATA (TCP slow start, a client assembling the message). It is
// never longer than the idle timeout.
const dataRateGrace = 30 * time.Second

// maxLongLines is how many refused command lines (over-long or with
// control bytes) a client may send before it is disconnected, like
// go-smtp's limit of three errors.
const maxLongLines = 3

// guardLimits are the settings a guard enforces.
type guardLimits struct {
	commandLine int           // longest command line, line end included
	minDataRate int           // bytes per second in DATA; 0 = off
	idle        time.Duration // longest silence anywhere
	maxMessage  int64         // max_message_bytes, for the SIZE keyword
	// refused is told about every refusal: "http_command",
	// "command_too_long", "data_timeout".
	refused func(rule string)
}

func (l guardLimits) grace() time.Duration {
	if l.idle > 0 {
		return min(dataRateGrace, l.idle)
	}
	return dataRateGrace
}

// guardMode is what the next bytes from the client are.
type guardMode int

const (
	modeCommand     guardMode = iota // command lines
	modeData                         // DATA content up to <CR><LF>.<CR><LF>
	modeChunk                        // a BDAT chunk of a known size
	modeSkipLine                     // the rest of an over-long command line
	modePassthrough                  // TLS: bytes go through unexamined
)

// awaiting is the command whose reply decides the next mode.
type awaiting int

const (
	awaitNothing awaiting = iota
	awaitData
	awaitStartTLS
)

// errDataTimeout is the reply to a client too slow or silent inside DATA.
var errDataTimeout = smtpErr(421, smtp.EnhancedCode{4, 4, 2}, "Timeout or too slow while receiving data, closing connection")

// guardConn is a net.Conn that enforces guardLimits; see the top of the
// file. go-smtp reads it from one goroutine; Write may race with Read only
// around STARTTLS and shutdown, so the mode is kept under a mutex.
type guardConn struct {
	net.Conn
	lim guardLimits

	// buf holds bytes read from the client that go-smtp has not had yet;
	// the first ready of them are checked and may be handed out.
	buf   []byte
	ready int
	store []byte // buf's backing array, reused
	seen  bool   // the first byte from the client has been looked at

	mu       sync.Mutex
	mode     guardMode
	await    awaiting
	dot      int       // go-smtp's end-of-data state machine (see dotState)
	chunk    int64     // bytes left in the BDAT chunk
	started  time.Time // when content started, for the data rate
	received int64     // content bytes since started
	long     int       // refused command lines so far
	ended    bool      // no more reading: EOF from now on
	closeOn  bool      // close the connection after the next write
	drop     bool      // discard what the client sent before TLS started
}

func newGuardConn(c net.Conn, lim guardLimits) *guardConn {
	if lim.commandLine <= 0 {
		lim.commandLine = 1000
	}
	return &guardConn{Conn: c, lim: lim}
}

// guardOf finds the guard under a connection go-smtp hands to a session
// (which may be TLS over the guard after STARTTLS).
func guardOf(c net.Conn) *guardConn {
	for {
		switch v := c.(type) {
		case *guardConn:
			return v
		case *countedConn:
			c = v.Conn
		case interface{ NetConn() net.Conn }: // *tls.Conn
			c = v.NetConn()
		default:
			return nil
		}
	}
}

// Read hands go-smtp checked bytes: one whole command line at a time in
// command mode, content up to its end in DATA or a chunk.
func (g *guardConn) Read(p []byte) (int, error) {
	for {
		g.mu.Lock()
		mode, ended, drop := g.mode, g.ended, g.drop
		g.drop = false
		g.mu.Unlock()
		if ended {
			return 0, io.EOF
		}
		if drop {
			// Bytes sent after STARTTLS but before our 220 were sent
			// in clear text and must not count as part of the TLS
			// session (the STARTTLS command injection of CVE-2011-0411).
			g.buf, g.ready = g.buf[:0], 0
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
			if mode == modePassthrough {
				n := copy(p, g.buf)
				g.consume(n)
				return n, nil
			}
		}
		if mode == modePassthrough && len(g.buf) == 0 {
			return g.Conn.Read(p)
		}
		if err := g.fill(mode); err != nil {
			return 0, err
		}
	}
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
		if !g.seen {
			g.seen = true
			if g.buf[0] == 0x16 {
				// A TLS handshake record: implicit TLS (port 465),
				// where the guard can only pass bytes through.
				g.setMode(modePassthrough)
				g.ready = len(g.buf)
				return nil
			}
		}
		i := bytes.IndexByte(g.buf, '\n')
		if i < 0 {
			if len(g.buf) >= g.lim.commandLine {
				return g.tooLong(-1)
			}
			return nil
		}
		if i+1 > g.lim.commandLine {
			return g.tooLong(i)
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
		g.command(line)
		g.ready = i + 1
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
	case modePassthrough:
	}
	return nil
}

// tooLong answers an over-long command line and skips it: up to end, the
// index of its LF, or (end < 0) up to a LF still to come.
func (g *guardConn) tooLong(end int) error {
	return g.badLine(end, "command_too_long", "500 5.5.2 Line too long")
}

// badLine answers a command line go-smtp must not see, and skips it (see
// tooLong for end).
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
		io.WriteString(g.Conn, "421 4.7.0 Too many bad commands, closing connection\r\n")
		g.end()
		g.Conn.Close()
		return io.EOF
	}
	io.WriteString(g.Conn, reply+"\r\n")
	if end < 0 {
		g.setMode(modeSkipLine)
	}
	return nil
}

// command notes what a command line handed to go-smtp does to the mode:
// DATA and STARTTLS depend on the reply, BDAT's chunk follows at once. The
// parsing follows go-smtp's (parseCmd, handleBdat) so both agree.
func (g *guardConn) command(line []byte) {
	s := strings.TrimRight(string(line), "\r\n")
	upper := strings.ToUpper(s)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.await = awaitNothing
	switch {
	case strings.HasPrefix(upper, "STARTTLS"):
		g.await = awaitStartTLS
	case upper == "DATA":
		g.await = awaitData
	case len(s) > 5 && upper[:4] == "BDAT" && s[4] == ' ':
		args := strings.Fields(s[5:])
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
// after DATA or STARTTLS what comes next.
func (g *guardConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	switch g.await {
	case awaitData:
		if bytes.HasPrefix(p, []byte("354")) {
			g.mode, g.dot = modeData, 0
			g.startContent()
		}
	case awaitStartTLS:
		if bytes.HasPrefix(p, []byte("220")) {
			g.mode, g.drop = modePassthrough, true
		}
	}
	g.await = awaitNothing
	closeAfter := g.closeOn
	g.mu.Unlock()
	p = g.fixSize(p)
	n, err := g.Conn.Write(p)
	if closeAfter {
		g.Conn.Close()
	}
	return n, err
}

// fill reads more from the client. In content it sets the read deadline
// that the data rate and the idle timeout allow, and turns a timeout into
// the 421 reply that also ends the connection.
func (g *guardConn) fill(mode guardMode) error {
	if cap(g.buf)-len(g.buf) < 4096 {
		if need := len(g.buf) + 16*1024; cap(g.store) < need {
			g.store = make([]byte, 0, need)
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
	n, err := g.Conn.Read(g.buf[len(g.buf):cap(g.buf)])
	g.buf = g.buf[:len(g.buf)+n]
	if content {
		g.mu.Lock()
		g.received += int64(n)
		g.mu.Unlock()
	}
	if err != nil && n == 0 {
		var ne net.Error
		if content && errors.As(err, &ne) && ne.Timeout() {
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

func (g *guardConn) passthrough() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mode == modePassthrough
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
// setting, one byte over the limit (see newSMTPServer), to the limit. go-smtp
// writes each reply line with its own Write.
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

// dataDeadlines is the data-rate rule for DATA on a TLS connection, where
// the guard sees only ciphertext: before each read of content it sets the
// read deadline the rate and the idle timeout allow.
type dataDeadlines struct {
	r        io.Reader
	conn     net.Conn
	lim      guardLimits
	started  time.Time
	received int64
}

func (d *dataDeadlines) Read(p []byte) (int, error) {
	d.conn.SetReadDeadline(d.lim.deadline(d.started, d.received, time.Now()))
	n, err := d.r.Read(p)
	d.received += int64(n)
	return n, err
}

// dataReader wraps the DATA reader of a session on c: it enforces the size
// limit (go-smtp is given one byte more) and, on a TLS connection, the data
// rate (the guard does on plain ones).
func (g *guardConn) dataReader(r io.Reader, c net.Conn, maxBytes int64) io.Reader {
	r = &sizeCap{r: r, left: maxBytes}
	if g == nil || !g.passthrough() || c == nil {
		return r
	}
	return &dataDeadlines{r: r, conn: c, lim: g.lim, started: time.Now()}
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
