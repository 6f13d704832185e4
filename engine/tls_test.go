package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
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

// testCA is a certificate authority made for one test.
type testCA struct {
	pool *x509.CertPool
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
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
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{pool: pool, cert: cert, key: key}
}

// leaf returns a server certificate for names and its key in PEM; signed
// by the CA, or by itself when selfSigned is set.
func (ca *testCA) leaf(t *testing.T, selfSigned bool, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	parent, signer := ca.cert, ca.key
	if selfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func (ca *testCA) tlsLeaf(t *testing.T, selfSigned bool, names ...string) tls.Certificate {
	t.Helper()
	c, k := ca.leaf(t, selfSigned, names...)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// tlsRelay is a relay with its submission and implicit-TLS ports open.
type tlsRelay struct {
	*relay
	submission, implicit string
}

func startTLSRelay(t *testing.T, s config.Settings, opts Options, dir string) *tlsRelay {
	t.Helper()
	sub, imp := listenLoopback(t), listenLoopback(t)
	opts.SubmissionListener, opts.TLSListener = sub, imp
	r := startRelay(t, s, opts, dir)
	return &tlsRelay{relay: r, submission: sub.Addr().String(), implicit: imp.Addr().String()}
}

// storedCert is the self-signed certificate kept in the relay's database.
func storedCert(t *testing.T, r *relay) *x509.Certificate {
	t.Helper()
	v, found, err := r.store.Value(context.Background(), selfSignedValue)
	if err != nil || !found {
		t.Fatalf("no self-signed certificate stored (%v)", err)
	}
	block, _ := pem.Decode(v)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("stored value does not start with a certificate: %.40q", v)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// trusting is a client TLS configuration that verifies the relay's
// certificate against cert for the name relay.test.
func trusting(certs ...*x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return &tls.Config{ServerName: "relay.test", RootCAs: pool}
}

// sendOver sends simpleBody over an open client that has said EHLO and
// returns the error of the first step that failed.
func sendOver(c *smtp.Client) error {
	if err := c.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(simpleBody)); err != nil {
		return err
	}
	return c.Quit()
}

func TestTLSStartTLSOnMainPort(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	r := startTLSRelay(t, testSettings(hop), Options{}, "")

	plain, err := smtp.Dial(r.e.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := plain.Extension("STARTTLS"); !ok {
		t.Fatal("EHLO on the main port does not offer STARTTLS")
	}
	plain.Close()

	// A client that verifies the relay's stored certificate for its
	// hostname: the handshake succeeds and the mail goes through.
	c, err := smtp.DialStartTLS(r.e.ListenAddr(), trusting(storedCert(t, r.relay)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatalf("EHLO after STARTTLS: %v", err)
	}
	if err := sendOver(c); err != nil {
		t.Fatalf("sending over STARTTLS: %v", err)
	}
	m := hop.wait()
	received, _, _ := strings.Cut(string(m.Data), "\r\n\r\n")
	if !strings.Contains(received, "with ESMTPS") || !strings.Contains(received, "TLS1.3") {
		t.Fatalf("Received header does not record TLS:\n%s", received)
	}
}

func TestTLSImplicitPort(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	r := startTLSRelay(t, testSettings(hop), Options{}, "")
	c, err := smtp.DialTLS(r.implicit, trusting(storedCert(t, r.relay)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatalf("EHLO over implicit TLS: %v", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered on a connection that is already TLS")
	}
	state, ok := c.TLSConnectionState()
	if !ok || state.Version != tls.VersionTLS13 {
		t.Fatalf("TLS state %v %x", ok, state.Version)
	}
	if err := sendOver(c); err != nil {
		t.Fatalf("sending over port 465: %v", err)
	}
	received, _, _ := strings.Cut(string(hop.wait().Data), "\r\n\r\n")
	if !strings.Contains(received, "with ESMTPS") {
		t.Fatalf("Received header does not record TLS:\n%s", received)
	}

	// The guard still applies under TLS: a blocked network is refused
	// before any handshake.
	s := testSettings(hop)
	s.Access.BlockedNetworks = []string{"127.0.0.0/8"}
	blocked := startTLSRelay(t, s, Options{}, "")
	conn, err := tls.Dial("tcp", blocked.implicit, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		conn.Close()
		t.Fatal("a blocked network completed a TLS handshake on port 465")
	}
}

func TestTLSSelfSignedCertificateSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := startTLSRelay(t, testSettings(nil), Options{}, dir)
	first := storedCert(t, r.relay)
	if err := first.VerifyHostname("relay.test"); err != nil {
		t.Fatalf("self-signed certificate is not for the hostname: %v", err)
	}
	if d := time.Until(first.NotAfter); d < 700*24*time.Hour || d > 825*24*time.Hour {
		t.Errorf("self-signed certificate valid for %v, want about two years and under 825 days", d)
	}
	if _, ok := first.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("key is %T, want ECDSA", first.PublicKey)
	}
	r.stop()

	r2 := startTLSRelay(t, testSettings(nil), Options{}, dir)
	conn, err := tls.Dial("tcp", r2.implicit, trusting(first))
	if err != nil {
		t.Fatalf("after a restart the relay does not present the stored certificate: %v", err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().PeerCertificates[0]; !got.Equal(first) {
		t.Fatalf("certificate changed across a restart: %s, was %s", Fingerprint(got), Fingerprint(first))
	}

	// A new hostname gets a new certificate, kept in its turn.
	s := testSettings(nil)
	s.Hostname = "mail.relay.test"
	if err := r2.e.SaveSettings(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	cert, err := r2.e.ServerCertificate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cert.VerifyHostname("mail.relay.test") != nil || !storedCert(t, r2.relay).Equal(cert) {
		t.Fatalf("after a hostname change: serving %v, stored %v", cert.DNSNames, storedCert(t, r2.relay).DNSNames)
	}
}

// peerCert does a TLS handshake with the implicit port and returns the
// certificate shown.
func peerCert(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// writeFile replaces path the way renewal tools do (a new file renamed
// over the old), with a modification time later than the old one's.
func writeFile(t *testing.T, path string, data []byte, mod time.Time) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, mod, mod); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestTLSCertificateFilesAreReloaded(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c1, k1 := ca.leaf(t, false, "relay.test")
	base := time.Now().Add(-time.Hour)
	writeFile(t, certPath, c1, base)
	writeFile(t, keyPath, k1, base)
	s := testSettings(nil)
	s.Listen.TLSCert, s.Listen.TLSKey = certPath, keyPath
	r := startTLSRelay(t, s, Options{}, "")

	// Served, and verifiable through the CA on the STARTTLS port.
	c, err := smtp.DialStartTLS(r.e.ListenAddr(), &tls.Config{ServerName: "relay.test", RootCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("client.test"); err != nil {
		t.Fatalf("STARTTLS with the file certificate: %v", err)
	}
	c.Close()
	first := peerCert(t, r.implicit)
	if string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: first.Raw})) != string(c1) {
		t.Fatal("the relay does not serve the certificate of listen.tls_cert")
	}

	// Renewed files are served from the next connection on.
	c2, k2 := ca.leaf(t, false, "relay.test")
	writeFile(t, certPath, c2, base.Add(time.Minute))
	writeFile(t, keyPath, k2, base.Add(time.Minute))
	second := peerCert(t, r.implicit)
	if second.Equal(first) || string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: second.Raw})) != string(c2) {
		t.Fatal("the replaced certificate file was not picked up")
	}

	// A key that does not match (a renewal half written) keeps the last
	// good pair in use.
	_, k3 := ca.leaf(t, false, "relay.test")
	writeFile(t, keyPath, k3, base.Add(2*time.Minute))
	if got := peerCert(t, r.implicit); !got.Equal(second) {
		t.Fatal("a broken pair replaced the good certificate")
	}

	// A wrong path is an error at start, naming the settings.
	s.Listen.TLSCert = filepath.Join(dir, "missing.pem")
	store, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), storage.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ln := listenLoopback(t)
	defer ln.Close()
	e := New(Options{Store: store, Listener: ln})
	if err := e.SaveSettings(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	err = e.Start(context.Background())
	if err == nil {
		e.Shutdown(context.Background())
		t.Fatal("Start accepted a missing certificate file")
	}
	if !strings.Contains(err.Error(), "listen.tls_cert") {
		t.Fatalf("error does not name the setting: %v", err)
	}
}

// rawLine reads one reply line byte by byte, so that nothing after it is
// taken from the connection (the TLS handshake must find its bytes).
func rawLine(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b []byte
	one := make([]byte, 1)
	for !bytes.HasSuffix(b, []byte("\r\n")) {
		if _, err := c.Read(one); err != nil {
			t.Fatalf("reading a reply line (so far %q): %v", b, err)
		}
		b = append(b, one[0])
	}
	return string(b)
}

// readReply reads a whole (multi-line) reply.
func readReply(t *testing.T, r *bufio.Reader) []string {
	t.Helper()
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a reply (so far %q): %v", lines, err)
		}
		lines = append(lines, strings.TrimRight(line, "\r\n"))
		if len(line) < 4 || line[3] != '-' {
			return lines
		}
	}
}

// checkInjectionRefused plays the CVE-2011-0411 attack against addr:
// "STARTTLS\r\nRSET\r\n" in one write, then the handshake; the first reply
// over TLS must answer the client's EHLO, and no reply to RSET may follow.
func checkInjectionRefused(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if l := rawLine(t, conn); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("greeting %q", l)
	}
	io.WriteString(conn, "EHLO client.test\r\n")
	for {
		l := rawLine(t, conn)
		if strings.HasPrefix(l, "250 ") {
			break
		}
	}
	if _, err := io.WriteString(conn, "STARTTLS\r\nRSET\r\n"); err != nil {
		t.Fatal(err)
	}
	if l := rawLine(t, conn); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("reply to STARTTLS: %q", l)
	}
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake after the injected command: %v", err)
	}
	io.WriteString(tc, "EHLO after.test\r\n")
	br := bufio.NewReader(tc)
	first := readReply(t, br)
	if !strings.HasPrefix(first[0], "250-") || !strings.Contains(first[0], "Hello after.test") {
		t.Fatalf("first reply over TLS is not the answer to EHLO: %q", first)
	}
	io.WriteString(tc, "QUIT\r\n")
	if quit := readReply(t, br); !strings.HasPrefix(quit[0], "221") {
		t.Fatalf("the reply after EHLO is %q, not QUIT's 221: the injected RSET was executed", quit)
	}
}

func TestTLSStartTLSInjection(t *testing.T) {
	t.Parallel()
	r := startTLSRelay(t, testSettings(nil), Options{}, "")
	checkInjectionRefused(t, r.e.ListenAddr())
	checkInjectionRefused(t, r.submission)
}

// TestTLSStartTLSInjectionGoSMTPAlone shows that go-smtp v0.25.1 itself
// discards pipelined clear text (it builds a new reader after the
// handshake), so the relay is safe even without the guard's own drop.
func TestTLSStartTLSInjectionGoSMTPAlone(t *testing.T) {
	t.Parallel()
	r := startRelay(t, testSettings(nil), Options{}, "")
	srv := smtp.NewServer(&backend{e: r.e})
	srv.Domain = "bare.test"
	srv.TLSConfig = r.e.certs.tlsConfig()
	srv.ErrorLog = smtpLogger{slog.New(slog.NewTextHandler(io.Discard, nil))}
	ln := listenLoopback(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	checkInjectionRefused(t, ln.Addr().String())
}

func TestTLSSubmissionRequiresAuth(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	r := startTLSRelay(t, testSettings(hop), Options{}, "")
	ctx := context.Background()
	if err := r.e.AddUser(ctx, "scanner", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	roots := trusting(storedCert(t, r.relay))

	// In plain text: STARTTLS offered, AUTH not, MAIL refused.
	c, err := smtp.Dial(r.submission)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Error("submission port does not offer STARTTLS")
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("submission port offers AUTH before TLS")
	}
	checkNeedsAuth(t, c.Mail("a@example.org", nil))
	c.Close()

	// Over TLS but without AUTH: still refused, although loopback is a
	// trusted network (the main port would take it).
	c, err = smtp.DialStartTLS(r.submission, roots)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); !ok {
		t.Fatal("AUTH not offered over TLS on the submission port")
	}
	checkNeedsAuth(t, c.Mail("a@example.org", nil))
	if err := c.Auth(sasl.NewPlainClient("", "scanner", "correct horse battery")); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := c.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(simpleBody)); err != nil {
		t.Fatalf("sending after AUTH: %v", err)
	}
	received, _, _ := strings.Cut(string(hop.wait().Data), "\r\n\r\n")
	if !strings.Contains(received, "with ESMTPSA") {
		t.Fatalf("Received header does not record TLS and AUTH:\n%s", received)
	}
}

func checkNeedsAuth(t *testing.T, err error) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 530 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 0}) {
		t.Fatalf("MAIL without AUTH on the submission port: %v, want 530 5.7.0", err)
	}
}

func TestTLSOldVersionsRefused(t *testing.T) {
	t.Parallel()
	r := startTLSRelay(t, testSettings(nil), Options{}, "")
	old := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}

	if conn, err := tls.Dial("tcp", r.implicit, old); err == nil {
		conn.Close()
		t.Fatal("port 465 accepted a TLS 1.1 handshake")
	}
	c, err := smtp.DialStartTLS(r.e.ListenAddr(), old)
	if err == nil {
		err = c.Hello("client.test")
		c.Close()
	}
	if err == nil {
		t.Fatal("STARTTLS accepted a TLS 1.1 handshake")
	}

	// TLS 1.2 is still welcome.
	tls12 := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}
	conn, err := tls.Dial("tcp", r.implicit, tls12)
	if err != nil {
		t.Fatalf("TLS 1.2 refused: %v", err)
	}
	conn.Close()

	// Only forward-secret AEAD suites in TLS 1.2: a client offering
	// nothing but CBC is refused.
	cbc := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}
	if conn, err := tls.Dial("tcp", r.implicit, cbc); err == nil {
		conn.Close()
		t.Fatal("port 465 accepted a CBC-only TLS 1.2 client")
	}
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	t  testing.TB
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
