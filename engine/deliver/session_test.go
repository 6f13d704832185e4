package deliver

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// mxRoute is an MX route to a fake hop under the name host (the fake
// resolver maps it to 127.0.0.1; cfg.Port is the fake's port).
func mxRoute(t *testing.T, cfg *Config, f *fakeHop, host string) Route {
	t.Helper()
	cfg.Port = f.port
	cfg.Resolver = &fakeResolver{
		mx:    map[string][]*net.MX{"example.com.": {{Host: host + ".", Pref: 10}}},
		hosts: map[string][]string{host + ".": {"127.0.0.1"}},
	}
	route, err := cfg.Route(context.Background(), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	return route
}

func TestOpportunisticTLSWithSelfSignedCertificate(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	f := newFakeHop(t, fakeOptions{tlsConfig: &tls.Config{Certificates: []tls.Certificate{pki.leaf(t, true, "mx1.example.com")}}})
	cfg := testConfig()
	cfg.RootCAs = pki.pool
	route := mxRoute(t, cfg, f, "mx1.example.com")

	results, info := dialSend(t, cfg, route, testEnvelope("u@example.com"))
	mustBeDelivered(t, results)
	if !info.TLS || info.CertVerified || info.TLSVersion != "TLS1.3" {
		t.Errorf("info = %+v, want TLS1.3 with CertVerified=false", info)
	}
	_, msgs, _, _ := f.snapshot()
	if len(msgs) != 1 || !msgs[0].tls {
		t.Fatalf("fake received %+v, want one message over TLS", msgs)
	}
	sameBody(t, msgs[0].data)
}

func TestOpportunisticTLSReportsAVerifiedCertificate(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	f := newFakeHop(t, fakeOptions{tlsConfig: &tls.Config{Certificates: []tls.Certificate{pki.leaf(t, false, "mx1.example.com")}}})
	cfg := testConfig()
	cfg.RootCAs = pki.pool
	route := mxRoute(t, cfg, f, "mx1.example.com")
	results, info := dialSend(t, cfg, route, testEnvelope("u@example.com"))
	mustBeDelivered(t, results)
	if !info.TLS || !info.CertVerified {
		t.Errorf("info = %+v, want a verified certificate", info)
	}
}

func TestOpportunisticTLSFallsBackToPlainWhenHandshakeFails(t *testing.T) {
	t.Parallel()
	// The server offers STARTTLS but only speaks TLS 1.0, which our client
	// refuses: the handshake fails and delivery goes on in plain text.
	pki := newTestPKI(t)
	f := newFakeHop(t, fakeOptions{tlsConfig: &tls.Config{
		Certificates: []tls.Certificate{pki.leaf(t, true, "mx1.example.com")},
		MinVersion:   tls.VersionTLS10, MaxVersion: tls.VersionTLS10,
	}})
	cfg := testConfig()
	route := mxRoute(t, cfg, f, "mx1.example.com")
	results, info := dialSend(t, cfg, route, testEnvelope("u@example.com"))
	mustBeDelivered(t, results)
	if info.TLS || info.TLSError == "" {
		t.Errorf("info = %+v, want plain text with the TLS failure noted", info)
	}
	conns, msgs, _, _ := f.snapshot()
	if conns != 2 || len(msgs) != 1 || msgs[0].tls {
		t.Errorf("conns=%d msgs=%+v, want a second, plain connection carrying the message", conns, msgs)
	}
}

func TestRequiredTLSWithUnverifiableCertificateDefers(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	f := newFakeHop(t, fakeOptions{tlsConfig: &tls.Config{Certificates: []tls.Certificate{pki.leaf(t, true, "mx1.example.com")}}})
	cfg := testConfig()
	cfg.RootCAs = pki.pool
	cfg.TLS = TLSRequired
	route := mxRoute(t, cfg, f, "mx1.example.com")
	_, err := Dial(context.Background(), cfg, route)
	if err == nil {
		t.Fatal("Dial succeeded with an unverifiable certificate in required mode")
	}
	if IsPermanent(err) || !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), "mx1.example.com") {
		t.Errorf("error %q (permanent=%v), want a temporary certificate error naming the host", err, IsPermanent(err))
	}
	// And a wrong host name is as bad as an unknown CA.
	g := newFakeHop(t, fakeOptions{tlsConfig: &tls.Config{Certificates: []tls.Certificate{pki.leaf(t, false, "other.example.com")}}})
	route = mxRoute(t, cfg, g, "mx1.example.com")
	if _, err := Dial(context.Background(), cfg, route); err == nil || IsPermanent(err) {
		t.Errorf("certificate for another name: err=%v, want a temporary error", err)
	}
	// A proper certificate passes.
	h := newFakeHop(t, fakeOptions{tlsConfig: &tls.Config{Certificates: []tls.Certificate{pki.leaf(t, false, "mx1.example.com")}}})
	route = mxRoute(t, cfg, h, "mx1.example.com")
	results, info := dialSend(t, cfg, route, testEnvelope("u@example.com"))
	mustBeDelivered(t, results)
	if !info.CertVerified {
		t.Errorf("info = %+v", info)
	}
}

func TestRequiredTLSWithoutSTARTTLSDefers(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{})
	cfg := testConfig()
	cfg.TLS = TLSRequired
	_, err := Dial(context.Background(), cfg, routeTo(f))
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Errorf("err = %v, want a temporary 'does not offer STARTTLS'", err)
	}
}

func TestTLSNoneNeverStartsTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	f := newFakeHop(t, fakeOptions{tlsConfig: &tls.Config{Certificates: []tls.Certificate{pki.leaf(t, false, "127.0.0.1")}}})
	cfg := testConfig()
	cfg.RootCAs = pki.pool
	cfg.TLS = TLSNone
	results, info := dialSend(t, cfg, routeTo(f), testEnvelope("u@example.net"))
	mustBeDelivered(t, results)
	_, msgs, _, _ := f.snapshot()
	if info.TLS || len(msgs) != 1 || msgs[0].tls {
		t.Errorf("info=%+v msgs=%+v, want plain text", info, msgs)
	}
}

// smarthostConfig points cfg at f as smarthost.test.
func smarthostConfig(cfg *Config, f *fakeHop, mode SmarthostTLS) Route {
	cfg.Smarthost = net.JoinHostPort("smarthost.test", itoa(f.port))
	cfg.SmarthostTLS = mode
	cfg.SmarthostUsername = "relay@example.org"
	cfg.SmarthostPassword = "secret"
	cfg.Resolver = &fakeResolver{hosts: map[string][]string{"smarthost.test.": {"127.0.0.1"}}}
	route, _ := cfg.Route(context.Background(), "anywhere.example")
	return route
}

func TestSmarthostAuthPlainOverSTARTTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	f := newFakeHop(t, fakeOptions{tlsConfig: &tls.Config{Certificates: []tls.Certificate{pki.leaf(t, false, "smarthost.test")}}})
	cfg := testConfig()
	cfg.RootCAs = pki.pool
	route := smarthostConfig(cfg, f, SmarthostSTARTTLS)
	results, info := dialSend(t, cfg, route, testEnvelope("x@anywhere.example"))
	mustBeDelivered(t, results)
	_, msgs, auths, _ := f.snapshot()
	if len(auths) != 1 || auths[0] != "PLAIN relay@example.org:secret tls=true" {
		t.Errorf("fake saw AUTH %q, want PLAIN with our credentials over TLS", auths)
	}
	if !info.TLS || !info.CertVerified || !info.Authenticated {
		t.Errorf("info = %+v", info)
	}
	if len(msgs) != 1 || !msgs[0].tls {
		t.Errorf("msgs = %+v", msgs)
	}
}

func TestSmarthostAuthLoginWhenPlainIsNotOffered(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	f := newFakeHop(t, fakeOptions{tlsConfig: &tls.Config{Certificates: []tls.Certificate{pki.leaf(t, false, "smarthost.test")}}})
	f.authMechs = []string{"LOGIN"}
	cfg := testConfig()
	cfg.RootCAs = pki.pool
	route := smarthostConfig(cfg, f, SmarthostSTARTTLS)
	results, _ := dialSend(t, cfg, route, testEnvelope("x@anywhere.example"))
	mustBeDelivered(t, results)
	if _, _, auths, _ := f.snapshot(); len(auths) != 1 || auths[0] != "LOGIN relay@example.org:secret tls=true" {
		t.Errorf("fake saw AUTH %q, want LOGIN", auths)
	}
}

func TestSmarthostWrongPasswordIsPermanent(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	f := newFakeHop(t, fakeOptions{tlsConfig: &tls.Config{Certificates: []tls.Certificate{pki.leaf(t, false, "smarthost.test")}}})
	cfg := testConfig()
	cfg.RootCAs = pki.pool
	route := smarthostConfig(cfg, f, SmarthostSTARTTLS)
	cfg.SmarthostPassword = "wrong"
	_, err := Dial(context.Background(), cfg, route)
	var e *Error
	if !IsPermanent(err) || !asError(err, &e) || e.Code != 535 || e.Enhanced != "5.7.8" {
		t.Errorf("err = %v, want a permanent 535 5.7.8", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error reveals the password: %v", err)
	}
}

func TestSmarthostWithoutSTARTTLSSendsNoPassword(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{}) // offers AUTH in plain text, no STARTTLS
	cfg := testConfig()
	route := smarthostConfig(cfg, f, SmarthostSTARTTLS)
	_, err := Dial(context.Background(), cfg, route)
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "smarthost does not offer STARTTLS; not sending the password in clear") {
		t.Fatalf("err = %v, want the temporary STARTTLS error", err)
	}
	conns, _, auths, _ := f.snapshot()
	if conns != 1 || len(auths) != 0 {
		t.Errorf("conns=%d auths=%q, want one connection and no AUTH", conns, auths)
	}
	// In "none" mode the user chose plain text: AUTH goes ahead.
	cfg.SmarthostTLS = SmarthostNone
	results, info := dialSend(t, cfg, route, testEnvelope("x@anywhere.example"))
	mustBeDelivered(t, results)
	if _, _, auths, _ := f.snapshot(); len(auths) != 1 || info.TLS || !info.Authenticated {
		t.Errorf("none mode: auths=%q info=%+v", auths, info)
	}
}

func TestSmarthostImplicitTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	f := newFakeHop(t, fakeOptions{implicitTLS: true, tlsConfig: &tls.Config{Certificates: []tls.Certificate{pki.leaf(t, false, "smarthost.test")}}})
	cfg := testConfig()
	cfg.RootCAs = pki.pool
	route := smarthostConfig(cfg, f, SmarthostImplicitTLS)
	results, info := dialSend(t, cfg, route, testEnvelope("x@anywhere.example"))
	mustBeDelivered(t, results)
	if !info.TLS || !info.CertVerified || !info.Authenticated {
		t.Errorf("info = %+v", info)
	}
	if _, _, auths, _ := f.snapshot(); len(auths) != 1 || !strings.HasSuffix(auths[0], "tls=true") {
		t.Errorf("auths = %q", auths)
	}
	// An implicit-TLS smarthost with a certificate from elsewhere is refused.
	cfg.RootCAs = newTestPKI(t).pool
	if _, err := Dial(context.Background(), cfg, route); err == nil || IsPermanent(err) {
		t.Errorf("unknown CA: err = %v, want a temporary error", err)
	}
}

func TestPerRecipientResults(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{})
	f.rcptReply = func(to string) error {
		switch {
		case strings.HasPrefix(to, "full@"):
			return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "Mailbox busy, try later"}
		case strings.HasPrefix(to, "nobody@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		}
		return nil
	}
	results, _ := dialSend(t, testConfig(), routeTo(f), testEnvelope("ok@example.net", "full@example.net", "nobody@example.net"))
	want := []struct {
		code      int
		enhanced  string
		permanent bool
		text      string
	}{{250, "2.0.0", false, "OK"}, {450, "4.2.1", false, "Mailbox busy"}, {550, "5.1.1", true, "No such user"}}
	if len(results) != 3 {
		t.Fatalf("results = %+v", results)
	}
	for i, w := range want {
		r := results[i]
		if r.Code != w.code || r.Enhanced != w.enhanced || r.Permanent != w.permanent || !strings.Contains(r.Text, w.text) || r.Host != "127.0.0.1" {
			t.Errorf("result %d = %+v, want %+v", i, r, w)
		}
	}
	_, msgs, _, _ := f.snapshot()
	if len(msgs) != 1 || strings.Join(msgs[0].rcpts, ",") != "ok@example.net" {
		t.Errorf("fake got %+v, want the message for ok@ only", msgs)
	}
}

func TestTwoMessagesOverOneConnection(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{})
	f.rcptReply = func(to string) error {
		if strings.HasPrefix(to, "nobody@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		}
		return nil
	}
	f.dataReply = func(rcpts []string, _ []byte) error {
		if rcpts[0] == "c@example.net" {
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Looks like spam"}
		}
		return nil
	}
	ctx := context.Background()
	s, err := Dial(ctx, testConfig(), routeTo(f))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// 1: accepted. 2: every recipient refused (the transaction must be
	// reset). 3: accepted. 4: refused after the data.
	for i, tc := range []struct {
		to   string
		code int
	}{{"a@example.net", 250}, {"nobody@example.net", 550}, {"b@example.net", 250}, {"c@example.net", 554}} {
		results, err := s.Send(ctx, testEnvelope(tc.to))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if len(results) != 1 || results[0].Code != tc.code {
			t.Errorf("message %d: %+v, want code %d", i, results, tc.code)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	conns, msgs, _, _ := f.snapshot()
	if conns != 1 {
		t.Errorf("fake saw %d connections, want 1", conns)
	}
	if len(msgs) != 2 || msgs[0].rcpts[0] != "a@example.net" || msgs[1].rcpts[0] != "b@example.net" {
		t.Errorf("fake kept %+v", msgs)
	}
}

func TestServerHangsAfterEndOfData(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	f.onData = func(_ *smtp.Conn, r io.Reader) (bool, error) {
		_, _ = io.ReadAll(r)
		<-release
		return true, nil
	}
	cfg := testConfig()
	cfg.CommandTimeout = 300 * time.Millisecond
	cfg.DataTimeout = 300 * time.Millisecond
	ctx := context.Background()
	s, err := Dial(ctx, cfg, routeTo(f))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	results, err := s.Send(ctx, testEnvelope("a@example.net"))
	if err == nil {
		t.Fatalf("Send succeeded: %+v", results)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Send took %v, want about the 300ms timeout", time.Since(start))
	}
	if !DuplicatePossible(err) || IsPermanent(err) || !strings.Contains(err.Error(), "duplicate possible") {
		t.Errorf("err = %v, want a temporary error saying duplicate possible", err)
	}
	if len(results) != 0 || s.Usable() {
		t.Errorf("results=%+v usable=%v, want none and an unusable session", results, s.Usable())
	}
	if _, err := s.Send(ctx, testEnvelope("a@example.net")); err == nil {
		t.Error("Send on a broken session succeeded")
	}
}

// endlessBody is an unending stream of message lines.
type endlessBody struct{}

func (endlessBody) Read(p []byte) (int, error) {
	line := "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
	n := 0
	for n+len(line) <= len(p) {
		n += copy(p[n:], line)
	}
	return n, nil
}

func TestServerDropsConnectionMidData(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{})
	f.onData = func(c *smtp.Conn, r io.Reader) (bool, error) {
		_, _ = io.ReadFull(r, make([]byte, 10000))
		c.Conn().Close()
		return true, nil
	}
	ctx := context.Background()
	s, err := Dial(ctx, testConfig(), routeTo(f))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	env := testEnvelope("a@example.net", "b@example.net")
	env.Body = io.LimitReader(endlessBody{}, 1<<30)
	_, err = s.Send(ctx, env)
	if err == nil {
		t.Fatal("Send succeeded")
	}
	if DuplicatePossible(err) || IsPermanent(err) || s.Usable() {
		t.Errorf("err = %v (duplicate=%v permanent=%v), usable=%v; want a temporary, not-delivered error", err, DuplicatePossible(err), IsPermanent(err), s.Usable())
	}
}

func TestSizeRefusedByServer(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{maxBytes: 1000})
	env := testEnvelope("a@example.net", "b@example.net")
	env.Size = 5000
	results, _ := dialSend(t, testConfig(), routeTo(f), env)
	for _, r := range results {
		if r.Code != 552 || !r.Permanent || r.Enhanced != "5.3.4" {
			t.Errorf("%+v, want a permanent 552 5.3.4", r)
		}
	}
	if _, msgs, _, _ := f.snapshot(); len(msgs) != 0 {
		t.Errorf("fake received %+v", msgs)
	}
	// Within the limit, SIZE= is announced.
	results, _ = dialSend(t, testConfig(), routeTo(f), testEnvelope("a@example.net"))
	mustBeDelivered(t, results)
	if _, msgs, _, _ := f.snapshot(); len(msgs) != 1 || msgs[0].opts.Size != int64(len(testBody)) {
		t.Errorf("fake received %+v, want SIZE=%d", msgs, len(testBody))
	}
}

func TestEightBitAndSMTPUTF8(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{}) // 8BITMIME yes, SMTPUTF8 no
	env := testEnvelope("a@example.net")
	env.EightBit = true
	results, _ := dialSend(t, testConfig(), routeTo(f), env)
	mustBeDelivered(t, results)
	if _, msgs, _, _ := f.snapshot(); len(msgs) != 1 || msgs[0].opts.Body != smtp.Body8BitMIME {
		t.Errorf("fake received %+v, want BODY=8BITMIME", msgs)
	}

	for _, env := range []Envelope{
		{From: "sender@example.org", To: []string{"a@example.net"}, SMTPUTF8: true, Body: strings.NewReader(testBody)},
		{From: "sender@example.org", To: []string{"jörg@example.net"}, Body: strings.NewReader(testBody)},
	} {
		results, _ := dialSend(t, testConfig(), routeTo(f), env)
		if results[0].Code != 553 || results[0].Enhanced != "5.6.7" || !results[0].Permanent || !strings.Contains(results[0].Text, "SMTPUTF8") {
			t.Errorf("%v: %+v, want a permanent 5.6.7 naming SMTPUTF8", env.To, results[0])
		}
	}
	if _, msgs, _, _ := f.snapshot(); len(msgs) != 1 {
		t.Errorf("a message that needs SMTPUTF8 reached a server without it")
	}

	g := newFakeHop(t, fakeOptions{utf8: true})
	env = Envelope{From: "sender@example.org", To: []string{"jörg@example.net"}, Body: strings.NewReader(testBody)}
	results, _ = dialSend(t, testConfig(), routeTo(g), env)
	mustBeDelivered(t, results)
	if _, msgs, _, _ := g.snapshot(); len(msgs) != 1 || !msgs[0].opts.UTF8 {
		t.Errorf("fake received %+v, want SMTPUTF8", msgs)
	}
}

func TestEightBitToServerWithout8BITMIME(t *testing.T) {
	t.Parallel()
	// go-smtp's server always offers 8BITMIME, so this one is scripted.
	cmds := make(chan string, 20)
	cfg := testConfig()
	cfg.Dial = func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		go scriptServer(server, cmds, []string{"220 old.test", "250-old.test\r\n250 SIZE 1000000", "221 bye"})
		return client, nil
	}
	route := Route{Key: "route:old", Kind: RouteStatic, Hosts: []Hop{{Host: "192.0.2.9", Port: 25}}}
	env := testEnvelope("a@example.net")
	env.EightBit = true
	results, _ := dialSend(t, cfg, route, env)
	if results[0].Code != 554 || results[0].Enhanced != "5.6.3" || !results[0].Permanent || !strings.Contains(results[0].Text, "8BITMIME") {
		t.Errorf("%+v, want a permanent 5.6.3 naming 8BITMIME", results[0])
	}
	var seen []string
	for range 2 {
		select {
		case c := <-cmds:
			seen = append(seen, c)
		case <-time.After(5 * time.Second):
			t.Fatalf("commands so far %q", seen)
		}
	}
	if seen[0] != "EHLO relay.test" || seen[1] != "QUIT" {
		t.Errorf("commands %q, want EHLO then QUIT and no MAIL", seen)
	}
}

func TestReply421EndsTheSession(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{})
	f.rcptReply = func(to string) error {
		if strings.HasPrefix(to, "b@") {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Shutting down"}
		}
		return nil
	}
	ctx := context.Background()
	s, err := Dial(ctx, testConfig(), routeTo(f))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	results, err := s.Send(ctx, testEnvelope("a@example.net", "b@example.net", "c@example.net"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Code != 421 || r.Permanent {
			t.Errorf("%+v, want a temporary 421 for every recipient", r)
		}
	}
	if s.Usable() {
		t.Error("session still usable after 421")
	}
}

func TestSourceIPBindsOutboundConnections(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{})
	cfg := testConfig()
	cfg.SourceIP = "127.0.0.1"
	results, info := dialSend(t, cfg, routeTo(f), testEnvelope("a@example.net"))
	mustBeDelivered(t, results)
	_, _, _, remotes := f.snapshot()
	if host, _, _ := net.SplitHostPort(remotes[0]); host != "127.0.0.1" || !strings.HasPrefix(info.LocalAddr, "127.0.0.1:") {
		t.Errorf("fake saw %v, local %s; want 127.0.0.1", remotes, info.LocalAddr)
	}
	// An address that is not ours cannot be bound: proof the setting is used.
	cfg.SourceIP = "192.0.2.55"
	if _, err := Dial(context.Background(), cfg, routeTo(f)); err == nil || !strings.Contains(err.Error(), "assign") {
		t.Errorf("binding to 192.0.2.55: err = %v, want cannot assign", err)
	}
	// A next hop of the other IP family is skipped with a clear reason.
	cfg.SourceIP = "127.0.0.1"
	v6 := Route{Key: "x", Kind: RouteStatic, Hosts: []Hop{{Host: "::1", Port: f.port}}}
	if _, err := Dial(context.Background(), cfg, v6); err == nil || !strings.Contains(err.Error(), "same IP family") {
		t.Errorf("IPv6 hop with IPv4 source: err = %v", err)
	}
}

func TestDialReportsEveryFailedHost(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := testConfig()
	cfg.Resolver = &fakeResolver{}
	route := Route{Key: "mx:example.com", Kind: RouteMX, Hosts: []Hop{{Host: "127.0.0.1", Port: port}, {Host: "gone.example.com", Port: port}}}
	_, err = Dial(context.Background(), cfg, route)
	if err == nil || IsPermanent(err) {
		t.Fatalf("err = %v, want a temporary error", err)
	}
	for _, want := range []string{"127.0.0.1 [127.0.0.1:" + itoa(port) + "]", "refused", "gone.example.com", "no such host"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestContextCancelStopsSend(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	inData := make(chan struct{}, 1)
	f.onData = func(_ *smtp.Conn, r io.Reader) (bool, error) {
		_, _ = io.ReadAll(r)
		inData <- struct{}{}
		<-release
		return true, nil
	}
	s, err := Dial(context.Background(), testConfig(), routeTo(f))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Send(ctx, testEnvelope("a@example.net"))
		done <- err
	}()
	// Cancel while the client waits for the reply to the final ".": only
	// the context can stop it before the 5s data timeout.
	select {
	case <-inData:
	case <-time.After(4 * time.Second):
		t.Fatal("the message never reached the fake")
	}
	cancel()
	select {
	case err := <-done:
		if err == nil || !DuplicatePossible(err) || !strings.Contains(err.Error(), "context canceled") {
			t.Errorf("err = %v, want an interrupted, duplicate-possible error", err)
		}
	case <-time.After(4 * time.Second): // the data timeout is 5s
		t.Fatal("Send did not return after its context was cancelled")
	}
	if s.Usable() {
		t.Error("session still usable after an interrupted Send")
	}
}

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	if ok {
		*target = e
	}
	return ok
}

func TestScriptedDialogues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mode   uint8
		script string
		want   string // "code enhanced" per recipient
		check  func(ConnInfo) bool
	}{
		{"multi-line EHLO, one refused", 0, "220 hi|250-hi\n250-SIZE 100000\n250 8BITMIME|250 ok|250 ok|550 5.1.1 no|354 go|250 2.0.0 queued as X|221 bye",
			"250 2.0.0,550 5.1.1", nil},
		{"AUTH LOGIN without initial response", 1, "220 hi|250-hi\n250 AUTH LOGIN|334 VXNlcm5hbWU6|334 UGFzc3dvcmQ6|235 ok|250 ok|250 ok|250 ok|354 go|250 ok|221 bye",
			"250 ,250 ", func(i ConnInfo) bool { return i.Authenticated }},
		{"STARTTLS refused, plain text goes on", 2, "220 hi|250-hi\n250 STARTTLS|454 4.7.0 no TLS today|250 ok|250 ok|250 ok|354 go|250 ok|221 bye",
			"250 ,250 ", func(i ConnInfo) bool { return !i.TLS && strings.Contains(i.TLSError, "454") }},
		{"EHLO unknown, HELO works", 0, "220 hi|500 what|250 helo|250 ok|250 ok|250 ok|354 go|250 ok|221 bye",
			"250 ,250 ", nil},
		{"data refused", 0, "220 hi|250 hi|250 ok|250 ok|250 ok|354 go|451 4.3.0 try later|221 bye",
			"451 4.3.0,451 4.3.0", nil},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := dialScript(ctx, tc.mode, tc.script, 5*time.Second)
		if err != nil {
			t.Errorf("%s: Dial: %v", tc.name, err)
			cancel()
			continue
		}
		results, err := s.Send(ctx, testEnvelope("a@example.net", "b@example.net"))
		var got []string
		for _, r := range results {
			got = append(got, itoa(r.Code)+" "+r.Enhanced)
		}
		if err != nil || strings.Join(got, ",") != tc.want || (tc.check != nil && !tc.check(s.Info())) {
			t.Errorf("%s: results %q, err %v, info %+v; want %q", tc.name, got, err, s.Info(), tc.want)
		}
		s.Close()
		cancel()
	}
}
