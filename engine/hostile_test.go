package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
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
