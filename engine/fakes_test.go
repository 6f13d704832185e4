package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"postroom/engine/config"
	"postroom/storage"
)

// received is one message a fake next hop accepted.
type received struct {
	From string
	To   []string
	Data []byte
	Auth string // "user:pass" when the client authenticated
}

// nextHop is a scripted SMTP server on 127.0.0.1:0 standing in for a
// recipient's MX or a smarthost. Reply decides the answer to each RCPT
// (nil = 250); Hang makes it stop answering after the final ".".
type nextHop struct {
	t     testing.TB
	srv   *smtp.Server
	ln    net.Listener
	got   chan received
	Reply func(rcpt string) *smtp.SMTPError
	Auth  map[string]string // user -> password; nil = no AUTH offered

	mu    sync.Mutex
	conns int
}

func newNextHop(t testing.TB) *nextHop {
	t.Helper()
	h := &nextHop{t: t, got: make(chan received, 100)}
	h.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		h.mu.Lock()
		h.conns++
		h.mu.Unlock()
		return &hopSession{h: h}, nil
	}))
	h.srv.Domain = "nexthop.test"
	h.srv.AllowInsecureAuth = true
	h.srv.ErrorLog = smtpLogger{slog.New(slog.NewTextHandler(io.Discard, nil))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.ln = ln
	go h.srv.Serve(ln)
	t.Cleanup(func() { h.srv.Close() })
	return h
}

func (h *nextHop) addr() string { return h.ln.Addr().String() }

func (h *nextHop) port() int { return h.ln.Addr().(*net.TCPAddr).Port }

func (h *nextHop) connections() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns
}

// wait returns the next message the hop accepted, failing after a timeout.
func (h *nextHop) wait() received {
	h.t.Helper()
	select {
	case m := <-h.got:
		return m
	case <-time.After(10 * time.Second):
		h.t.Fatal("timed out waiting for a message at the next hop")
	}
	return received{}
}

// none asserts that no message arrives within a short while.
func (h *nextHop) none(d time.Duration) {
	h.t.Helper()
	select {
	case m := <-h.got:
		h.t.Fatalf("unexpected message at the next hop: from %q to %v", m.From, m.To)
	case <-time.After(d):
	}
}

type hopSession struct {
	h    *nextHop
	from string
	to   []string
	auth string
}

func (s *hopSession) AuthMechanisms() []string {
	if s.h.Auth == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *hopSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if s.h.Auth[user] != pass {
			return errors.New("bad credentials")
		}
		s.auth = user + ":" + pass
		return nil
	}), nil
}

func (s *hopSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.h.Auth != nil && s.auth == "" {
		return smtp.ErrAuthRequired
	}
	s.from, s.to = from, nil
	return nil
}

func (s *hopSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.h.Reply != nil {
		if err := s.h.Reply(to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *hopSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.h.got <- received{From: s.from, To: s.to, Data: data, Auth: s.auth}
	return nil
}

func (s *hopSession) Reset()        { s.from, s.to = "", nil }
func (s *hopSession) Logout() error { return nil }

// fakeResolver answers MX and host lookups from maps.
type fakeResolver struct {
	mx    map[string][]*net.MX
	hosts map[string][]string
}

func (r *fakeResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	name = strings.TrimSuffix(name, ".")
	if mx, ok := r.mx[name]; ok {
		return mx, nil
	}
	if _, ok := r.hosts[name]; ok {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	host = strings.TrimSuffix(host, ".")
	if a, ok := r.hosts[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// clock is a settable clock for tests of retries and lifetimes.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// relay is an engine under test with its store, listening on 127.0.0.1:0.
type relay struct {
	t     testing.TB
	e     *Engine
	store *storage.Store
	dir   string
	opts  Options
}

// testSettings are settings for a relay whose mail for example.net goes to
// hop (when hop is not nil).
func testSettings(hop *nextHop) config.Settings {
	s := config.Default()
	s.Hostname = "relay.test"
	s.Listen.Address = "127.0.0.1"
	s.Delivery.RetryInitial = config.Duration(time.Minute)
	s.Delivery.RetryMax = config.Duration(time.Hour)
	s.Delivery.QueueScanInterval = config.Duration(time.Second)
	s.Delivery.ConnectTimeout = config.Duration(5 * time.Second)
	if hop != nil {
		s.Delivery.Routes = []config.Route{{Domain: "example.net", Host: hop.addr()}, {Domain: "example.com", Host: hop.addr()}}
	}
	return s
}

// startRelay starts an engine with the given settings on a new store (or on
// dir's store when dir is not empty).
func startRelay(t testing.TB, s config.Settings, opts Options, dir string) *relay {
	t.Helper()
	return startRelayWrapped(t, s, opts, dir, nil)
}

// startRelayWrapped is startRelay with the engine's store seen through
// wrap (which injects faults), when wrap is not nil.
func startRelayWrapped(t testing.TB, s config.Settings, opts Options, dir string, wrap func(*storage.Store) Store) *relay {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := storage.Open(context.Background(), filepath.Join(dir, storage.FileName))
	if err != nil {
		t.Fatal(err)
	}
	opts.Store = st
	if wrap != nil {
		opts.Store = wrap(st)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Listener == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		opts.Listener = ln
	}
	opts.SpoolDir = dir
	e := New(opts)
	if err := e.SaveSettings(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, e: e, store: st, dir: dir, opts: opts}
	t.Cleanup(r.stop)
	return r
}

func (r *relay) stop() {
	if r.e == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.e.Shutdown(ctx); err != nil {
		r.t.Errorf("shutdown: %v", err)
	}
	r.store.Close()
	r.e = nil
}

// send submits one message over SMTP and returns the final reply's error.
func (r *relay) send(from string, to []string, body string) error {
	c, err := smtp.Dial(r.e.ListenAddr())
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return err
	}
	if err := c.SendMail(from, to, strings.NewReader(body)); err != nil {
		return err
	}
	return c.Quit()
}

func (r *relay) mustSend(from string, to []string, body string) {
	r.t.Helper()
	if err := r.send(from, to, body); err != nil {
		r.t.Fatalf("sending: %v", err)
	}
}

// waitFor waits until the stored queue satisfies cond.
func (r *relay) waitFor(what string, cond func(rows []storage.Row) bool) []storage.Row {
	r.t.Helper()
	return r.waitRows(what, r.store.List, cond)
}

// waitRows lists the queue with list until cond holds, looking again at
// every engine event (and every 50 ms), and fails after 10 s showing the
// queue.
func (r *relay) waitRows(what string, list func(context.Context, storage.Filter) ([]storage.Row, error), cond func(rows []storage.Row) bool) []storage.Row {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, err := list(context.Background(), storage.Filter{Limit: 1000})
		if err != nil {
			r.t.Fatal(err)
		}
		if cond(rows) {
			return rows
		}
		if time.Now().After(deadline) {
			var b bytes.Buffer
			for _, row := range rows {
				fmt.Fprintf(&b, "\n  %d %s %s %s next %v %d %s %q", row.MessageID, row.Sender, row.Address, row.State,
					row.NextAttempt, row.LastCode, row.LastError, row.HeldReason)
			}
			r.t.Fatalf("timed out waiting for %s; queue:%s", what, b.String())
		}
		ev, cancel := r.e.Subscribe(1)
		select {
		case <-ev:
		case <-time.After(50 * time.Millisecond):
		}
		cancel()
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

const simpleBody = "From: a@example.org\r\nTo: b@example.net\r\nSubject: hello\r\nMessage-ID: <1@example.org>\r\n\r\nHi there.\r\n"
