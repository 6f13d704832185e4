package deliver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// testPKI is a CA made for one test, and certificates it signed.
type testPKI struct {
	pool   *x509.CertPool
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Postroom test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{pool: pool, caCert: ca, caKey: key}
}

// leaf returns a server certificate for names (DNS names or IPs), signed by
// the CA, or self-signed when selfSigned is set.
func (p *testPKI) leaf(t *testing.T, selfSigned bool, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	parent, signer := p.caCert, p.caKey
	if selfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// fakeMessage is what the fake next hop received.
type fakeMessage struct {
	from  string
	opts  smtp.MailOptions
	rcpts []string
	data  []byte
	tls   bool
}

// fakeHop is a scripted next hop built on go-smtp's server.
type fakeHop struct {
	addr string
	port int
	srv  *smtp.Server

	// Scripts, set before the first connection.
	rcptReply func(to string) error                         // nil: accept
	dataReply func(rcpts []string, data []byte) error       // nil: accept
	onData    func(c *smtp.Conn, r io.Reader) (bool, error) // when it returns true, its error is the reply
	authMechs []string                                      // nil: PLAIN

	mu       sync.Mutex
	conns    int
	remotes  []string
	auths    []string // "mech user:pass tls=bool"
	messages []fakeMessage
}

type fakeOptions struct {
	tlsConfig   *tls.Config // STARTTLS offered when non-nil
	implicitTLS bool        // wrap the listener in TLS instead
	maxBytes    int64
	utf8        bool
}

func newFakeHop(t *testing.T, o fakeOptions) *fakeHop {
	t.Helper()
	f := &fakeHop{}
	f.srv = smtp.NewServer(smtp.BackendFunc(f.newSession))
	f.srv.Domain = "fake.test"
	f.srv.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.AllowInsecureAuth = true
	f.srv.MaxMessageBytes = o.maxBytes
	f.srv.EnableSMTPUTF8 = o.utf8
	f.srv.ReadTimeout = 10 * time.Second
	f.srv.WriteTimeout = 10 * time.Second
	if !o.implicitTLS {
		f.srv.TLSConfig = o.tlsConfig
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	f.port = l.Addr().(*net.TCPAddr).Port
	if o.implicitTLS {
		l = tls.NewListener(l, o.tlsConfig)
	}
	go f.srv.Serve(l) //nolint:errcheck // ends with Close
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *fakeHop) newSession(c *smtp.Conn) (smtp.Session, error) {
	f.mu.Lock()
	f.conns++
	f.remotes = append(f.remotes, c.Conn().RemoteAddr().String())
	f.mu.Unlock()
	return &fakeSession{hop: f, conn: c}, nil
}

func (f *fakeHop) snapshot() (conns int, msgs []fakeMessage, auths []string, remotes []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns, append([]fakeMessage(nil), f.messages...), append([]string(nil), f.auths...), append([]string(nil), f.remotes...)
}

type fakeSession struct {
	hop  *fakeHop
	conn *smtp.Conn
	msg  fakeMessage
}

func (s *fakeSession) Reset()        { s.msg = fakeMessage{} }
func (s *fakeSession) Logout() error { return nil }

func (s *fakeSession) Mail(from string, opts *smtp.MailOptions) error {
	_, isTLS := s.conn.TLSConnectionState()
	s.msg = fakeMessage{from: from, tls: isTLS}
	if opts != nil {
		s.msg.opts = *opts
	}
	return nil
}

func (s *fakeSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.hop.rcptReply != nil {
		if err := s.hop.rcptReply(to); err != nil {
			return err
		}
	}
	s.msg.rcpts = append(s.msg.rcpts, to)
	return nil
}

func (s *fakeSession) Data(r io.Reader) error {
	if s.hop.onData != nil {
		if done, err := s.hop.onData(s.conn, r); done {
			return err
		}
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.msg.data = data
	if s.hop.dataReply != nil {
		if err := s.hop.dataReply(s.msg.rcpts, data); err != nil {
			return err
		}
	}
	s.hop.mu.Lock()
	s.hop.messages = append(s.hop.messages, s.msg)
	s.hop.mu.Unlock()
	return nil
}

func (s *fakeSession) AuthMechanisms() []string {
	if s.hop.authMechs != nil {
		return s.hop.authMechs
	}
	return []string{sasl.Plain}
}

func (s *fakeSession) Auth(mech string) (sasl.Server, error) {
	_, isTLS := s.conn.TLSConnectionState()
	record := func(user, pass string) error {
		s.hop.mu.Lock()
		defer s.hop.mu.Unlock()
		tlsNote := "tls=false"
		if isTLS {
			tlsNote = "tls=true"
		}
		s.hop.auths = append(s.hop.auths, mech+" "+user+":"+pass+" "+tlsNote)
		if pass != "secret" {
			return smtp.ErrAuthFailed
		}
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return record(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: record}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// loginServer is the server side of AUTH LOGIN (go-sasl has none).
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		if len(resp) > 0 {
			return nil, false, errors.New("unexpected initial response")
		}
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(resp)
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(resp))
	}
}

// fakeResolver answers from maps keyed by rooted names; anything missing
// does not exist.
type fakeResolver struct {
	mx      map[string][]*net.MX
	hosts   map[string][]string
	mxErr   map[string]error
	queries []string
	mu      sync.Mutex
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r *fakeResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	r.mu.Lock()
	r.queries = append(r.queries, "MX "+name)
	r.mu.Unlock()
	if err := r.mxErr[name]; err != nil {
		return nil, err
	}
	if mx, ok := r.mx[name]; ok {
		return mx, nil
	}
	return nil, notFound(name)
}

func (r *fakeResolver) LookupHost(_ context.Context, name string) ([]string, error) {
	r.mu.Lock()
	r.queries = append(r.queries, "A "+name)
	r.mu.Unlock()
	if a, ok := r.hosts[name]; ok {
		return a, nil
	}
	return nil, notFound(name)
}

// testConfig returns a Config with short timeouts.
func testConfig() *Config {
	return &Config{
		HeloName:       "relay.test",
		ConnectTimeout: 5 * time.Second,
		CommandTimeout: 5 * time.Second,
		DataTimeout:    5 * time.Second,
	}
}

const testBody = "From: a@example.org\r\nTo: b@example.net\r\nSubject: test\r\n\r\nHello.\r\n"

func testEnvelope(to ...string) Envelope {
	return Envelope{From: "sender@example.org", To: to, Size: int64(len(testBody)), Body: strings.NewReader(testBody)}
}

// routeTo is a static route straight to a fake hop.
func routeTo(f *fakeHop) Route {
	return Route{Key: "route:" + f.addr, Kind: RouteStatic, Hosts: []Hop{{Host: "127.0.0.1", Port: f.port}}}
}

// dialSend dials route, sends env, and closes; it fails the test on a
// session error.
func dialSend(t *testing.T, cfg *Config, route Route, env Envelope) ([]RcptResult, ConnInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Dial(ctx, cfg, route)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer s.Close()
	res, err := s.Send(ctx, env)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	return res, s.Info()
}

func mustBeDelivered(t *testing.T, res []RcptResult) {
	t.Helper()
	for _, r := range res {
		if !r.Delivered() {
			t.Errorf("%s: %d %s %s, want delivered", r.Rcpt, r.Code, r.Enhanced, r.Text)
		}
	}
}

func sameBody(t *testing.T, got []byte) {
	t.Helper()
	if !bytes.Equal(got, []byte(testBody)) {
		t.Errorf("fake received %q, want %q", got, testBody)
	}
}
