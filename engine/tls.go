package engine

// Inbound TLS: the certificate the relay presents and the two extra
// listeners that need one.
//
//   - The main port offers STARTTLS (the connection guard runs it, and the
//     implicit TLS of port 465, see guard.go). listen.submission_port (587) is the same SMTP with STARTTLS, but
//     a client there must authenticate before MAIL (RFC 6409 section 4.3);
//     since AUTH is only offered on TLS (auth.go), that also means TLS.
//     listen.tls_port (465) is implicit TLS (RFC 8314). All three share the
//     connection guard: blocked networks, connection caps, line rules.
//   - The certificate comes from listen.tls_cert and listen.tls_key (PEM).
//     Their modification time and size are looked at on every handshake
//     (two stat calls), so a renewed certificate (certbot, an ACME client,
//     a copy from the firewall) is served from the next connection on,
//     without a restart. A pair that does not load is logged once, and the
//     last good certificate stays in use: a renewal half written must not
//     take TLS away.
//   - Without those files the relay makes itself a self-signed certificate
//     for its hostname and keeps it in the database, so that it survives
//     restarts: clients that were told to trust it once (Outlook's and
//     Thunderbird's "accept this certificate", a copier's stored
//     certificate) keep trusting it. It is valid for two years, under the
//     825 days Apple's systems accept for any TLS server certificate, and is
//     replaced when fewer than 30 days are left or when the hostname
//     changes.
//   - TLS 1.2 is the minimum; the cipher suites are Go's defaults (no RC4,
//     3DES or static-RSA key exchange). SSL 3, TLS 1.0 and 1.1 clients are
//     refused at the handshake.
//
// STARTTLS command injection (CVE-2011-0411): text a client pipelines after
// STARTTLS was sent in clear and must not be taken as commands of the TLS
// session. The guard hands go-smtp one command line at a time, so go-smtp
// has nothing buffered, and answers STARTTLS itself, dropping whatever it
// holds before the handshake (guard.go). The test TestTLSStartTLSInjection
// proves the result on the wire.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

const (
	// selfSignedValue is the kv name of the generated certificate and key
	// (PEM, certificate first).
	selfSignedValue = "tls_self_signed"
	// selfSignedLifetime stays under the 825 days that Apple's systems
	// accept for a TLS server certificate, trusted by exception or not.
	selfSignedLifetime = 730 * 24 * time.Hour
	// selfSignedRenew is how long before its end a generated certificate
	// is replaced.
	selfSignedRenew = 30 * 24 * time.Hour
)

// errSubmissionNeedsAuth answers MAIL from a client that has not
// authenticated on the submission port (RFC 4954 section 6).
var errSubmissionNeedsAuth = smtpErr(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required on the submission port")

// listenerKind says on which of the relay's ports a connection arrived.
type listenerKind int

const (
	portMain       listenerKind = iota // listen.port: STARTTLS offered
	portSubmission                     // listen.submission_port: STARTTLS, AUTH required
	portImplicit                       // listen.tls_port: TLS from the first byte
)

// kindListener marks each accepted connection with the port's kind.
type kindListener struct {
	net.Listener
	kind listenerKind
}

func (l kindListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &kindConn{Conn: c, kind: l.kind}, nil
}

// kindConn is a connection that knows its port's kind. NetConn lets
// guardOf and kindOf see through it, as through a *tls.Conn.
type kindConn struct {
	net.Conn
	kind listenerKind
}

func (c *kindConn) NetConn() net.Conn { return c.Conn }

// kindOf finds the port a connection go-smtp hands to a session came in on.
func kindOf(c net.Conn) listenerKind {
	for c != nil {
		if k, ok := c.(*kindConn); ok {
			return k.kind
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	return portMain
}

// submissionAuth is MAIL's check on the submission port.
func (s *session) submissionAuth() error {
	if s.authUser == "" && kindOf(s.conn.Conn()) == portSubmission {
		s.e.refused("submission_auth", s.ip, "MAIL", "")
		return errSubmissionNeedsAuth
	}
	return nil
}

// openTLSListeners opens the submission and implicit-TLS listeners the
// settings ask for (or the test listeners of Options). The caller serves
// them; on error nothing is left open.
func (e *Engine) openTLSListeners(address string, submissionPort, tlsPort int) (submission, implicit net.Listener, err error) {
	open := func(given net.Listener, port int) (net.Listener, error) {
		if given != nil || port == 0 {
			return given, nil
		}
		addr := net.JoinHostPort(address, fmt.Sprint(port))
		ln, err := listenTCP(addr)
		if err != nil {
			return nil, fmt.Errorf("cannot listen on %s: %w", addr, err)
		}
		return ln, nil
	}
	if submission, err = open(e.opts.SubmissionListener, submissionPort); err != nil {
		return nil, nil, err
	}
	if implicit, err = open(e.opts.TLSListener, tlsPort); err != nil {
		if submission != nil {
			submission.Close()
		}
		return nil, nil, err
	}
	return submission, implicit, nil
}

// serveTLSListeners serves the extra listeners behind the same guard as
// the main one. go-smtp closes them at shutdown.
func (s *smtpServer) serveTLSListeners(submission, implicit net.Listener) {
	run := func(ln net.Listener) {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
			s.e.log.Error("SMTP server stopped", "listen", ln.Addr().String(), "err", err)
		}
	}
	if submission != nil {
		go run(kindListener{Listener: &guardListener{Listener: submission, s: s}, kind: portSubmission})
	}
	if implicit != nil {
		// The guard admits the connection, then runs TLS itself, so
		// that its rules see the plain text (guard.go).
		go run(implicitTLSListener{kindListener{Listener: &guardListener{Listener: implicit, s: s}, kind: portImplicit}})
	}
}

// certStore finds the certificate for each handshake.
type certStore struct {
	e *Engine

	mu     sync.Mutex
	file   *fileCert        // last good pair from listen.tls_cert/tls_key
	failed fileCert         // the pair that last failed to load, to log it once
	self   *tls.Certificate // the generated one, once loaded or made
}

// fileCert is a certificate loaded from files, with what the files looked
// like when it was.
type fileCert struct {
	certPath, keyPath   string
	certStamp, keyStamp fileStamp
	cert                *tls.Certificate
}

func (f fileCert) same(o fileCert) bool {
	return f.certPath == o.certPath && f.keyPath == o.keyPath && f.certStamp == o.certStamp && f.keyStamp == o.keyStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}
}

func newCertStore(e *Engine) *certStore { return &certStore{e: e} }

// tlsConfig is the server side of every inbound TLS connection.
func (c *certStore) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   inboundTLS12Suites,
		GetCertificate: c.getCertificate,
	}
}

// inboundTLS12Suites are the TLS 1.2 suites offered to clients: forward
// secret and AEAD only. Go's defaults also offer the CBC suites, which
// testssl.sh reports as obsolete; every TLS 1.2 client of the last decade
// has one of these. (TLS 1.3 suites are not configurable and all good.)
var inboundTLS12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// prepare loads the certificate at start, so that a wrong path or a key
// that does not match is a clear error then rather than a failed
// handshake later.
func (c *certStore) prepare(ctx context.Context) error {
	l := c.e.Settings().Listen
	if l.TLSCert != "" {
		if _, err := c.fromFiles(l.TLSCert, l.TLSKey); err != nil {
			return fmt.Errorf("listen.tls_cert and listen.tls_key: %w", err)
		}
		return nil
	}
	_, err := c.selfSigned(ctx)
	return err
}

func (c *certStore) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	l := c.e.Settings().Listen
	if l.TLSCert != "" {
		cert, err := c.fromFiles(l.TLSCert, l.TLSKey)
		if err == nil {
			return cert, nil
		}
		// Files set at run time that never loaded (fromFiles logged
		// why): the generated certificate keeps TLS, and mail, going.
	}
	ctx, cancel := context.WithTimeout(hello.Context(), storeTimeout)
	defer cancel()
	return c.selfSigned(ctx)
}

// fromFiles returns the pair at the given paths, loading it again when the
// files changed. A pair that does not load leaves the last good one in use.
func (c *certStore) fromFiles(certPath, keyPath string) (*tls.Certificate, error) {
	now := fileCert{certPath: certPath, keyPath: keyPath, certStamp: stampOf(certPath), keyStamp: stampOf(keyPath)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.file != nil && c.file.same(now) {
		return c.file.cert, nil
	}
	if c.failed.same(now) && c.file != nil {
		return c.file.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil && cert.Leaf == nil {
		err = errors.New("no certificate in the file")
	}
	if err != nil {
		if !c.failed.same(now) {
			c.failed = now
			c.e.log.Error("the TLS certificate files could not be loaded", "cert", certPath, "key", keyPath, "err", err,
				"in_use", c.describe(c.file))
		}
		if c.file != nil {
			return c.file.cert, nil
		}
		return nil, err
	}
	now.cert = &cert
	c.file, c.failed = &now, fileCert{}
	c.e.log.Info("TLS certificate loaded", "cert", certPath, "subject", cert.Leaf.Subject.String(),
		"names", cert.Leaf.DNSNames, "not_after", cert.Leaf.NotAfter.Format(time.RFC3339))
	return &cert, nil
}

func (c *certStore) describe(f *fileCert) string {
	if f == nil {
		return "none"
	}
	return f.certPath + " (valid until " + f.cert.Leaf.NotAfter.Format(time.RFC3339) + ")"
}

// selfSigned returns the generated certificate for the current hostname,
// from memory, from the database, or made now.
func (c *certStore) selfSigned(ctx context.Context) (*tls.Certificate, error) {
	host := c.e.Settings().Hostname
	now := time.Now() // certificates live in real time, whatever clock the engine runs on
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.self != nil && selfSignedFits(c.self.Leaf, host, now) {
		return c.self, nil
	}
	v, found, err := c.e.store.Value(ctx, selfSignedValue)
	if err != nil {
		return nil, fmt.Errorf("reading the TLS certificate: %w", err)
	}
	if found {
		cert, err := tls.X509KeyPair(v, v)
		if err == nil && selfSignedFits(cert.Leaf, host, now) {
			c.self = &cert
			return c.self, nil
		}
		if err != nil {
			c.e.log.Warn("the stored self-signed TLS certificate is unreadable; making a new one", "err", err)
		}
	}
	pemData, err := makeSelfSigned(host, now)
	if err != nil {
		return nil, fmt.Errorf("making a self-signed TLS certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(pemData, pemData)
	if err != nil {
		return nil, fmt.Errorf("making a self-signed TLS certificate: %w", err)
	}
	if err := c.e.store.SetValue(ctx, selfSignedValue, pemData); err != nil {
		return nil, fmt.Errorf("storing the TLS certificate: %w", err)
	}
	c.self = &cert
	c.e.log.Info("made a self-signed TLS certificate", "hostname", host,
		"not_after", cert.Leaf.NotAfter.Format(time.RFC3339), "sha256", Fingerprint(cert.Leaf))
	return c.self, nil
}

// selfSignedFits reports whether a stored certificate still serves: for
// this hostname and not about to end.
func selfSignedFits(leaf *x509.Certificate, host string, now time.Time) bool {
	return leaf != nil && leaf.VerifyHostname(host) == nil && now.Add(selfSignedRenew).Before(leaf.NotAfter)
}

// makeSelfSigned returns a new ECDSA P-256 certificate and its key, PEM
// encoded one after the other.
func makeSelfSigned(host string, now time.Time) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host, Organization: []string{"Postroom self-signed"}},
		DNSNames:              []string{host},
		NotBefore:             now.Add(-time.Hour), // a client's clock a little behind
		NotAfter:              now.Add(selfSignedLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.DNSNames, tmpl.IPAddresses = nil, []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...), nil
}

// Fingerprint is the SHA-256 fingerprint of a certificate as mail clients
// show it (hex, colon separated), for a user comparing what their client
// is asked to trust.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := hex.EncodeToString(sum[:])
	out := make([]byte, 0, len(h)*3/2)
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, h[i], h[i+1])
	}
	return string(out)
}

// ServerCertificate returns the certificate inbound TLS presents now (the
// files' or the generated one), for the window and the command line to
// show its names, end date and fingerprint.
func (e *Engine) ServerCertificate(ctx context.Context) (*x509.Certificate, error) {
	l := e.Settings().Listen
	var (
		cert *tls.Certificate
		err  error
	)
	if l.TLSCert != "" {
		cert, err = e.certs.fromFiles(l.TLSCert, l.TLSKey)
	} else {
		cert, err = e.certs.selfSigned(ctx)
	}
	if err != nil {
		return nil, err
	}
	return cert.Leaf, nil
}

// addrOf is a listener's address for the log, "" when it is off.
func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
