package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postroom/engine/config"
	"postroom/storage"
)

func allIn(state storage.State) func([]storage.Row) bool {
	return func(rows []storage.Row) bool {
		if len(rows) == 0 {
			return false
		}
		for _, r := range rows {
			if r.State != state {
				return false
			}
		}
		return true
	}
}

func TestDeliveryThroughRoute(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	r := startRelay(t, testSettings(hop), Options{}, "")
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	m := hop.wait()
	if m.From != "a@example.org" || len(m.To) != 1 || m.To[0] != "b@example.net" {
		t.Fatalf("envelope at next hop: %q -> %v", m.From, m.To)
	}
	if !bytes.HasPrefix(m.Data, []byte("Received: from client.test")) {
		t.Errorf("no Received header in front:\n%s", m.Data)
	}
	if !bytes.HasSuffix(m.Data, []byte("Subject: hello\r\nMessage-ID: <1@example.org>\r\n\r\nHi there.\r\n")) {
		t.Errorf("body changed on the way:\n%q", m.Data)
	}
	rows := r.waitFor("sent", allIn(storage.Sent))
	log, _ := r.store.Attempts(context.Background(), rows[0].MessageID)
	if len(log) != 1 || log[0].Code != 250 || log[0].Host == "" {
		t.Fatalf("attempt log = %+v", log)
	}
}

func TestMXPreferenceFallback(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	s := testSettings(nil)
	res := &fakeResolver{
		mx: map[string][]*net.MX{"example.net": {
			{Host: "mx2.example.net.", Pref: 20},
			{Host: "mx1.example.net.", Pref: 10},
		}},
		// mx1 is 127.0.0.2, where nothing listens: the connection is
		// refused and delivery must go on to mx2.
		hosts: map[string][]string{"mx1.example.net": {"127.0.0.2"}, "mx2.example.net": {"127.0.0.1"}},
	}
	r := startRelay(t, s, Options{Resolver: res, MXPort: hop.port()}, "")
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	hop.wait()
	rows := r.waitFor("sent", allIn(storage.Sent))
	if rows[0].NextHop == "" || !strings.Contains(rows[0].NextHop, "mx2") {
		t.Errorf("next hop recorded as %q, want mx2", rows[0].NextHop)
	}
}

func TestNullMXBouncesAtOnce(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	s := testSettings(hop)
	s.Delivery.Routes = []config.Route{{Domain: "example.org", Host: hop.addr()}} // the sender's domain, for the DSN
	res := &fakeResolver{mx: map[string][]*net.MX{"nomail.test": {{Host: ".", Pref: 0}}}}
	r := startRelay(t, s, Options{Resolver: res}, "")
	r.mustSend("a@example.org", []string{"b@nomail.test"}, simpleBody)
	dsn := hop.wait()
	if dsn.From != "" || dsn.To[0] != "a@example.org" {
		t.Fatalf("DSN envelope %q -> %v", dsn.From, dsn.To)
	}
}

func TestSmarthostWithAuth(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	hop.Auth = map[string]string{"office": "s3cret"}
	s := testSettings(nil)
	s.Delivery.Mode = "smarthost"
	s.Delivery.Smarthost = hop.addr()
	s.Delivery.SmarthostTLS = "none"
	s.Delivery.SmarthostUsername = "office"
	s.Delivery.SmarthostPassword = "s3cret"
	r := startRelay(t, s, Options{Resolver: &fakeResolver{}}, "")
	r.mustSend("a@example.org", []string{"x@one.test", "y@two.test"}, simpleBody)
	got := map[string]bool{}
	for len(got) < 2 {
		m := hop.wait()
		if m.Auth != "office:s3cret" {
			t.Fatalf("smarthost saw auth %q", m.Auth)
		}
		for _, to := range m.To {
			got[to] = true
		}
	}
	r.waitFor("sent", allIn(storage.Sent))
}

func TestTemporaryFailureThenSuccess(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	fails := 1
	hop.Reply = func(string) *smtp.SMTPError {
		if fails > 0 {
			fails--
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again"}
		}
		return nil
	}
	clk := newClock()
	r := startRelay(t, testSettings(hop), Options{Now: clk.Now}, "")
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	rows := r.waitFor("deferred", allIn(storage.Deferred))
	wait := rows[0].NextAttempt.Sub(clk.Now())
	if wait < 40*time.Second || wait > 80*time.Second {
		t.Fatalf("first retry in %s, want about retry_initial (1m) with jitter", wait)
	}
	if rows[0].LastCode != 451 || !strings.Contains(rows[0].LastError, "try again") {
		t.Fatalf("last error %d %q", rows[0].LastCode, rows[0].LastError)
	}
	hop.none(100 * time.Millisecond)
	clk.Advance(2 * time.Minute)
	r.e.Wake()
	hop.wait()
	rows = r.waitFor("sent", allIn(storage.Sent))
	if rows[0].Attempts != 2 {
		t.Fatalf("attempts = %d, want 2", rows[0].Attempts)
	}
}

// dsnOf parses a DSN and returns its report's per-recipient fields.
func dsnOf(t *testing.T, data []byte) (human string, report string, headers string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN content type %q %v", mt, params)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var parts []string
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		parts = append(parts, string(b))
	}
	if len(parts) != 3 {
		t.Fatalf("DSN has %d parts, want 3", len(parts))
	}
	return parts[0], parts[1], parts[2]
}

func TestPermanentFailureGivesExactlyOneDSN(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	hop.Reply = func(rcpt string) *smtp.SMTPError {
		if strings.HasPrefix(rcpt, "bad") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}
	r := startRelay(t, testSettings(hop), Options{}, "")
	r.mustSend("sender@example.com", []string{"good@example.net", "bad1@example.net", "bad2@example.net"}, simpleBody)
	var dsns, delivered []received
	for len(dsns)+len(delivered) < 2 {
		m := hop.wait()
		if m.From == "" {
			dsns = append(dsns, m)
		} else {
			delivered = append(delivered, m)
		}
	}
	if len(delivered) != 1 || len(delivered[0].To) != 1 || delivered[0].To[0] != "good@example.net" {
		t.Fatalf("delivered = %+v", delivered)
	}
	if len(dsns) != 1 || dsns[0].To[0] != "sender@example.com" {
		t.Fatalf("dsns = %+v", dsns)
	}
	_, report, headers := dsnOf(t, dsns[0].Data)
	for _, want := range []string{"Final-Recipient: rfc822; bad1@example.net", "Final-Recipient: rfc822; bad2@example.net",
		"Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; 550"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if !strings.Contains(headers, "Subject: hello") {
		t.Errorf("original headers missing from the DSN:\n%s", headers)
	}
	r.waitFor("all done", func(rows []storage.Row) bool {
		final := 0
		for _, row := range rows {
			if row.State.Final() {
				final++
			}
		}
		return final == len(rows)
	})
	hop.none(200 * time.Millisecond) // and no second DSN
}

func TestLifetimeExpiryGivesOneDSN(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	hop.Reply = func(rcpt string) *smtp.SMTPError {
		if rcpt == "sender@example.com" {
			return nil // the DSN goes through
		}
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "busy"}
	}
	s := testSettings(hop)
	s.Delivery.QueueLifetime = config.Duration(3 * time.Hour)
	clk := newClock()
	r := startRelay(t, s, Options{Now: clk.Now}, "")
	r.mustSend("sender@example.com", []string{"b@example.net"}, simpleBody)
	for i := 0; i < 20; i++ {
		r.waitFor("a deferral or the end", func(rows []storage.Row) bool {
			return rows[len(rows)-1].State == storage.Deferred || rows[len(rows)-1].State == storage.Expired
		})
		rows, _ := r.store.List(context.Background(), storage.Filter{Sender: "sender@example.com"})
		if rows[0].State == storage.Expired {
			break
		}
		clk.Advance(time.Hour)
		r.e.Wake()
		r.waitFor("the retry", func(rows []storage.Row) bool {
			last := rows[len(rows)-1]
			return last.State == storage.Expired || last.Attempts >= i+2
		})
	}
	m := hop.wait()
	if m.From != "" || m.To[0] != "sender@example.com" {
		t.Fatalf("expected the DSN, got %q -> %v", m.From, m.To)
	}
	human, report, _ := dsnOf(t, m.Data)
	if !strings.Contains(report, "Final-Recipient: rfc822; b@example.net") || !strings.Contains(human, "3h") {
		t.Errorf("expiry DSN does not say what and why:\n%s\n%s", human, report)
	}
	hop.none(200 * time.Millisecond)
}

func TestNullSenderNeverBounces(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	hop.Reply = func(string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	r := startRelay(t, testSettings(hop), Options{}, "")
	r.mustSend("", []string{"b@example.net"}, simpleBody)
	r.waitFor("bounced", allIn(storage.Bounced))
	hop.none(300 * time.Millisecond)
	owed, _ := r.store.OwedBounces(context.Background(), 10)
	if len(owed) != 0 {
		t.Fatalf("a DSN is still owed for a null sender: %+v", owed)
	}
	rows, _ := r.store.List(context.Background(), storage.Filter{})
	if len(rows) != 1 {
		t.Fatalf("queue has %d rows, want only the bounced original", len(rows))
	}
}

func TestRestartResumesQueue(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	s := testSettings(hop)
	dir := t.TempDir()
	r := startRelay(t, s, Options{}, dir)
	if err := r.e.SetPaused(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	r.waitFor("queued", allIn(storage.Queued))
	r.stop()
	r2 := startRelay(t, s, Options{}, dir)
	if p, _ := r2.e.Paused(context.Background()); !p {
		t.Fatal("paused flag lost across restart")
	}
	hop.none(200 * time.Millisecond)
	r2.e.SetPaused(context.Background(), false)
	hop.wait()
	r2.waitFor("sent", allIn(storage.Sent))
}

func TestDisconnectMidDataLeavesNothing(t *testing.T) {
	t.Parallel()
	r := startRelay(t, testSettings(nil), Options{}, "")
	c, err := net.Dial("tcp", r.e.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	expect := func(prefix string) {
		t.Helper()
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading reply: %v", err)
			}
			if len(line) >= 4 && line[3] == '-' {
				continue
			}
			if !strings.HasPrefix(line, prefix) {
				t.Fatalf("reply %q, want %s", line, prefix)
			}
			return
		}
	}
	expect("220")
	for _, step := range []struct{ cmd, want string }{
		{"EHLO client.test", "250"}, {"MAIL FROM:<a@example.org>", "250"},
		{"RCPT TO:<b@example.net>", "250"}, {"DATA", "354"},
	} {
		c.Write([]byte(step.cmd + "\r\n"))
		expect(step.want)
	}
	c.Write([]byte("Subject: half\r\n\r\nthis message never ends"))
	c.Close()
	// The server must notice the close and store nothing. Ask it something
	// else on a new connection to be sure the old one was handled.
	r.mustSend("a@example.org", []string{"other@example.net"}, simpleBody)
	rows, _ := r.store.List(context.Background(), storage.Filter{})
	if len(rows) != 1 || rows[0].Address != "other@example.net" {
		t.Fatalf("queue after a broken DATA: %+v", rows)
	}
}

func TestRelayDeniedOutsideTrustedNetworks(t *testing.T) {
	t.Parallel()
	s := testSettings(nil)
	s.Access.TrustedNetworks = []string{"192.0.2.0/24"}
	r := startRelay(t, s, Options{}, "")
	err := r.send("a@example.org", []string{"b@example.net"}, simpleBody)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Fatalf("relay from an untrusted client: %v, want 554 5.7.1", err)
	}
	if rows, _ := r.store.List(context.Background(), storage.Filter{}); len(rows) != 0 {
		t.Fatalf("%d rows queued", len(rows))
	}
}

func TestOneConnectionForSeveralMessages(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	r := startRelay(t, testSettings(hop), Options{}, "")
	ctx := context.Background()
	r.e.SetPaused(ctx, true)
	for i := 0; i < 5; i++ {
		r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	}
	r.e.SetPaused(ctx, false)
	for i := 0; i < 5; i++ {
		hop.wait()
	}
	r.waitFor("sent", allIn(storage.Sent))
	if n := hop.connections(); n != 1 {
		t.Fatalf("5 messages to one next hop took %d connections, want 1", n)
	}
}

func TestEHLOAdvertisesExtensions(t *testing.T) {
	t.Parallel()
	s := testSettings(nil)
	s.Limits.MaxMessageBytes = 123456
	r := startRelay(t, s, Options{}, "")
	c, err := smtp.Dial(r.e.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("EHLO does not advertise %s", ext)
		}
	}
	if ok, param := c.Extension("SIZE"); !ok || param != "123456" {
		t.Errorf("SIZE advertised as %v %q, want the configured 123456", ok, param)
	}
	// A message over the limit is refused with 552 5.3.4, and the session
	// stays usable.
	big := "Subject: big\r\n\r\n" + strings.Repeat("x", 123456) + "\r\n"
	err = c.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(big))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 552 || se.EnhancedCode != (smtp.EnhancedCode{5, 3, 4}) {
		t.Fatalf("oversized message: %v, want 552 5.3.4", err)
	}
	if err := c.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(simpleBody)); err != nil {
		t.Fatalf("the session is not usable after a refused message: %v", err)
	}
}

// A second Postroom on the same data directory must not take over the
// deliveries the first one has in flight: it fails on the run lock first.
func TestSecondInstanceLeavesClaimsAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testSettings(nil)
	r := startRelay(t, s, Options{}, "")
	if err := r.e.SetPaused(ctx, true); err != nil {
		t.Fatal(err)
	}
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	r.waitFor("queued", allIn(storage.Queued))
	// As if the first instance's scheduler were sending it right now.
	claimed, err := r.store.ClaimDue(ctx, time.Now().Add(time.Hour), 10, time.Hour)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v, %d claimed", err, len(claimed))
	}

	s.Listen.Port = r.e.opts.Listener.Addr().(*net.TCPAddr).Port
	second := New(Options{Store: r.store, Logger: r.e.log, SpoolDir: r.dir})
	if err := second.SaveSettings(ctx, s); err != nil {
		t.Fatal(err)
	}
	err = second.Start(ctx)
	if err == nil {
		second.Shutdown(ctx)
		t.Fatal("a second instance started on the port the first one holds")
	}
	if !errors.Is(err, storage.ErrInUse) {
		t.Errorf("second start failed with %q, want it to say another Postroom serves the queue", err)
	}
	rows, err := r.store.List(ctx, storage.Filter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].State != storage.Sending {
		t.Fatalf("after the failed second start the recipient is %+v, want it still being sent by the first", rows)
	}
}

// Shutdown frees the port even when it comes right after Start.
func TestShutdownFreesThePort(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	r := startRelay(t, testSettings(nil), Options{Listener: ln}, "")
	r.stop()
	again, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still held after Shutdown: %v", err)
	}
	again.Close()
}

// A next hop that cannot be reached costs one connection attempt for the
// whole group, not one per message, and every message is deferred with
// the reason.
func TestUnreachableHopDefersTheGroupAtOnce(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepts atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			c.Close() // no greeting: the connection fails
		}
	}()
	s := testSettings(nil)
	s.Delivery.Routes = []config.Route{{Domain: "example.net", Host: ln.Addr().String()}}
	r := startRelay(t, s, Options{}, "")
	ctx := context.Background()
	r.e.SetPaused(ctx, true)
	for i := 0; i < 5; i++ {
		r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	}
	r.e.SetPaused(ctx, false)
	rows := r.waitFor("deferred", allIn(storage.Deferred))
	for _, row := range rows {
		if row.LastError == "" {
			t.Errorf("recipient %d deferred without a reason", row.ID)
		}
	}
	if n := accepts.Load(); n != 1 {
		t.Fatalf("5 messages to an unreachable next hop took %d connection attempts, want 1", n)
	}
}

// A group whose next hop is slow hands the rest of its mail back before
// the claim's lease could run out, and every message still goes exactly
// once.
func TestSlowGroupHandsBackBeforeTheLeaseEnds(t *testing.T) {
	t.Parallel()
	clk := newClock()
	hop := newNextHop(t)
	var first sync.Once
	hop.Reply = func(string) *smtp.SMTPError {
		// The first transaction takes longer than half the lease.
		first.Do(func() { clk.Advance(claimLease/2 + time.Minute) })
		return nil
	}
	r := startRelay(t, testSettings(hop), Options{Now: clk.Now}, "")
	ctx := context.Background()
	r.e.SetPaused(ctx, true)
	for i := 0; i < 3; i++ {
		r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	}
	r.e.SetPaused(ctx, false)
	for i := 0; i < 3; i++ {
		hop.wait()
	}
	r.waitFor("sent", allIn(storage.Sent))
	hop.none(200 * time.Millisecond)
	if n := hop.connections(); n != 2 {
		t.Fatalf("took %d connections, want 2: the slow one, then a new one for the mail handed back", n)
	}
}

// failingBounces refuses to store the DSN for one message.
type failingBounces struct {
	*storage.Store
	poisoned int64 // a recipient ID
}

func (f failingBounces) EnqueueBounce(ctx context.Context, m *storage.NewMessage, body io.Reader, ids []int64) (int64, error) {
	if slices.Contains(ids, f.poisoned) {
		return 0, errors.New("injected failure")
	}
	return f.Store.EnqueueBounce(ctx, m, body, ids)
}

// A DSN that cannot be queued is tried again later and does not hold up
// the DSNs of other messages.
func TestOneFailingBounceDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hop := newNextHop(t)
	hop.Reply = func(rcpt string) *smtp.SMTPError {
		if strings.HasSuffix(rcpt, "@example.net") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil // the DSNs
	}
	// Two failed messages wait in the queue before the relay starts.
	dir := t.TempDir()
	r := startRelay(t, testSettings(hop), Options{}, dir)
	r.e.SetPaused(ctx, true)
	r.mustSend("first@example.com", []string{"x@example.net"}, simpleBody)
	r.mustSend("second@example.com", []string{"y@example.net"}, simpleBody)
	rows := r.waitFor("queued", allIn(storage.Queued))
	var poisoned int64
	for _, row := range rows {
		if row.Sender == "first@example.com" {
			poisoned = row.ID
		}
	}
	r.stop()

	st, err := storage.Open(ctx, filepath.Join(dir, storage.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := New(Options{Store: failingBounces{st, poisoned}, Logger: r.opts.Logger, Listener: ln, SpoolDir: dir})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(ctx)
	e.SetPaused(ctx, false)
	var dsnTo []string
	for len(dsnTo) == 0 {
		if m := hop.wait(); m.From == "" {
			dsnTo = m.To
		}
	}
	if len(dsnTo) != 1 || dsnTo[0] != "second@example.com" {
		t.Fatalf("DSN went to %v, want the second sender's, past the first one's failure", dsnTo)
	}
}
