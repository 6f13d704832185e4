package deliver

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzSMTPDialogue plays a scripted next hop (one reply per |-separated
// part of the input, the first being the greeting) against Dial and Send,
// and checks that whatever the server says, the client neither panics nor
// hangs, and its results keep their promises. With PIPELINING in the EHLO
// reply the dialogue is pipelined. When mode/3 is odd a second message
// follows on the session, handed back by a Pool as a kept connection is
// (checked with NOOP, or under PIPELINING by the RSET that starts the
// group).
func FuzzSMTPDialogue(f *testing.F) {
	f.Add(uint8(0), "220 hi|250-hi\n250-SIZE 100\n250 8BITMIME|250 ok|250 ok|550 5.1.1 no|354 go|250 2.0.0 queued|221 bye")
	f.Add(uint8(0), "220 hi|250 hi|250 ok|421 4.3.2 bye")
	f.Add(uint8(0), "220 hi|250 hi|250 ok|250 ok|250 ok|354 go|451 4.3.0 try later")
	f.Add(uint8(0), "554 go away")
	f.Add(uint8(1), "220 hi|250-hi\n250 AUTH LOGIN|334 VXNlcm5hbWU6|334 UGFzc3dvcmQ6|235 ok|250 ok|250 ok|250 ok|354 go|250 ok")
	f.Add(uint8(1), "220 hi|250-hi\n250 AUTH PLAIN|535 5.7.8 no")
	f.Add(uint8(2), "220 hi|250-hi\n250 STARTTLS|454 4.7.0 no TLS today|250 ok|250 ok|250 ok|354 go|250 ok")
	f.Add(uint8(2), "220 hi|250-hi\n250 STARTTLS|220 go ahead|250 ok")
	f.Add(uint8(0), "220 hi|500 what|250 helo|250 ok|250 ok|250 ok|354 go|250 ok")
	// Pipelined: mixed recipients, all refused with DATA refused or
	// accepted (a lone "." follows), a 421 in the group, MAIL refused.
	f.Add(uint8(0), "220 hi|250-hi\n250-PIPELINING\n250 8BITMIME|250 ok|250 ok|550 5.1.1 no|354 go|250 2.0.0 queued|221 bye")
	f.Add(uint8(0), "220 hi|250-hi\n250 PIPELINING|250 ok|550 no|550 no|554 no valid recipients|221 bye")
	f.Add(uint8(0), "220 hi|250-hi\n250 PIPELINING|250 ok|550 no|550 no|354 go|554 nothing to do|221 bye")
	f.Add(uint8(0), "220 hi|250-hi\n250 PIPELINING|250 ok|421 4.3.2 closing")
	f.Add(uint8(0), "220 hi|250-hi\n250 PIPELINING|553 5.1.8 bad sender|503 no MAIL|503 no MAIL|503 no MAIL|221 bye")
	// A second message on the kept session: NOOP, or RSET in the group.
	f.Add(uint8(3), "220 hi|250-hi\n250 PIPELINING|250 ok|250 ok|250 ok|354 go|250 queued|250 reset|250 ok|250 ok|250 ok|354 go|250 queued|221 bye")
	f.Add(uint8(3), "220 hi|250-hi\n250 PIPELINING|250 ok|250 ok|250 ok|354 go|250 queued|421 4.4.2 idle too long")
	f.Add(uint8(3), "220 hi|250 hi|250 ok|250 ok|250 ok|354 go|250 queued|250 noop|250 ok|250 ok|250 ok|354 go|250 queued|221 bye")
	f.Fuzz(func(t *testing.T, mode uint8, script string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := dialScript(ctx, mode, script, 50*time.Millisecond)
		if err != nil {
			return
		}
		defer s.Close()
		checkSend(t, ctx, s)
		if (mode/3)%2 == 0 {
			return
		}
		p := NewPool(1, time.Minute)
		defer p.CloseIdle()
		p.Put("script", s)
		if kept := p.Get(ctx, "script"); kept != nil {
			checkSend(t, ctx, kept)
		}
	})
}

// checkSend sends a message to two recipients on s and checks the
// promises of Send's results and error.
func checkSend(t *testing.T, ctx context.Context, s *Session) {
	t.Helper()
	env := testEnvelope("a@example.net", "b@example.net")
	results, err := s.Send(ctx, env)
	if err == nil && len(results) != len(env.To) {
		t.Fatalf("%d results for %d recipients", len(results), len(env.To))
	}
	for i, r := range results {
		if err == nil && r.Rcpt != env.To[i] {
			t.Fatalf("result %d is for %q, want %q", i, r.Rcpt, env.To[i])
		}
		if err != nil && r.Delivered() {
			t.Fatalf("failed Send reports %s delivered", r.Rcpt)
		}
		if r.Permanent != (r.Code >= 500 && r.Code < 600) {
			t.Fatalf("result %+v: Permanent does not match the code", r)
		}
	}
	if DuplicatePossible(err) && IsPermanent(err) {
		t.Fatalf("error both permanent and possibly delivered: %v", err)
	}
	if err != nil && s.Usable() {
		t.Fatalf("session still usable after %v", err)
	}
}

// FuzzSplitEnhanced checks the split of a leading enhanced status code.
func FuzzSplitEnhanced(f *testing.F) {
	for _, s := range []string{"2.0.0 Ok: queued as 1234", "Ok", "5.1.1", "2.0.0", "4.4444.1 x", "2..0 x", "9.0.0 x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enh, rest := splitEnhanced(s)
		if enh == "" {
			if rest != s {
				t.Fatalf("no code but text changed: %q -> %q", s, rest)
			}
			return
		}
		if !strings.HasPrefix(s, enh) || strings.Count(enh, ".") != 2 || !strings.ContainsAny(enh[:1], "245") {
			t.Fatalf("bad code %q from %q", enh, s)
		}
		if strings.TrimPrefix(strings.TrimPrefix(s, enh), " ") != rest {
			t.Fatalf("%q split into %q + %q", s, enh, rest)
		}
	})
}

// dialScript dials a scriptServer playing script ("|" between replies); mode
// 0 is a plain route, 1 a plain-text smarthost with AUTH, 2 a route with
// opportunistic TLS.
func dialScript(ctx context.Context, mode uint8, script string, timeout time.Duration) (*Session, error) {
	replies := strings.Split(script, "|")
	cfg := &Config{
		HeloName:       "relay.test",
		CommandTimeout: timeout,
		DataTimeout:    timeout,
		TLS:            TLSNone,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			client, server := net.Pipe()
			go scriptServer(server, nil, replies)
			return client, nil
		},
	}
	route := Route{Key: "script", Kind: RouteStatic, Hosts: []Hop{{Host: "192.0.2.1", Port: 25}}}
	switch mode % 3 {
	case 1:
		route.Kind = RouteSmarthost
		cfg.SmarthostTLS = SmarthostNone
		cfg.SmarthostUsername, cfg.SmarthostPassword = "user", "pass"
	case 2:
		cfg.TLS = TLSOpportunistic
	}
	return Dial(ctx, cfg, route)
}
