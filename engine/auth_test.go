package engine

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"postroom/engine/config"
	"postroom/storage"
)

const testPassword = "correct horse"

// authRelay starts a relay that offers AUTH on loopback without TLS, trusts
// no client on 127.0.0.1 (so relaying needs AUTH), delivers to a next hop
// and has the user "scanner".
func authRelay(t *testing.T, change func(*config.Settings)) (*relay, *clock, *nextHop) {
	t.Helper()
	hop := newNextHop(t)
	s := testSettings(hop)
	s.Listen.AuthWithoutTLS = true
	s.Access.TrustedNetworks = []string{"192.0.2.0/24"}
	if change != nil {
		change(&s)
	}
	clk := newClock()
	r := startRelay(t, s, Options{Now: clk.Now}, "")
	// A low-cost hash keeps the tests quick: verification takes the cost
	// from the hash, so this checks the same code path as cost 11.
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.store.AddUser(context.Background(), "scanner", string(hash), clk.Now()); err != nil {
		t.Fatal(err)
	}
	return r, clk, hop
}

// rawClient speaks SMTP line by line, to check replies exactly.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	tp   *textproto.Conn
}

func dialRaw(t *testing.T, r *relay) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", r.e.ListenAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	rc := &rawClient{t: t, conn: c, tp: textproto.NewConn(c)}
	t.Cleanup(func() { rc.tp.Close() })
	rc.expect("", 220)
	return rc
}

// cmd sends a line (unless empty) and returns the reply's code and text.
func (c *rawClient) cmd(line string) (int, string) {
	c.t.Helper()
	if line != "" {
		if err := c.tp.PrintfLine("%s", line); err != nil {
			c.t.Fatalf("sending %q: %v", line, err)
		}
	}
	code, text, err := c.tp.ReadResponse(0)
	if err != nil {
		c.t.Fatalf("reply to %q: %v", line, err)
	}
	return code, text
}

// expect sends a line and fails unless the reply has the code; it returns
// the text.
func (c *rawClient) expect(line string, code int) string {
	c.t.Helper()
	got, text := c.cmd(line)
	if got != code {
		c.t.Fatalf("%q answered %d %s, want %d", line, got, text, code)
	}
	return text
}

// closed asserts that the server closed the connection with nothing more
// to say.
func (c *rawClient) closed() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := c.tp.ReadLine(); err == nil {
		c.t.Fatalf("the connection is still open; it said %q", line)
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatal("the connection is still open")
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func plainIR(user, password string) string { return b64("\x00" + user + "\x00" + password) }

func TestAuthPlainAndLoginRecordTheUser(t *testing.T) {
	t.Parallel()
	r, _, hop := authRelay(t, nil)
	for _, tc := range []struct {
		name string
		auth func(c *rawClient)
	}{
		{"PLAIN with initial response", func(c *rawClient) {
			c.expect("AUTH PLAIN "+plainIR("scanner", testPassword), 235)
		}},
		{"PLAIN after an empty challenge", func(c *rawClient) {
			c.expect("AUTH PLAIN", 334)
			c.expect(b64("scanner\x00scanner\x00"+testPassword), 235)
		}},
		{"LOGIN", func(c *rawClient) {
			if got := c.expect("AUTH LOGIN", 334); got != b64("Username:") {
				c.t.Fatalf("first LOGIN challenge %q, want base64 of Username:", got)
			}
			if got := c.expect(b64("Scanner"), 334); got != b64("Password:") {
				c.t.Fatalf("second LOGIN challenge %q, want base64 of Password:", got)
			}
			c.expect(b64(testPassword), 235)
		}},
		{"LOGIN with initial response", func(c *rawClient) {
			c.expect("AUTH LOGIN "+b64("scanner"), 334)
			c.expect(b64(testPassword), 235)
		}},
	} {
		c := dialRaw(t, r)
		ehlo := c.expect("EHLO client.test", 250)
		if !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
			t.Fatalf("EHLO on loopback with auth_without_tls does not offer AUTH PLAIN LOGIN:\n%s", ehlo)
		}
		tc.auth(c)
		c.expect("MAIL FROM:<a@example.org>", 250)
		c.expect("RCPT TO:<b@example.net>", 250)
		c.expect("DATA", 354)
		text := c.expect(simpleBody+".", 250)
		id, err := strconv.ParseInt(text[strings.LastIndex(text, " ")+1:], 10, 64)
		if err != nil {
			t.Fatalf("%s: no queue ID in %q", tc.name, text)
		}
		m, err := r.store.Message(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if m.AuthUser != "scanner" {
			t.Errorf("%s: message %d recorded AuthUser %q, want scanner", tc.name, id, m.AuthUser)
		}
		got := hop.wait()
		if !regexp.MustCompile(`with ESMTPA\s+id `).Match(got.Data) {
			t.Errorf("%s: the Received header does not say ESMTPA:\n%s", tc.name, got.Data)
		}
		c.expect("QUIT", 221)
	}
}

func TestAuthNotOfferedInPlainTextWithoutTheSetting(t *testing.T) {
	t.Parallel()
	r, _, _ := authRelay(t, func(s *config.Settings) { s.Listen.AuthWithoutTLS = false })
	c := dialRaw(t, r)
	if ehlo := c.expect("EHLO client.test", 250); strings.Contains(ehlo, "AUTH") {
		t.Errorf("EHLO offers AUTH on a plain-text connection:\n%s", ehlo)
	}
	if code, text := c.cmd("AUTH PLAIN " + plainIR("scanner", testPassword)); code/100 != 5 {
		t.Errorf("AUTH on plain text answered %d %s, want a refusal", code, text)
	}
	// Without AUTH, relaying stays refused.
	c.expect("MAIL FROM:<a@example.org>", 250)
	c.expect("RCPT TO:<b@example.net>", 554)
}

// From another computer, plain text never carries a password, whatever
// auth_without_tls says.
func TestAuthRefusedInPlainTextFromAnotherComputer(t *testing.T) {
	t.Parallel()
	e := New(Options{})
	e.settings.Listen.AuthWithoutTLS = true
	remote := &session{e: e, conn: &smtp.Conn{}, ip: netip.MustParseAddr("192.0.2.7")}
	if m := remote.AuthMechanisms(); m != nil {
		t.Errorf("mechanisms offered to a plain-text client on the network: %v", m)
	}
	if _, err := remote.Auth(sasl.Plain); err == nil {
		t.Error("AUTH PLAIN accepted from a plain-text client on the network")
	}
	local := &session{e: e, conn: &smtp.Conn{}, ip: netip.MustParseAddr("::1")}
	if m := local.AuthMechanisms(); len(m) != 2 {
		t.Errorf("mechanisms offered on loopback: %v, want PLAIN and LOGIN", m)
	}
}

func TestAuthWrongPasswordThenClosedAfterThree(t *testing.T) {
	t.Parallel()
	r, _, _ := authRelay(t, nil)
	c := dialRaw(t, r)
	c.expect("EHLO client.test", 250)
	for i := 0; i < 2; i++ {
		if text := c.expect("AUTH PLAIN "+plainIR("scanner", "wrong password"), 535); text != "5.7.8 Authentication credentials invalid" {
			t.Errorf("wrong password answered %q", text)
		}
	}
	if text := c.expect("AUTH PLAIN "+plainIR("nobody", testPassword), 421); text != "4.7.0 Too many failed authentication attempts" {
		t.Errorf("third failure answered %q", text)
	}
	c.closed()
}

func TestAuthLockOutRefusesEvenTheRightPassword(t *testing.T) {
	t.Parallel()
	r, clk, _ := authRelay(t, nil)

	c1 := dialRaw(t, r)
	c1.expect("EHLO client.test", 250)
	c1.expect("AUTH PLAIN "+plainIR("scanner", "guess 1"), 535)
	c1.expect("AUTH PLAIN "+plainIR("scanner", "guess 2"), 535)
	c1.expect("AUTH PLAIN "+plainIR("scanner", "guess 3"), 421)
	c2 := dialRaw(t, r)
	c2.expect("EHLO client.test", 250)
	c2.expect("AUTH PLAIN "+plainIR("scanner", "guess 4"), 535)
	c2.expect("AUTH PLAIN "+plainIR("scanner", "guess 5"), 535) // the fifth: locked out from now

	c3 := dialRaw(t, r)
	c3.expect("EHLO client.test", 250)
	if text := c3.expect("AUTH PLAIN "+plainIR("scanner", testPassword), 454); text != "4.7.0 Temporary authentication failure, try again later" {
		t.Errorf("locked out: %q", text)
	}
	clk.Advance(30 * time.Second)
	c3.expect("AUTH LOGIN "+b64("scanner"), 334)
	c3.expect(b64(testPassword), 454)

	clk.Advance(31 * time.Second) // past the first lock-out's minute
	c3.expect("AUTH PLAIN "+plainIR("scanner", testPassword), 235)
}

// Failures are logged with the user and the client, never the password,
// and counted for the dashboard.
func TestAuthFailureIsLoggedAndCounted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := storage.Open(ctx, filepath.Join(t.TempDir(), storage.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var log bytes.Buffer
	e := New(Options{Store: st, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	s := &session{e: e, conn: &smtp.Conn{}, ip: netip.MustParseAddr("192.0.2.9")}
	if err := s.authenticate("scanner", "Hunter2-secret"); err != errAuthInvalid {
		t.Fatalf("unknown user: %v, want %v", err, errAuthInvalid)
	}
	if err := s.authenticate("two words", "Hunter2-secret"); err != errAuthInvalid {
		t.Fatalf("impossible user name: %v, want %v", err, errAuthInvalid)
	}
	out := log.String()
	if strings.Contains(out, "Hunter2") {
		t.Errorf("the log shows the password:\n%s", out)
	}
	if !strings.Contains(out, "user=scanner") || !strings.Contains(out, "client=192.0.2.9") || !strings.Contains(out, `user="two words"`) {
		t.Errorf("the log does not name the user and the client:\n%s", out)
	}
	e.stats.mu.Lock()
	n := e.stats.counts["refused:auth"]
	e.stats.mu.Unlock()
	if n != 2 {
		t.Errorf("refused:auth = %d, want 2", n)
	}
}

func TestAuthLetsAnUntrustedClientRelay(t *testing.T) {
	t.Parallel()
	r, _, hop := authRelay(t, nil)
	err := r.send("a@example.org", []string{"b@example.net"}, simpleBody)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Fatalf("relay without AUTH from an untrusted client: %v, want 554 5.7.1", err)
	}
	for _, client := range []sasl.Client{sasl.NewPlainClient("", "scanner", testPassword), sasl.NewLoginClient("scanner", testPassword)} {
		c, err := smtp.Dial(r.e.ListenAddr())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		if err := c.Auth(client); err != nil {
			t.Fatalf("AUTH: %v", err)
		}
		if err := c.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(simpleBody)); err != nil {
			t.Fatalf("relay after AUTH: %v", err)
		}
		c.Quit()
		if got := hop.wait(); len(got.To) != 1 || got.To[0] != "b@example.net" {
			t.Errorf("next hop got %v", got.To)
		}
	}
	rows := r.waitFor("two sent", func(rows []storage.Row) bool { return len(rows) == 2 && allIn(storage.Sent)(rows) })
	for _, row := range rows {
		if row.AuthUser != "scanner" {
			t.Errorf("queue row %d lists AuthUser %q, want scanner", row.MessageID, row.AuthUser)
		}
	}
}

func TestAuthMalformedResponses(t *testing.T) {
	t.Parallel()
	r, _, _ := authRelay(t, nil)
	c := dialRaw(t, r)
	c.expect("EHLO client.test", 250)
	c.expect("AUTH PLAIN "+b64("only-one-part"), 501)
	c.expect("AUTH PLAIN "+b64("someone-else\x00scanner\x00"+testPassword), 535)
	c.expect("AUTH CRAM-MD5", 504)
	c.expect("AUTH LOGIN", 334)
	c.expect("*", 501) // the client cancels
	// None of these was a guess at a password: the connection stays open.
	c.expect("AUTH PLAIN "+plainIR("scanner", testPassword), 235)
	c.expect("AUTH PLAIN "+plainIR("scanner", testPassword), 503) // once per session
}

func TestEngineUsers(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	s := testSettings(hop)
	s.Listen.AuthWithoutTLS = true
	s.Access.TrustedNetworks = []string{"192.0.2.0/24"}
	r := startRelay(t, s, Options{}, "")
	ctx := context.Background()
	e := r.e

	if err := e.AddUser(ctx, "Front-Desk", "s3cret pass"); err != nil {
		t.Fatal(err)
	}
	if err := e.AddUser(ctx, "front-desk", "another pass"); !errors.Is(err, storage.ErrUserExists) {
		t.Errorf("adding the same name in other case: %v, want ErrUserExists", err)
	}
	for _, tc := range []struct{ name, password, want string }{
		{"", "long enough", "empty"},
		{"two words", "long enough", "space"},
		{"tab\tname", "long enough", "control"},
		{strings.Repeat("x", 65), "long enough", "at most 64"},
		{"short", "1234567", "too short"},
		{"long", strings.Repeat("p", 73), "too long"},
		{"nul", "password\x00", "control"},
	} {
		if err := e.AddUser(ctx, tc.name, tc.password); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddUser(%q, %q): %v, want an error saying %q", tc.name, tc.password, err, tc.want)
		}
	}
	users, err := e.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 || users[0].Name != "front-desk" || users[0].Created.IsZero() {
		t.Fatalf("Users = %+v, want only front-desk with its creation time", users)
	}

	// The stored hash verifies at login, whatever the case of the name.
	c, err := smtp.Dial(e.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "FRONT-DESK", "s3cret pass")); err != nil {
		t.Fatalf("AUTH with the password given to AddUser: %v", err)
	}

	if err := e.RemoveUser(ctx, "FRONT-desk"); err != nil {
		t.Fatal(err)
	}
	err = e.RemoveUser(ctx, "front-desk")
	if !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), `no user "front-desk"`) {
		t.Errorf("removing a missing user: %v, want ErrNotFound naming the user", err)
	}
	if err := e.SetPassword(ctx, "front-desk", "whatever123"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetPassword of a missing user: %v, want ErrNotFound", err)
	}
}

func TestAuthLimiterLockOutGrowsAndEnds(t *testing.T) {
	t.Parallel()
	var l authLimiter
	now := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	failN := func(n int, key string) time.Time {
		var until time.Time
		for i := 0; i < n; i++ {
			until = l.fail(now, key)
		}
		return until
	}
	if until := failN(4, "ip:192.0.2.1"); now.Before(until) {
		t.Fatalf("four failures locked out until %v", until)
	}
	if until := failN(1, "ip:192.0.2.1"); !until.Equal(now.Add(time.Minute)) {
		t.Fatalf("the fifth failure locks until %v, want a minute", until)
	}
	if until := l.lockedUntil(now, "ip:192.0.2.2", "user:scanner"); !until.IsZero() {
		t.Errorf("another address and a name are locked until %v", until)
	}
	if until := l.lockedUntil(now, "user:scanner", "ip:192.0.2.1"); !until.Equal(now.Add(time.Minute)) {
		t.Errorf("lockedUntil of a set of keys %v, want the locked key's end", until)
	}
	// Each further lock-out doubles, up to an hour.
	for _, want := range []time.Duration{2, 4, 8, 16, 32, 60, 60} {
		now = l.lockedUntil(now, "ip:192.0.2.1")
		if until := failN(5, "ip:192.0.2.1"); !until.Equal(now.Add(want * time.Minute)) {
			t.Fatalf("lock-out lasts %v, want %v minutes", until.Sub(now), want)
		}
	}
	// Failures spread wider than the window never lock.
	for i := 0; i < 10; i++ {
		now = now.Add(authFailWindow/4 + time.Second)
		if until := l.fail(now, "user:slow"); now.Before(until) {
			t.Fatalf("failure %d, each %v apart, locked out", i+1, authFailWindow/4)
		}
	}
	// A day later the record is forgotten: the next lock-out is short again.
	now = now.Add(authForgetAfter + time.Hour)
	if until := failN(5, "ip:192.0.2.1"); !until.Equal(now.Add(time.Minute)) {
		t.Errorf("after a quiet day the lock-out lasts %v, want a minute", until.Sub(now))
	}
}

func TestAuthLimiterIsBounded(t *testing.T) {
	t.Parallel()
	var l authLimiter
	now := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	for i := 0; i < authMaxRecords+100; i++ {
		l.fail(now.Add(time.Duration(i)), fmt.Sprint("user:u", i))
	}
	if n := len(l.records); n > authMaxRecords {
		t.Fatalf("%d records kept, want at most %d", n, authMaxRecords)
	}
	if l.records["user:u0"] != nil || l.records[fmt.Sprint("user:u", authMaxRecords+99)] == nil {
		t.Error("the oldest record should go first and the newest stay")
	}
}

func TestAddressKeyGroupsIPv6By64(t *testing.T) {
	t.Parallel()
	a := addressKey(netip.MustParseAddr("2001:db8:1:2::1"))
	b := addressKey(netip.MustParseAddr("2001:db8:1:2:ffff::9"))
	c := addressKey(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c {
		t.Errorf("keys %q %q %q: want one per /64", a, b, c)
	}
	if addressKey(netip.MustParseAddr("192.0.2.1")) == addressKey(netip.MustParseAddr("192.0.2.2")) {
		t.Error("two IPv4 addresses share a key")
	}
}

// FuzzSASLResponses feeds arbitrary client responses to the PLAIN and
// LOGIN servers: they must never panic, must pass exactly what the client
// sent as user and password, and must refuse malformed PLAIN input without
// checking a password.
func FuzzSASLResponses(f *testing.F) {
	f.Add([]byte("\x00scanner\x00secret"), []byte("secret"))
	f.Add([]byte("scanner\x00scanner\x00secret"), []byte(""))
	f.Add([]byte("other\x00scanner\x00secret"), []byte("p\x00w"))
	f.Add([]byte("\x00\x00"), []byte{})
	f.Add([]byte("no-nul"), []byte("x"))
	f.Add([]byte("a\x00b\x00c\x00d"), []byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, first, second []byte) {
		var gotUser, gotPassword string
		calls := 0
		auth := func(user, password string) error {
			calls++
			gotUser, gotPassword = user, password
			return nil
		}

		p := &plainServer{authenticate: auth}
		challenge, done, err := p.Next(nil)
		if done || err != nil || len(challenge) != 0 {
			t.Fatalf("PLAIN without initial response: %q %v %v, want an empty challenge", challenge, done, err)
		}
		_, done, err = p.Next(first)
		parts := bytes.Split(first, []byte{0})
		valid := len(parts) == 3 && (len(parts[0]) == 0 || strings.EqualFold(string(parts[0]), string(parts[1])))
		if !done {
			t.Fatal("PLAIN is not done after its response")
		}
		if valid != (err == nil) || valid != (calls == 1) {
			t.Fatalf("PLAIN %q: err %v, %d calls; valid %v", first, err, calls, valid)
		}
		if valid && (gotUser != string(parts[1]) || gotPassword != string(parts[2])) {
			t.Fatalf("PLAIN %q passed user %q password %q", first, gotUser, gotPassword)
		}
		if _, _, err := p.Next(second); err == nil {
			t.Fatal("PLAIN accepted a response after it was done")
		}

		calls = 0
		l := &loginServer{authenticate: auth}
		if c, done, err := l.Next(first); done || err != nil || string(c) != "Password:" {
			t.Fatalf("LOGIN with initial response: %q %v %v, want the Password: challenge", c, done, err)
		}
		if _, done, err := l.Next(second); !done || err != nil || calls != 1 || gotUser != string(first) || gotPassword != string(second) {
			t.Fatalf("LOGIN %q %q: done %v err %v calls %d, passed %q %q", first, second, done, err, calls, gotUser, gotPassword)
		}
		if _, _, err := l.Next(first); err == nil {
			t.Fatal("LOGIN accepted a response after it was done")
		}
	})
}
