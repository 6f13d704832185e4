package engine

import (
	"bytes"
	"context"
	"io"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"postroom/engine/config"
	"postroom/storage"
)

// countingStore counts the messages intake stores.
type countingStore struct {
	*storage.Store
	n atomic.Int64
}

func (c *countingStore) Enqueue(ctx context.Context, m *storage.NewMessage, body io.Reader) (int64, error) {
	id, err := c.Store.Enqueue(ctx, m, body)
	if err == nil {
		c.n.Add(1)
	}
	return id, err
}

// replyLine is a well-formed reply line: three digits, then a space or a
// dash, and text without control bytes but HT, which RFC 5321's textstring
// allows (go-smtp quotes an unknown command, tabs included, in its 500).
var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -][^\x00-\x08\x0a-\x1f\x7f]*$`)

// FuzzSMTPDialogue sends random bytes as a whole client dialogue (after the
// greeting) and checks what a client could observe: no panic (go-smtp would
// turn one into "421 4.0.0 Internal server error"), every reply line
// well-formed and CRLF-terminated, and never more than one message stored
// per DATA or BDAT, each announced by exactly one "queued as" reply.
func FuzzSMTPDialogue(f *testing.F) {
	for _, seed := range []string{
		"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nx\n.\nMAIL FROM:<e@example.org>\r\nRCPT TO:<v@example.net>\r\nDATA\r\ny\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 5\r\nab\r\ncBDAT 3 LAST\r\nd\r\n\r\nRSET\r\n",
		"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 100 LAST\r\nshort",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"HELO c\r\nNOOP " + strings.Repeat("x", 1200) + "\r\nNOOP\r\n",
		"EHLO c\r\nMAIL FROM:<a@example.org> SIZE=99999999999\r\nRCPT TO:<\"a@b\"@example.net>\r\nRCPT TO:<a%b@example.net>\r\nDATA\r\n",
		"EHLO c\r\nAUTH PLAIN =\r\nAUTH LOGIN\r\n*\r\nSTARTTLS\r\n\x16\x03\x01",
		"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" + strings.Repeat("Received: x\r\n", 60) + "\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n\x00\r\r\n.\r\r\n.\r\n",
		"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@example.org>\r\n",
		"EHLO a..b\r\nHELO <x>\r\nEHLO [1.2.3.4]\r\nEHLO MY_PC\r\nQUIT\r\n",
		"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 3\r\nabcBDAT 0 LAST\r\nQUIT\r\n",
	} {
		f.Add([]byte(seed))
	}

	dir := f.TempDir()
	st, err := storage.Open(context.Background(), dir+"/"+storage.FileName)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	cs := &countingStore{Store: st}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	e := New(Options{Store: cs, Listener: ln, SpoolDir: dir})
	s := testSettings(nil)
	s.Limits.IdleTimeout = config.Duration(time.Second)
	s.Limits.MaxMessageBytes = 64 << 10
	s.Delivery.Routes = []config.Route{{Domain: "example.net", Host: "127.0.0.1:1"}}
	ctx := context.Background()
	if err := e.SaveSettings(ctx, s); err != nil {
		f.Fatal(err)
	}
	// Nothing is sent: bounces would be stored messages too.
	if err := e.SetPaused(ctx, true); err != nil {
		f.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.Shutdown(ctx)
	})
	addr := e.ListenAddr()

	f.Fuzz(func(t *testing.T, input []byte) {
		if len(input) > 64<<10 {
			t.Skip()
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		before := cs.n.Load()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		go func() {
			c.Write(input)
			c.(*net.TCPConn).CloseWrite()
		}()
		out, err := io.ReadAll(c)
		if err != nil && !isReset(err) {
			t.Fatalf("reading the replies: %v", err)
		}
		stored := cs.n.Load() - before
		checkReplies(t, input, out, stored)
	})
}

// isReset reports a connection closed by the server while the client was
// still writing: the server may end the dialogue (HTTP, a timeout).
func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

func checkReplies(t *testing.T, input, out []byte, stored int64) {
	t.Helper()
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		t.Fatalf("the last reply line is not ended by CRLF: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n")
	queuedReplies := int64(0)
	for _, l := range lines {
		if l == "" && len(out) == 0 {
			continue
		}
		if !replyLine.MatchString(l) {
			t.Fatalf("malformed reply line %q in %q", l, out)
		}
		if strings.HasPrefix(l, "421 4.0.0") {
			t.Fatalf("the server panicked: %q", out)
		}
		if strings.HasPrefix(l, "250 2.0.0 OK: queued as ") {
			queuedReplies++
		}
	}
	if stored != queuedReplies {
		t.Fatalf("%d messages stored, %d announced", stored, queuedReplies)
	}
	upper := bytes.ToUpper(input)
	transactions := int64(bytes.Count(upper, []byte("DATA")) + bytes.Count(upper, []byte("BDAT")))
	if stored > transactions {
		t.Fatalf("%d messages stored from %d DATA/BDAT commands", stored, transactions)
	}
}
