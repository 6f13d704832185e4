package engine

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// writeCounter is a listener whose connections count the writes made to
// them.
type writeCounter struct {
	net.Listener
	writes atomic.Int64
}

func (l *writeCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingWrites{Conn: c, n: &l.writes}, nil
}

type countingWrites struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingWrites) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// A multi-line reply leaves in one write: go-smtp writes each line of the
// EHLO reply on its own, which cost a system call per extension.
func TestEHLOReplyIsOneWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wc := &writeCounter{Listener: ln}
	r := startRelay(t, testSettings(nil), Options{Listener: wc}, "")
	defer r.stop()
	c := dialRaw(t, r)
	before := wc.writes.Load() // the greeting
	text := c.expect("EHLO client.test", 250)
	lines := strings.Split(text, "\n")
	if len(lines) < 4 {
		t.Fatalf("EHLO reply has %d lines, want several: %q", len(lines), text)
	}
	if !strings.Contains(text, "STARTTLS") || !strings.Contains(text, "PIPELINING") {
		t.Errorf("EHLO reply lacks STARTTLS or PIPELINING: %q", text)
	}
	if n := wc.writes.Load() - before; n != 1 {
		t.Errorf("the %d-line EHLO reply took %d writes, want 1", len(lines), n)
	}
	before = wc.writes.Load()
	c.expect("NOOP", 250)
	if n := wc.writes.Load() - before; n != 1 {
		t.Errorf("a one-line reply took %d writes, want 1", n)
	}
	c.expect("QUIT", 221)
}
