package deliver

import (
	"bufio"
	"context"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// groupHop is a raw next hop that answers a group of commands only once it
// has read all of it, as RFC 2920 allows a server to: with PIPELINING
// offered, a group ends with DATA (or EHLO, NOOP, QUIT), so a client that
// waits for the reply to MAIL before sending RCPT waits in vain. Without
// PIPELINING every command is a group of its own.
//
// It runs over net.Pipe, which has no buffer: one write of the client is
// one read of the hop when it fits the hop's 64 KiB reader, so the hop can
// tell how many writes a group or a message took.
type groupHop struct {
	pipelining bool
	// reply answers a command of a group ("" to close the connection
	// instead); nil, or "" returned for a command that needs an answer,
	// means the usual: 250, 354 to DATA, 221 to QUIT.
	reply func(conn int, cmd string) (text string, hangUp bool)
	// final answers the end of a message; hangUp closes the connection
	// instead.
	final func(conn int, data []byte) (text string, hangUp bool)
	// idleClose, when it returns true, has the hop close the connection
	// right after its reply to the end of a message, as a server does
	// with a client that stays idle too long.
	idleClose func(conn int) bool

	mu       sync.Mutex
	conns    int
	groups   []hopGroup
	messages []hopMessage
	early    []string // commands that arrived before the reply to the one before
}

// hopGroup is one group of commands as the hop read it.
type hopGroup struct {
	conn  int
	cmds  []string
	reads int // reads of the connection it took
}

// hopMessage is message content as the hop read it after a 354.
type hopMessage struct {
	conn  int
	data  string // as textproto's ReadDotBytes gives it: dots unstuffed, LF line ends
	reads int
}

// countedConn counts the reads made of a connection.
type countedConn struct {
	net.Conn
	reads atomic.Int32
}

func (c *countedConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

// config returns a Config whose connections go to the hop, and a route.
func (h *groupHop) config() (*Config, Route) {
	cfg := testConfig()
	cfg.TLS = TLSNone
	cfg.Dial = func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		h.mu.Lock()
		h.conns++
		n := h.conns
		h.mu.Unlock()
		go h.serve(server, n)
		return client, nil
	}
	return cfg, Route{Key: "group", Kind: RouteStatic, Hosts: []Hop{{Host: "192.0.2.25", Port: 25}}}
}

func (h *groupHop) serve(raw net.Conn, conn int) {
	defer raw.Close()
	c := &countedConn{Conn: raw}
	br := bufio.NewReaderSize(c, 64<<10)
	r := textproto.NewReader(br)
	send := func(lines []string) bool {
		if len(lines) == 0 {
			return true
		}
		_, err := raw.Write([]byte(strings.Join(lines, "\r\n") + "\r\n"))
		return err == nil
	}
	if !send([]string{"220 group.test ESMTP"}) {
		return
	}
	for {
		before := c.reads.Load()
		var group []string
		for {
			line, err := r.ReadLine()
			if err != nil {
				return
			}
			group = append(group, line)
			if !h.pipelining || endsGroup(line) {
				break
			}
		}
		h.mu.Lock()
		h.groups = append(h.groups, hopGroup{conn: conn, cmds: group, reads: int(c.reads.Load() - before)})
		if br.Buffered() > 0 {
			h.early = append(h.early, group[len(group)-1])
		}
		h.mu.Unlock()

		var replies []string
		for _, cmd := range group {
			text, hangUp := h.answer(conn, cmd)
			if hangUp {
				send(replies)
				return
			}
			replies = append(replies, text)
		}
		if !send(replies) {
			return
		}
		last := strings.ToUpper(group[len(group)-1])
		switch {
		case last == "QUIT":
			return
		case last == "DATA" && strings.HasPrefix(replies[len(replies)-1], "3"):
			before := c.reads.Load()
			data, err := r.ReadDotBytes()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.messages = append(h.messages, hopMessage{conn: conn, data: string(data), reads: int(c.reads.Load() - before)})
			h.mu.Unlock()
			text, hangUp := "250 2.0.0 queued", false
			if h.final != nil {
				text, hangUp = h.final(conn, data)
			}
			if hangUp || !send([]string{text}) || (h.idleClose != nil && h.idleClose(conn)) {
				return
			}
		}
	}
}

// answer is the hop's reply to one command.
func (h *groupHop) answer(conn int, cmd string) (string, bool) {
	if h.reply != nil {
		if text, hangUp := h.reply(conn, cmd); text != "" || hangUp {
			return text, hangUp
		}
	}
	switch verb := strings.ToUpper(strings.Fields(cmd + " x")[0]); verb {
	case "EHLO":
		if h.pipelining {
			return "250-group.test\r\n250-8BITMIME\r\n250-SIZE 1000000\r\n250 PIPELINING", false
		}
		return "250-group.test\r\n250-8BITMIME\r\n250 SIZE 1000000", false
	case "DATA":
		return "354 go on", false
	case "QUIT":
		return "221 2.0.0 bye", false
	}
	return "250 2.0.0 ok", false
}

// endsGroup reports whether cmd must be the last of a pipelined group
// (RFC 2920 section 3.1).
func endsGroup(cmd string) bool {
	switch strings.ToUpper(strings.Fields(cmd + " x")[0]) {
	case "EHLO", "HELO", "DATA", "NOOP", "QUIT":
		return true
	}
	return false
}

func (h *groupHop) snapshot() (groups []hopGroup, messages []hopMessage, early []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hopGroup(nil), h.groups...), append([]hopMessage(nil), h.messages...), append([]string(nil), h.early...)
}

// transactions returns the groups that are not EHLO, NOOP or QUIT.
func transactions(groups []hopGroup) []hopGroup {
	var out []hopGroup
	for _, g := range groups {
		if !endsGroup(g.cmds[0]) || strings.EqualFold(g.cmds[0], "DATA") {
			out = append(out, g)
		}
	}
	return out
}

func dialHop(t *testing.T, h *groupHop) *Session {
	t.Helper()
	cfg, route := h.config()
	s, err := Dial(context.Background(), cfg, route)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func lf(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

func codes(results []RcptResult) string {
	var out []string
	for _, r := range results {
		out = append(out, itoa(r.Code))
	}
	return strings.Join(out, ",")
}

// The hop answers nothing before DATA: only a pipelining client gets the
// message through. The commands come in one write, the content and its
// final "." in one more.
func TestPipelinedGroupIsSentInOneWrite(t *testing.T) {
	t.Parallel()
	h := &groupHop{pipelining: true}
	s := dialHop(t, h)
	env := testEnvelope("a@example.net", "b@example.net")
	res, err := s.Send(context.Background(), env)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	mustBeDelivered(t, res)
	groups, msgs, early := h.snapshot()
	tx := transactions(groups)
	want := []string{"MAIL FROM:<sender@example.org> BODY=8BITMIME SIZE=" + itoa(len(testBody)), "RCPT TO:<a@example.net>", "RCPT TO:<b@example.net>", "DATA"}
	if len(tx) != 1 || strings.Join(tx[0].cmds, "|") != strings.Join(want, "|") || tx[0].reads != 1 {
		t.Fatalf("the hop read %+v, want one group %q in one read", tx, want)
	}
	if len(msgs) != 1 || msgs[0].data != lf(testBody) || msgs[0].reads != 1 {
		t.Fatalf("the hop read messages %+v, want the test body in one read, final dot included", msgs)
	}
	if len(early) != 0 {
		t.Errorf("the client sent %q before the hop answered what came before", early)
	}
}

func TestWithoutPipeliningCommandsWaitForTheirReplies(t *testing.T) {
	t.Parallel()
	h := &groupHop{pipelining: false}
	s := dialHop(t, h)
	for range 2 {
		res, err := s.Send(context.Background(), testEnvelope("a@example.net", "b@example.net"))
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		mustBeDelivered(t, res)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	groups, msgs, early := h.snapshot()
	if len(early) != 0 {
		t.Errorf("commands %q reached a hop without PIPELINING before the reply to the one before", early)
	}
	var cmds []string
	for _, g := range groups {
		if len(g.cmds) != 1 {
			t.Errorf("the hop read %q together", g.cmds)
		}
		cmds = append(cmds, strings.Fields(g.cmds[0])[0])
	}
	if got := strings.Join(cmds, " "); got != "EHLO MAIL RCPT RCPT DATA MAIL RCPT RCPT DATA QUIT" {
		t.Errorf("commands %q", got)
	}
	if len(msgs) != 2 || msgs[1].data != lf(testBody) {
		t.Errorf("messages %+v", msgs)
	}
}

// Every reply of a group is judged as it would be one at a time.
func TestPipelinedRepliesMapToTheirRecipients(t *testing.T) {
	t.Parallel()
	h := &groupHop{pipelining: true, reply: func(_ int, cmd string) (string, bool) {
		switch {
		case strings.Contains(cmd, "<nobody@"):
			return "550 5.1.1 no such user", false
		case strings.Contains(cmd, "<full@"):
			return "450-4.2.1 mailbox busy\r\n450 4.2.1 try later", false
		}
		return "", false
	}}
	s := dialHop(t, h)
	res, err := s.Send(context.Background(), testEnvelope("ok@example.net", "nobody@example.net", "full@example.net", "ok2@example.net"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	want := []struct {
		code      int
		enhanced  string
		permanent bool
		text      string
	}{{250, "2.0.0", false, "queued"}, {550, "5.1.1", true, "no such user"}, {450, "4.2.1", false, "mailbox busy try later"}, {250, "2.0.0", false, "queued"}}
	for i, w := range want {
		r := res[i]
		if r.Code != w.code || r.Enhanced != w.enhanced || r.Permanent != w.permanent || r.Text != w.text {
			t.Errorf("%s: %d %q %q permanent=%v, want %+v", r.Rcpt, r.Code, r.Enhanced, r.Text, r.Permanent, w)
		}
	}
	if _, msgs, _ := h.snapshot(); len(msgs) != 1 {
		t.Errorf("the hop got %d messages, want 1", len(msgs))
	}
}

// When every recipient is refused and the hop refuses DATA, nothing more
// is sent and the session goes on: the next message starts with RSET in
// its group.
func TestPipelinedAllRefusedDataRefused(t *testing.T) {
	t.Parallel()
	var datas atomic.Int32
	h := &groupHop{pipelining: true, reply: func(_ int, cmd string) (string, bool) {
		switch {
		case strings.Contains(cmd, "<nobody"):
			return "550 5.1.1 no such user", false
		case cmd == "DATA" && datas.Add(1) == 1:
			return "554 5.5.1 no valid recipients", false
		}
		return "", false
	}}
	s := dialHop(t, h)
	res, err := s.Send(context.Background(), testEnvelope("nobody@example.net", "nobody2@example.net"))
	if err != nil || codes(res) != "550,550" {
		t.Fatalf("Send: %v, results %s; want 550 for both", err, codes(res))
	}
	if !s.Usable() {
		t.Fatal("session unusable after refusals")
	}
	res, err = s.Send(context.Background(), testEnvelope("a@example.net"))
	if err != nil {
		t.Fatalf("second Send: %v", err)
	}
	mustBeDelivered(t, res)
	groups, msgs, _ := h.snapshot()
	tx := transactions(groups)
	if len(msgs) != 1 || len(tx) != 2 || tx[1].cmds[0] != "RSET" || tx[1].reads != 1 {
		t.Fatalf("groups %+v, messages %d; want the second group to start with RSET and only its message sent", tx, len(msgs))
	}
}

// A hop that answers DATA with 354 although it refused every recipient
// gets a lone ".", never the content (RFC 2920 section 3.1).
func TestPipelinedAllRefusedDataAcceptedSendsALoneDot(t *testing.T) {
	t.Parallel()
	h := &groupHop{pipelining: true,
		reply: func(_ int, cmd string) (string, bool) {
			if strings.HasPrefix(cmd, "RCPT") {
				return "550 5.1.1 no such user", false
			}
			return "", false
		},
		final: func(int, []byte) (string, bool) { return "554 5.5.1 no valid recipients", false },
	}
	s := dialHop(t, h)
	res, err := s.Send(context.Background(), testEnvelope("a@example.net", "b@example.net"))
	if err != nil || codes(res) != "550,550" || res[0].Text != "no such user" {
		t.Fatalf("Send: %v, results %+v; want the RCPT refusals", err, res)
	}
	_, msgs, _ := h.snapshot()
	if len(msgs) != 1 || msgs[0].data != "" {
		t.Fatalf("the hop got %+v after its 354, want a lone dot", msgs)
	}
	if !s.Usable() {
		t.Error("session unusable")
	}
}

// A 421 in the middle of the replies closes the session: the recipients
// before it that were accepted and those after it get it.
func TestPipelined421InTheMiddle(t *testing.T) {
	t.Parallel()
	h := &groupHop{pipelining: true, reply: func(_ int, cmd string) (string, bool) {
		switch {
		case strings.Contains(cmd, "<nobody@"):
			return "550 5.1.1 no such user", false
		case strings.Contains(cmd, "<b@"):
			return "421 4.3.2 shutting down", false
		}
		return "", false
	}}
	s := dialHop(t, h)
	res, err := s.Send(context.Background(), testEnvelope("a@example.net", "nobody@example.net", "b@example.net", "c@example.net"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := codes(res); got != "421,550,421,421" {
		t.Errorf("results %s, want 421,550,421,421", got)
	}
	if s.Usable() {
		t.Error("session still usable after a 421")
	}
	if _, msgs, _ := h.snapshot(); len(msgs) != 0 {
		t.Errorf("the hop got %d messages after its 421", len(msgs))
	}
}

// A connection lost after the group, before any reply: nothing was
// delivered. Lost after the final ".": the message may have been.
func TestPipelinedConnectionLoss(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		hop       *groupHop
		duplicate bool
	}{
		{"after the group", &groupHop{pipelining: true, reply: func(_ int, cmd string) (string, bool) {
			return "", strings.HasPrefix(cmd, "MAIL")
		}}, false},
		{"after a RCPT reply", &groupHop{pipelining: true, reply: func(_ int, cmd string) (string, bool) {
			return "", strings.Contains(cmd, "<b@")
		}}, false},
		{"after the final dot", &groupHop{pipelining: true, final: func(int, []byte) (string, bool) { return "", true }}, true},
	} {
		s := dialHop(t, tc.hop)
		res, err := s.Send(context.Background(), testEnvelope("a@example.net", "b@example.net"))
		if err == nil {
			t.Errorf("%s: Send succeeded: %+v", tc.name, res)
			continue
		}
		if DuplicatePossible(err) != tc.duplicate || IsPermanent(err) || len(res) != 0 || s.Usable() {
			t.Errorf("%s: err %v (duplicate %v), results %+v, usable %v; want a temporary error, duplicate=%v",
				tc.name, err, DuplicatePossible(err), res, s.Usable(), tc.duplicate)
		}
	}
}

// A kept session the hop closed while it was idle, with or without a 421
// first, fails its first message with an error that lets it go again on a
// new connection; nothing of it reached the hop, and the new connection
// carries it once.
func TestReusedPipeliningSessionTheHopClosed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		idleClose bool                            // closed before the next group is written
		reply     func(cmd string) (string, bool) // else the reply to the next group
	}{
		{"closed while idle", true, nil},
		{"closed at the next group", false, func(string) (string, bool) { return "", true }},
		{"421 at the next group", false, func(string) (string, bool) { return "421 4.4.2 idle too long", false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var delivered atomic.Bool // the first message is through
			h := &groupHop{pipelining: true}
			h.reply = func(conn int, cmd string) (string, bool) {
				if conn == 1 && delivered.Load() && tc.reply != nil {
					return tc.reply(cmd)
				}
				return "", false
			}
			h.final = func(int, []byte) (string, bool) {
				delivered.Store(true)
				return "250 2.0.0 queued", false
			}
			h.idleClose = func(conn int) bool { return conn == 1 && tc.idleClose }
			cfg, route := h.config()
			key := PoolKey(cfg, route)
			ctx := context.Background()
			p := NewPool(1, time.Minute)
			defer p.CloseIdle()
			s, err := Dial(ctx, cfg, route)
			if err != nil {
				t.Fatal(err)
			}
			mustBeDelivered(t, mustSend(t, ctx, s))
			p.Put(key, s)
			kept := p.Get(ctx, key)
			if kept != s || !kept.Reused() {
				t.Fatal("the pool did not hand the session back")
			}
			_, err = kept.Send(ctx, testEnvelope("b@example.net"))
			kept.Close()
			if err == nil || DuplicatePossible(err) || IsPermanent(err) {
				t.Fatalf("Send on the dead session: err %v (duplicate %v); want a temporary error that is not duplicate-possible",
					err, DuplicatePossible(err))
			}
			// What the scheduler then does: a new connection.
			fresh, err := Dial(ctx, cfg, route)
			if err != nil {
				t.Fatal(err)
			}
			defer fresh.Close()
			mustBeDelivered(t, mustSend(t, ctx, fresh))
			groups, msgs, _ := h.snapshot()
			if len(msgs) != 2 || msgs[0].conn != 1 || msgs[1].conn != 2 {
				t.Fatalf("messages %+v, want one on each connection", msgs)
			}
			if last := groups[len(groups)-1]; !tc.idleClose && last.conn == 1 && last.cmds[0] != "RSET" {
				t.Errorf("the kept connection's last group was %q, want it to start with RSET", last.cmds)
			}
		})
	}
}

// A kept session that is still there costs no NOOP round trip: its first
// message's group starts with RSET.
func TestReusedPipeliningSessionSkipsNOOP(t *testing.T) {
	t.Parallel()
	h := &groupHop{pipelining: true}
	cfg, route := h.config()
	key := PoolKey(cfg, route)
	ctx := context.Background()
	p := NewPool(1, time.Minute)
	defer p.CloseIdle()
	s, err := Dial(ctx, cfg, route)
	if err != nil {
		t.Fatal(err)
	}
	mustBeDelivered(t, mustSend(t, ctx, s))
	p.Put(key, s)
	kept := p.Get(ctx, key)
	defer kept.Close()
	mustBeDelivered(t, mustSend(t, ctx, kept))
	groups, msgs, _ := h.snapshot()
	var firsts []string
	for _, g := range groups {
		firsts = append(firsts, strings.Fields(g.cmds[0])[0])
	}
	if got := strings.Join(firsts, " "); got != "EHLO MAIL RSET" || len(msgs) != 2 {
		t.Fatalf("groups began with %q (%d messages), want EHLO MAIL RSET and 2 messages", got, len(msgs))
	}
}
