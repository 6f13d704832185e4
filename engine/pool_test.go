package engine

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"postroom/engine/config"
	"postroom/storage"
)

// rawHop is a scripted SMTP server on 127.0.0.1:0 that counts connections
// and messages, can drop every open connection, and can drop a connection
// right after answering NOOP (so that the next command finds it closed).
type rawHop struct {
	t  *testing.T
	ln net.Listener
	rawHopOptions

	mu        sync.Mutex
	conns     []net.Conn
	accepted  int
	dropNoops int // connections still to drop after NOOP
	msgs      chan string
}

// rawHopOptions change how a rawHop behaves.
type rawHopOptions struct {
	// pipelining offers PIPELINING. The hop still answers one line at a
	// time, which a pipelining client cannot tell from a server that
	// reads ahead.
	pipelining bool
	// hangUp closes each connection right after the first message taken
	// on it (after a 421 when bye421 is set too), as a server does with a
	// client that stays idle: a session kept for reuse is then dead when
	// its next message comes.
	hangUp, bye421 bool
}

func newRawHop(t *testing.T) *rawHop { return newRawHopWith(t, rawHopOptions{}) }

func newRawHopWith(t *testing.T, opts rawHopOptions) *rawHop {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &rawHop{t: t, ln: ln, rawHopOptions: opts, msgs: make(chan string, 10)}
	t.Cleanup(func() { ln.Close(); h.dropAll() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.accepted++
			h.mu.Unlock()
			go h.serve(c)
		}
	}()
	return h
}

func (h *rawHop) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	reply := func(s string) { c.Write([]byte(s + "\r\n")) }
	reply("220 raw.test ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO":
			if h.pipelining {
				reply("250-raw.test\r\n250-8BITMIME\r\n250 PIPELINING")
			} else {
				reply("250-raw.test\r\n250 8BITMIME")
			}
		case "NOOP":
			reply("250 2.0.0 OK")
			h.mu.Lock()
			drop := h.dropNoops > 0
			if drop {
				h.dropNoops--
			}
			h.mu.Unlock()
			if drop {
				return
			}
		case "DATA":
			reply("354 go on")
			var body strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				body.WriteString(l)
			}
			h.msgs <- body.String()
			reply("250 2.0.0 OK: queued")
			if h.hangUp {
				if h.bye421 {
					reply("421 4.4.2 raw.test closing: idle too long")
				}
				return
			}
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default: // MAIL, RCPT, RSET
			reply("250 2.0.0 OK")
		}
	}
}

// dropAll closes every connection open at the server side.
func (h *rawHop) dropAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
}

func (h *rawHop) connections() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.accepted
}

func (h *rawHop) wait() string {
	h.t.Helper()
	select {
	case m := <-h.msgs:
		return m
	case <-time.After(10 * time.Second):
		h.t.Fatal("timed out waiting for a message at the next hop")
	}
	return ""
}

func (h *rawHop) none() {
	h.t.Helper()
	select {
	case m := <-h.msgs:
		h.t.Fatalf("a message arrived twice:\n%s", m)
	case <-time.After(200 * time.Millisecond):
	}
}

func rawHopSettings(h *rawHop) config.Settings {
	s := testSettings(nil)
	s.Delivery.Routes = []config.Route{{Domain: "example.net", Host: h.ln.Addr().String()}}
	return s
}

// sendAndWait sends one message and waits until it is recorded as sent.
func sendAndWait(t *testing.T, r *relay, h *rawHop, subject string) {
	t.Helper()
	r.mustSend("a@example.org", []string{"b@example.net"}, strings.Replace(simpleBody, "hello", subject, 1))
	if m := h.wait(); !strings.Contains(m, "Subject: "+subject) {
		t.Fatalf("the next hop got the wrong message:\n%s", m)
	}
	r.waitFor("sent", allIn(storage.Sent))
}

func TestNextMessageReusesTheConnection(t *testing.T) {
	t.Parallel()
	h := newRawHop(t)
	r := startRelay(t, rawHopSettings(h), Options{}, "")
	sendAndWait(t, r, h, "one")
	sendAndWait(t, r, h, "two")
	if n := h.connections(); n != 1 {
		t.Fatalf("two messages a moment apart took %d connections, want 1", n)
	}
}

func TestKeptConnectionTheServerClosedIsNotUsed(t *testing.T) {
	t.Parallel()
	h := newRawHop(t)
	r := startRelay(t, rawHopSettings(h), Options{}, "")
	sendAndWait(t, r, h, "one")
	h.dropAll() // the next hop drops the idle client
	sendAndWait(t, r, h, "two")
	h.none()
	if n := h.connections(); n != 2 {
		t.Fatalf("took %d connections, want 2: the dropped one and a new one", n)
	}
}

// The connection passes the check and dies before the message: the
// message goes on a new connection, exactly once, and is recorded as
// sent at the first attempt.
func TestKeptConnectionDyingAfterTheCheckSendsOnANewOneOnce(t *testing.T) {
	t.Parallel()
	h := newRawHop(t)
	r := startRelay(t, rawHopSettings(h), Options{}, "")
	sendAndWait(t, r, h, "one")
	h.mu.Lock()
	h.dropNoops = 1
	h.mu.Unlock()
	sendAndWait(t, r, h, "two")
	h.none()
	if n := h.connections(); n != 2 {
		t.Fatalf("took %d connections, want 2", n)
	}
	for _, row := range r.waitFor("sent", allIn(storage.Sent)) {
		if row.Attempts != 1 {
			t.Errorf("recipient %d took %d attempts, want 1 (the retry on a new connection is part of it)", row.ID, row.Attempts)
		}
	}
}

// A kept connection is never used under other settings: here another
// EHLO name, as after a settings change.
func TestKeptConnectionNotUsedAfterTheSettingsChange(t *testing.T) {
	t.Parallel()
	h := newRawHop(t)
	s := rawHopSettings(h)
	r := startRelay(t, s, Options{}, "")
	sendAndWait(t, r, h, "one")
	s.Hostname = "other.test"
	if err := r.e.SaveSettings(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	sendAndWait(t, r, h, "two")
	if n := h.connections(); n != 2 {
		t.Fatalf("took %d connections, want 2: a kept one may not change its EHLO name", n)
	}
}

// A kept session to a next hop with PIPELINING gets no NOOP check; when
// the next hop has closed it, the message goes again at once on a new
// connection, is taken exactly once, and counts as one attempt.
func TestKeptPipeliningConnectionTheServerClosedSendsOnANewOneOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		bye421 bool
	}{{"closed", false}, {"421 then closed", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newRawHopWith(t, rawHopOptions{pipelining: true, hangUp: true, bye421: tc.bye421})
			r := startRelay(t, rawHopSettings(h), Options{}, "")
			sendAndWait(t, r, h, "one")
			sendAndWait(t, r, h, "two")
			h.none()
			if n := h.connections(); n != 2 {
				t.Errorf("%d connections, want 2 (one per message: the hop closed the first)", n)
			}
			for _, row := range r.waitFor("sent", allIn(storage.Sent)) {
				if row.Attempts != 1 {
					t.Errorf("recipient %d took %d attempts, want 1", row.ID, row.Attempts)
				}
			}
		})
	}
}
