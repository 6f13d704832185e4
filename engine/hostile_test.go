package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postroom/engine/config"
	"postroom/storage"
)

// wireClient speaks SMTP byte by byte, for clients that misbehave.
type wireClient struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialWire(t testing.TB, addr string) *wireClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &wireClient{t: t, c: c, r: bufio.NewReader(c)}
	rc.expect("220")
	return rc
}

func (c *wireClient) send(s string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("writing %.40q: %v", s, err)
	}
}

// reply reads one whole reply and returns its last line.
func (c *wireClient) reply() (string, error) {
	c.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return line, err
		}
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimRight(line, "\r\n"), nil
		}
	}
}

// expect reads a reply and fails unless it starts with prefix.
func (c *wireClient) expect(prefix string) string {
	c.t.Helper()
	line, err := c.reply()
	if err != nil || !strings.HasPrefix(line, prefix) {
		c.t.Fatalf("got reply %q (err %v), want %q", line, err, prefix)
	}
	return line
}

// closed asserts that the server sends nothing more and closes.
func (c *wireClient) closed() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	rest, err := io.ReadAll(c.r)
	if len(rest) > 0 {
		c.t.Fatalf("the server went on talking: %q", rest)
	}
	if isTimeout(err) {
		c.t.Fatal("the connection is still open")
	}
}

// startHostile starts a relay whose mail goes to a fake next hop, with
// the settings changed by edit.
func startHostile(t *testing.T, edit func(*config.Settings)) (*relay, *nextHop) {
	t.Helper()
	hop := newNextHop(t)
	s := testSettings(hop)
	if edit != nil {
		edit(&s)
	}
	return startRelay(t, s, Options{}, ""), hop
}

func queued(t *testing.T, r *relay) int {
	t.Helper()
	rows, err := r.store.List(context.Background(), storage.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(rows)
}

func TestHTTPRequestClosesTheConnectionAtOnce(t *testing.T) {
	t.Parallel()
	r, _ := startHostile(t, nil)
	for _, first := range []string{
		"GET / HTTP/1.1\r\nHost: relay.test\r\n\r\n",
		"POST /index.php HTTP/1.0\r\n",
		"CONNECT mx.example.com:25 HTTP/1.1\r\n",
		"Host: relay.test\r\n",
		"head / HTTP/1.1\r\n",
	} {
		c := dialWire(t, r.e.ListenAddr())
		c.send(first)
		c.closed()
	}
	// Also after a proper greeting, and nothing of it is treated as SMTP.
	c := dialWire(t, r.e.ListenAddr())
	c.send("EHLO client.test\r\n")
	c.expect("250")
	c.send("OPTIONS * HTTP/1.1\r\nMAIL FROM:<a@example.org>\r\n")
	c.closed()
	// "POSTMASTER" and the like are not HTTP: an unknown command gets its
	// ordinary reply.
	c = dialWire(t, r.e.ListenAddr())
	c.send("POSTMASTER\r\n")
	c.expect("501 5.5.2")
}

func TestCommandOver1000OctetsRefusedContentLinesMayBeLong(t *testing.T) {
	t.Parallel()
	r, hop := startHostile(t, nil)
	c := dialWire(t, r.e.ListenAddr())
	c.send("EHLO client.test\r\n")
	c.expect("250")
	// Exactly 1000 octets with the CRLF: accepted.
	c.send("NOOP " + strings.Repeat("x", 1000-len("NOOP ")-2) + "\r\n")
	c.expect("250")
	// 1001: refused, and the session goes on.
	c.send("NOOP " + strings.Repeat("x", 1001-len("NOOP ")-2) + "\r\n")
	c.expect("500 5.5.2")
	// A long MAIL command pipelined with good ones: only it is refused, and
	// nothing of it is read as a command.
	c.send("MAIL FROM:<" + strings.Repeat("a", 3000) + "@example.org> RCPT TO:<x@example.net>\r\nNOOP\r\n")
	c.expect("500 5.5.2")
	c.expect("250")
	// Content lines of 5000 octets are accepted.
	long := strings.Repeat("y", 5000)
	c.send("MAIL FROM:<a@example.org>\r\n")
	c.expect("250")
	c.send("RCPT TO:<b@example.net>\r\n")
	c.expect("250")
	c.send("DATA\r\n")
	c.expect("354")
	c.send("Subject: long\r\n\r\n" + long + "\r\n.\r\n")
	c.expect("250 2.0.0")
	got := hop.wait()
	if !bytes.Contains(bytes.ReplaceAll(got.Data, []byte("\r\n "), nil), []byte(long)) {
		t.Error("the long line's text did not arrive")
	}
	if n := longestLine(got.Data); n > 998 {
		t.Errorf("a line of %d octets went out, want at most 998", n)
	}
	// A third over-long command ends the connection.
	c.send(strings.Repeat("z", 2000) + "\r\n")
	c.expect("421")
	c.closed()
}

func TestIdleClientIsDisconnected(t *testing.T) {
	t.Parallel()
	r, _ := startHostile(t, func(s *config.Settings) { s.Limits.IdleTimeout = config.Duration(time.Second) })
	c := dialWire(t, r.e.ListenAddr())
	start := time.Now()
	c.expect("421 4.4.2")
	c.closed()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("disconnected after %v, want about the 1s idle timeout", d)
	}
}

// startData opens a transaction up to the 354.
func (c *wireClient) startData() {
	c.t.Helper()
	c.send("EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("250")
	c.expect("354")
}

func TestReadTimeoutInDataAnswers421AndReadsNoMoreCommands(t *testing.T) {
	t.Parallel()
	r, hop := startHostile(t, func(s *config.Settings) { s.Limits.IdleTimeout = config.Duration(time.Second) })
	c := dialWire(t, r.e.ListenAddr())
	c.startData()
	c.send("Subject: stalled\r\n\r\nfirst part\r\n")
	// The client stalls past the idle timeout.
	c.expect("421 4.4.2")
	// What it sends afterwards is never a command: go-smtp issue #196
	// would have answered these.
	c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c.c, "\r\n.\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nsmuggled\r\n.\r\n")
	c.closed()
	if n := queued(t, r); n != 0 {
		t.Errorf("%d messages queued, want none", n)
	}
	hop.none(200 * time.Millisecond)
}

func TestBDATChunkTimeoutAnswers421AndCloses(t *testing.T) {
	t.Parallel()
	r, _ := startHostile(t, func(s *config.Settings) { s.Limits.IdleTimeout = config.Duration(time.Second) })
	c := dialWire(t, r.e.ListenAddr())
	c.send("EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("250")
	c.send("BDAT 1000 LAST\r\nSubject: x\r\n\r\nonly part")
	c.expect("421 4.4.2")
	c.closed()
	if n := queued(t, r); n != 0 {
		t.Errorf("%d messages queued, want none", n)
	}
}

func TestBDATChunkContentIsNeverACommand(t *testing.T) {
	t.Parallel()
	r, hop := startHostile(t, nil)
	c := dialWire(t, r.e.ListenAddr())
	// The chunk holds what would be an over-long command and an HTTP
	// line: inside a chunk they are content.
	body := "Subject: chunk\r\n\r\nGET / HTTP/1.1\r\n" + strings.Repeat("q", 3000) + "\r\n"
	c.send("EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("250")
	c.send("BDAT " + strconv.Itoa(len(body)) + " LAST\r\n" + body)
	c.expect("250 2.0.0")
	c.send("QUIT\r\n")
	c.expect("221")
	got := hop.wait()
	if !bytes.Contains(got.Data, []byte("GET / HTTP/1.1\r\n")) {
		t.Errorf("chunk content changed: %q", got.Data)
	}
}

func TestTricklingClientIsCutInData(t *testing.T) {
	t.Parallel()
	r, _ := startHostile(t, func(s *config.Settings) {
		s.Limits.IdleTimeout = config.Duration(2 * time.Second) // so the grace is 2s too
		s.Limits.MinDataRate = 1000
	})
	c := dialWire(t, r.e.ListenAddr())
	c.startData()
	start := time.Now()
	// 10 bytes every 100ms: never silent for the idle timeout, but 100
	// bytes a second is a tenth of the minimum.
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for range 100 {
			<-tick.C
			c.c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := io.WriteString(c.c, "xxxxxxxxx\n"); err != nil {
				return
			}
		}
	}()
	c.expect("421 4.4.2")
	c.closed()
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("cut after %v, want soon after the 2s grace", d)
	}
	c.c.Close()
	<-done
}

func TestSlowSteadyUploadLongerThanIdleTimeoutPasses(t *testing.T) {
	t.Parallel()
	r, hop := startHostile(t, func(s *config.Settings) {
		s.Limits.IdleTimeout = config.Duration(time.Second)
		s.Limits.MinDataRate = 1000
	})
	c := dialWire(t, r.e.ListenAddr())
	c.startData()
	start := time.Now()
	c.send("Subject: slow\r\n\r\n")
	// 2 KB every 100ms for 3 seconds: well over the minimum rate, and the
	// whole upload takes three times the idle timeout, which go-smtp's
	// single read deadline for DATA would have cut.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for range 30 {
		<-tick.C
		c.send(strings.Repeat("s", 2046) + "\r\n")
	}
	c.send(".\r\n")
	c.expect("250 2.0.0")
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("the upload took only %v; the test proves nothing", d)
	}
	if got := hop.wait(); len(got.Data) < 60000 {
		t.Errorf("delivered %d bytes, want the whole 60 KB", len(got.Data))
	}
}

func TestMessageOfExactlyTheLimitIsAcceptedOneMoreRefused(t *testing.T) {
	t.Parallel()
	r, _ := startHostile(t, func(s *config.Settings) { s.Limits.MaxMessageBytes = 2048 })
	c, err := smtp.Dial(r.e.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	head := "Subject: size\r\n\r\n"
	exact := head + strings.Repeat("e", 2048-len(head)-2) + "\r\n"
	if err := c.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(exact)); err != nil {
		t.Fatalf("a message of exactly max_message_bytes: %v", err)
	}
	over := head + strings.Repeat("e", 2048-len(head)-1) + "\r\n"
	err = c.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(over))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 552 || se.EnhancedCode != (smtp.EnhancedCode{5, 3, 4}) {
		t.Fatalf("one byte over: %v, want 552 5.3.4", err)
	}
	if err := c.Noop(); err != nil {
		t.Fatalf("session unusable after 552: %v", err)
	}
}

// TestSmugglingSequencesStayInOneMessage sends the end-of-data look-alikes
// of CVE-2023-51764 and its siblings with a second transaction after each:
// only <CR><LF>.<CR><LF> ends a message, so exactly one message arrives,
// and what goes onward has no bare CR or LF.
func TestSmugglingSequencesStayInOneMessage(t *testing.T) {
	t.Parallel()
	r, hop := startHostile(t, nil)
	smuggled := "MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n"
	for _, end := range []string{"\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r", "\r\r\n.\r\n"} {
		c := dialWire(t, r.e.ListenAddr())
		c.startData()
		c.send("Subject: outer\r\n\r\nbefore" + end + smuggled + "\r\n.\r\n")
		c.expect("250 2.0.0")
		c.send("QUIT\r\n")
		c.expect("221")
		got := hop.wait()
		if got.From != "a@example.org" {
			t.Fatalf("end %q: message from %q reached the next hop", end, got.From)
		}
		d := got.Data
		if bytes.Contains(bytes.ReplaceAll(d, []byte("\r\n"), nil), []byte("\n")) ||
			bytes.Contains(bytes.ReplaceAll(d, []byte("\r\n"), nil), []byte("\r")) {
			t.Errorf("end %q: bare CR or LF went onward: %q", end, d)
		}
	}
	hop.none(300 * time.Millisecond)
}

// longestLine is the length of data's longest line without its CRLF.
func longestLine(data []byte) int {
	longest := 0
	for line := range bytes.SplitSeq(data, []byte("\r\n")) {
		longest = max(longest, len(line))
	}
	return longest
}

// dialWireSTARTTLS connects to addr, says EHLO and starts TLS, and returns
// a wire client over TLS that has said nothing yet.
func dialWireSTARTTLS(t *testing.T, addr string) *wireClient {
	t.Helper()
	c := dialWire(t, addr)
	c.send("EHLO client.test\r\n")
	if ehlo := c.expect("250"); ehlo == "" {
		t.Fatal("no EHLO reply")
	}
	c.send("STARTTLS\r\n")
	c.expect("220 2.0.0")
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("STARTTLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	return &wireClient{t: t, c: tc, r: bufio.NewReader(tc)}
}

// dialWireImplicitTLS connects to the implicit-TLS port addr and reads the
// greeting.
func dialWireImplicitTLS(t *testing.T, addr string) *wireClient {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	tc, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	c := &wireClient{t: t, c: tc, r: bufio.NewReader(tc)}
	c.expect("220")
	return c
}

// tlsWireClients returns, for each way into a TLS session (STARTTLS on the
// main port, STARTTLS on the submission port, implicit TLS on port 465), a
// function that opens one.
func tlsWireClients(r *tlsRelay) map[string]func(*testing.T) *wireClient {
	return map[string]func(*testing.T) *wireClient{
		"STARTTLS": func(t *testing.T) *wireClient {
			c := dialWireSTARTTLS(t, r.e.ListenAddr())
			c.send("EHLO client.test\r\n")
			c.expect("250")
			return c
		},
		"submission STARTTLS": func(t *testing.T) *wireClient {
			c := dialWireSTARTTLS(t, r.submission)
			c.send("EHLO client.test\r\n")
			c.expect("250")
			return c
		},
		"implicit TLS": func(t *testing.T) *wireClient {
			c := dialWireImplicitTLS(t, r.implicit)
			c.send("EHLO client.test\r\n")
			c.expect("250")
			return c
		},
	}
}

// TestGuardRulesHoldInsideTLS proves that the connection guard sees the
// plain text of TLS sessions, after STARTTLS and on port 465: over-long and
// control-byte command lines are refused, an HTTP line closes the
// connection, and a stalled DATA ends with 421 without reading what follows
// as commands.
func TestGuardRulesHoldInsideTLS(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	s := testSettings(hop)
	s.Limits.IdleTimeout = config.Duration(time.Second)
	r := startTLSRelay(t, s, Options{}, "")
	for name, open := range tlsWireClients(r) {
		t.Run(name, func(t *testing.T) {
			c := open(t)
			c.send("NOOP " + strings.Repeat("x", 1000-len("NOOP ")-2) + "\r\n")
			c.expect("250")
			c.send("NOOP " + strings.Repeat("x", 1001-len("NOOP ")-2) + "\r\n")
			c.expect("500 5.5.2 Line too long")
			c.send("NOOP \x1b[2J\r\n")
			c.expect("500 5.5.2 Control characters")
			c.send("RSET\r\n")
			c.expect("250")

			c = open(t)
			c.send("GET / HTTP/1.1\r\nHost: relay.test\r\n\r\n")
			c.closed()

			c = open(t)
			if name == "submission STARTTLS" {
				// MAIL needs AUTH there; the data rule is the same.
				return
			}
			c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
			c.expect("250")
			c.expect("250")
			c.expect("354")
			c.send("Subject: stalled\r\n\r\nfirst part\r\n")
			c.expect("421 4.4.2")
			c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c.c, ".\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nsmuggled\r\n.\r\n")
			c.closed()
		})
	}
	if n := queued(t, r.relay); n != 0 {
		t.Errorf("%d messages queued, want none", n)
	}
}

// TestDataRateAndBDATTimeoutHoldInsideTLS: a client trickling DATA over
// TLS is cut at the minimum data rate, and a BDAT chunk that stalls over
// TLS ends with 421 and a closed connection (go-smtp alone would read the
// rest of the chunk as commands).
func TestDataRateAndBDATTimeoutHoldInsideTLS(t *testing.T) {
	t.Parallel()
	s := testSettings(nil)
	s.Limits.IdleTimeout = config.Duration(2 * time.Second)
	s.Limits.MinDataRate = 1000
	r := startTLSRelay(t, s, Options{}, "")
	for name, open := range tlsWireClients(r) {
		if name == "submission STARTTLS" {
			continue // MAIL needs AUTH there
		}
		t.Run(name, func(t *testing.T) {
			c := open(t)
			c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
			c.expect("250")
			c.expect("250")
			c.expect("354")
			start := time.Now()
			done := make(chan struct{})
			go func() {
				defer close(done)
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for range 100 {
					<-tick.C
					c.c.SetWriteDeadline(time.Now().Add(time.Second))
					if _, err := io.WriteString(c.c, "xxxxxxxxx\n"); err != nil {
						return
					}
				}
			}()
			c.expect("421 4.4.2")
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("cut after %v, want soon after the 2s grace", d)
			}
			c.c.Close()
			<-done

			c = open(t)
			c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n")
			c.expect("250")
			c.expect("250")
			c.send("BDAT 1000 LAST\r\nSubject: x\r\n\r\nonly part")
			c.expect("421 4.4.2")
			c.closed()
		})
	}
	if n := queued(t, r.relay); n != 0 {
		t.Errorf("%d messages queued, want none", n)
	}
}

// TestIdleClientInsideTLSIsDisconnected: the idle timeout holds after the
// handshake, and a client that opens port 465 and never starts the
// handshake is closed too.
func TestIdleClientInsideTLSIsDisconnected(t *testing.T) {
	t.Parallel()
	s := testSettings(nil)
	s.Limits.IdleTimeout = config.Duration(time.Second)
	r := startTLSRelay(t, s, Options{}, "")
	for name, open := range tlsWireClients(r) {
		t.Run(name, func(t *testing.T) {
			c := open(t)
			start := time.Now()
			c.expect("421 4.4.2")
			c.closed()
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("disconnected after %v, want about the 1s idle timeout", d)
			}
		})
	}
	raw, err := net.DialTimeout("tcp", r.implicit, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(raw); isTimeout(err) {
		t.Fatal("a client that never starts the handshake on port 465 is not disconnected")
	}
}

// TestSTARTTLSNeedsANewEHLOAndIsOfferedOnce: after the handshake the client
// must introduce itself again (RFC 3207 section 4.2), STARTTLS is no longer
// offered, and a second STARTTLS is refused.
func TestSTARTTLSNeedsANewEHLOAndIsOfferedOnce(t *testing.T) {
	t.Parallel()
	r := startTLSRelay(t, testSettings(nil), Options{}, "")
	c := dialWireSTARTTLS(t, r.e.ListenAddr())
	c.send("MAIL FROM:<a@example.org>\r\n")
	c.expect("503 5.5.1")
	c.send("NOOP\r\n")
	c.expect("250")
	c.send("EHLO client.test\r\n")
	var ehlo []string
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		ehlo = append(ehlo, strings.TrimSpace(line))
		if line[3] == ' ' {
			break
		}
	}
	for _, l := range ehlo {
		if strings.Contains(l, "STARTTLS") {
			t.Errorf("STARTTLS offered inside TLS: %q", ehlo)
		}
	}
	c.send("STARTTLS\r\n")
	c.expect("502 5.5.1")
	c.send("MAIL FROM:<a@example.org>\r\n")
	c.expect("250")
}

// TestBadEHLONamesRefusedOfficeNamesAccepted: an EHLO or HELO name that
// cannot be a host name or address literal is refused with 501 5.5.2 and the
// session goes on; the names real office equipment sends are accepted, and
// the Received field carries the name.
func TestBadEHLONamesRefusedOfficeNamesAccepted(t *testing.T) {
	t.Parallel()
	r, hop := startHostile(t, nil)
	c := dialWire(t, r.e.ListenAddr())
	for _, bad := range []string{"EHLO a..b", "EHLO <script>", "HELO [300.1.2.3]", "EHLO host;rm", "EHLO " + strings.Repeat("l", 64) + ".example"} {
		c.send(bad + "\r\n")
		c.expect("501 5.5.2")
		// Three refused lines would end the connection: start afresh.
		c.send("QUIT\r\n")
		c.expect("221")
		c = dialWire(t, r.e.ListenAddr())
	}
	for _, good := range []string{"EHLO MY_PC", "EHLO 192.168.1.20", "EHLO [IPv6:2001:db8::1]", "HELO printer.lan.", "EHLO xn--bcher-kva.example"} {
		c.send(good + "\r\n")
		c.expect("250")
	}
	c.send("EHLO Scanner_3F\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("Subject: x\r\n\r\nx\r\n.\r\n")
	c.expect("250 2.0.0")
	if got := hop.wait(); !bytes.HasPrefix(got.Data, []byte("Received: from Scanner_3F ")) {
		t.Errorf("Received field: %.80q", got.Data)
	}
}

// TestSizeKeywordWithAnyLimitKeepsTheSessionUsable: the guard rewrites the
// SIZE keyword to max_message_bytes; when that is shorter than go-smtp's
// own text (99999 against 100000), the replies after EHLO must still reach
// the client.
func TestSizeKeywordWithAnyLimitKeepsTheSessionUsable(t *testing.T) {
	t.Parallel()
	r, _ := startHostile(t, func(s *config.Settings) { s.Limits.MaxMessageBytes = 99999 })
	c, err := smtp.Dial(r.e.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, size := c.Extension("SIZE"); !ok || size != "99999" {
		t.Fatalf("SIZE %q (offered %v), want 99999", size, ok)
	}
	if err := c.Noop(); err != nil {
		t.Fatalf("the reply after EHLO: %v", err)
	}
}

// TestClientTextNeverRawInLogs: text a client controls (here a user name
// tried in AUTH, with a line break and a terminal escape) reaches the log
// and the window's log lines only quoted, never as a line of its own.
func TestClientTextNeverRawInLogs(t *testing.T) {
	t.Parallel()
	ring := NewLogRing(1000)
	var text bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(ring.Handler(slog.NewTextHandler(lockedWriter{&mu, &text}, nil)))
	s := testSettings(nil)
	s.Listen.AuthWithoutTLS = true
	r := startRelay(t, s, Options{Logger: logger}, "")
	c := dialWire(t, r.e.ListenAddr())
	c.send("EHLO client.test\r\n")
	c.expect("250")
	evil := "evil\r\nforged-line\x1b[2J" // no space or "=", which were always quoted
	c.send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+evil+"\x00pw")) + "\r\n")
	c.expect("535")
	var lines []string
	for _, l := range ring.Since(0) {
		lines = append(lines, l.String())
	}
	found := false
	for _, l := range lines {
		if strings.Contains(l, "authentication failed") {
			found = true
		}
		if strings.ContainsFunc(l, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Errorf("window log line with a control character: %q", l)
		}
	}
	if !found {
		t.Fatalf("the failed login was not logged: %q", lines)
	}
	mu.Lock()
	defer mu.Unlock()
	for line := range strings.SplitSeq(text.String(), "\n") {
		if strings.Contains(line, "forged") && !strings.Contains(line, `\n`) {
			t.Errorf("the client's line break reached the log raw: %q", line)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestAddressRulesAtIntake sends MAIL and RCPT values past each address
// rule and checks the reply a client sees; the session stays usable after
// each refusal.
func TestAddressRulesAtIntake(t *testing.T) {
	t.Parallel()
	r, _ := startHostile(t, nil)
	c := dialWire(t, r.e.ListenAddr())
	c.send("EHLO client.test\r\n")
	c.expect("250")
	local64 := strings.Repeat("l", 64)
	label63 := strings.Repeat("d", 63)
	domain255 := strings.Join([]string{label63, label63, label63, strings.Repeat("d", 59), "net"}, ".") // 255 octets
	for _, tc := range []struct {
		name, mail, rcpt, want string
	}{
		{"local part of 64 octets", "", "<" + local64 + "@example.net>", "250"},
		{"local part of 65 octets", "", "<" + local64 + "l@example.net>", "553 5.1.3"},
		{"domain over 255 octets", "", "<a@" + domain255 + "x>", "553 5.1.3"},
		{"path of 256 octets", "", "<" + local64 + "@" + domain255[:187] + ".net>", "250"},
		{"path of 257 octets", "", "<" + local64 + "@" + domain255[:188] + ".net>", "553 5.1.3"},
		{"empty domain label", "", "<a@example..net>", "553 5.1.3"},
		{"label with an underscore", "", "<a@ex_ample.net>", "553 5.1.3"},
		{"IPv4 literal", "", "<a@[192.0.2.1]>", "250"},
		{"bad literal", "", "<a@[192.0.2.300]>", "553 5.1.3"},
		{"control byte in the sender", "<a\x01b@example.org>", "", "500 5.5.2"},
		{"UTF-8 sender without SMTPUTF8", "<jos\u00e9@example.org>", "", "553 5.6.7"},
		{"UTF-8 recipient without SMTPUTF8", "", "<jos\u00e9@example.net>", "553 5.6.7"},
		{"UTF-8 recipient with SMTPUTF8", "<a@example.org> SMTPUTF8", "<jos\u00e9@b\u00fccher.example.net>", "250"},
		{"quoted local part", "", "<\"a b\"@example.net>", "550 5.7.1"},
		{"percent hack", "", "<a%elsewhere.example@example.net>", "550 5.7.1"},
		{"bang path", "", "<elsewhere!a@example.net>", "550 5.7.1"},
		{"nested @", "", "<\"a@elsewhere.example\"@example.net>", "550 5.7.1"},
		// RFC 5321 section 4.1.1.3: a source route is ignored (go-smtp
		// drops it), so this is mail for a@example.net, not via the route.
		{"source route", "", "<@relay.example:a@example.net>", "250 2.0.0 I'll make sure <a@example.net>"},
	} {
		mail := tc.mail
		if mail == "" {
			mail = "<a@example.org>"
		}
		c.send("MAIL FROM:" + mail + "\r\n")
		if tc.rcpt == "" {
			if got := c.expect(tc.want[:3]); !strings.HasPrefix(got, tc.want) {
				t.Errorf("%s: MAIL answered %q, want %q", tc.name, got, tc.want)
			}
			c.send("RSET\r\n")
			c.expect("250")
			continue
		}
		c.expect("250")
		c.send("RCPT TO:" + tc.rcpt + "\r\n")
		if got, _ := c.reply(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: RCPT answered %q, want %q", tc.name, got, tc.want)
		}
		c.send("RSET\r\n")
		c.expect("250")
	}
}

// TestMoreThan50ReceivedIsAMailLoop: 50 Received fields pass, 51 are a mail
// loop refused with 554 5.4.6, and nothing of it is queued.
func TestMoreThan50ReceivedIsAMailLoop(t *testing.T) {
	t.Parallel()
	r, hop := startHostile(t, nil)
	trace := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "Received: from hop%d.example by hop%d.example; Tue, 2 Jan 2024 10:00:00 +0000\r\n", i, i+1)
		}
		return b.String()
	}
	if err := r.send("a@example.org", []string{"b@example.net"}, trace(50)+"Subject: 50\r\n\r\nx\r\n"); err != nil {
		t.Fatalf("50 Received fields: %v", err)
	}
	hop.wait()
	err := r.send("a@example.org", []string{"b@example.net"}, trace(51)+"Subject: 51\r\n\r\nx\r\n")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 4, 6}) {
		t.Fatalf("51 Received fields: %v, want 554 5.4.6", err)
	}
	if n := queued(t, r); n != 1 {
		t.Errorf("%d messages queued, want only the first", n)
	}
}

// TestBareLineEndsAndNULAreRepairedOrRefused: by default bare LF becomes
// CRLF and bare CR and NUL are replaced, so that what goes onward has none
// of them; with limits.strict_line_endings the message is refused with
// 550 5.5.2 and the session goes on.
func TestBareLineEndsAndNULAreRepairedOrRefused(t *testing.T) {
	t.Parallel()
	body := "Subject: printer\nX-A: b\r\n\r\nline one\nline two\rstill two\x00\r\n.hidden\n.\n"
	r, hop := startHostile(t, nil)
	if err := r.send("a@example.org", []string{"b@example.net"}, body); err != nil {
		t.Fatal(err)
	}
	got := hop.wait().Data
	stripped := bytes.ReplaceAll(got, []byte("\r\n"), nil)
	if bytes.ContainsAny(stripped, "\r\n\x00") {
		t.Errorf("bare CR, LF or NUL went onward: %q", got)
	}
	if !bytes.Contains(got, []byte("\r\nline one\r\nline two")) || !bytes.Contains(got, []byte("Subject: printer\r\nX-A: b\r\n")) {
		t.Errorf("bare LF not turned into CRLF: %q", got)
	}

	strict, _ := startHostile(t, func(s *config.Settings) { s.Limits.StrictLineEndings = true })
	c := dialWire(t, strict.e.ListenAddr())
	for _, bad := range []string{"a\nb", "a\rb", "a\x00b"} {
		c.send("EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
		c.expect("250")
		c.expect("250")
		c.expect("250")
		c.expect("354")
		c.send("Subject: x\r\n\r\n" + bad + "\r\n.\r\n")
		c.expect("550 5.5.2")
	}
	c.send("NOOP\r\n")
	c.expect("250")
	if n := queued(t, strict); n != 0 {
		t.Errorf("strict mode queued %d messages", n)
	}
}

// TestBDATSmugglingSequencesStayInOneMessage: in BDAT only the announced
// size ends a chunk, so an end-of-data sequence inside a chunk is content;
// the message goes onward as one, with bare line ends repaired and its "."
// line dot-stuffed so the next hop reads it as content too.
func TestBDATSmugglingSequencesStayInOneMessage(t *testing.T) {
	t.Parallel()
	r, hop := startHostile(t, nil)
	c := dialWire(t, r.e.ListenAddr())
	first := "Subject: outer\r\n\r\nbefore\r\n.\r\nMAIL FROM:<evil@example.org>\r\n"
	second := "RCPT TO:<victim@example.net>\r\nDATA\r\nbare\n.\nend\r\n"
	c.send("EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("250")
	c.send("BDAT " + strconv.Itoa(len(first)) + "\r\n" + first)
	c.expect("250")
	c.send("BDAT " + strconv.Itoa(len(second)) + " LAST\r\n" + second)
	c.expect("250 2.0.0")
	c.send("QUIT\r\n")
	c.expect("221")
	got := hop.wait()
	if got.From != "a@example.org" || !bytes.Contains(got.Data, []byte("\r\n.\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nbare\r\n.\r\nend\r\n")) {
		t.Errorf("from %q, data %q: want one message with the look-alikes as content", got.From, got.Data)
	}
	hop.none(300 * time.Millisecond)
}
