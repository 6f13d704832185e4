package engine

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"postroom/engine/mtasts"
	"postroom/storage"
)

// newTLSHop is a next hop that offers STARTTLS with cert.
func newTLSHop(t *testing.T, cert tls.Certificate) *nextHop {
	t.Helper()
	h := &nextHop{t: t, got: make(chan received, 100)}
	h.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		h.mu.Lock()
		h.conns++
		h.mu.Unlock()
		return &hopSession{h: h}, nil
	}))
	h.srv.Domain = "mx1.example.com"
	h.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	h.srv.ErrorLog = smtpLogger{slog.New(slog.NewTextHandler(io.Discard, nil))}
	h.ln = listenLoopback(t)
	go h.srv.Serve(h.ln)
	t.Cleanup(func() { h.srv.Close() })
	return h
}

// txtRecords answers TXT lookups from a map.
type txtRecords map[string][]string

func (r txtRecords) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := r[name]; ok {
		return v, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// stsRelay is a relay delivering example.com to its MX mx1.example.com
// (the hop), with example.com's MTA-STS policy served over HTTPS by an
// in-test server at mta-sts.example.com. An empty policy publishes no
// _mta-sts record.
type stsRelay struct {
	*relay
	hop *nextHop
	log *lockedBuffer
}

func startSTSRelay(t *testing.T, ca *testCA, policy string, hopCert tls.Certificate) *stsRelay {
	t.Helper()
	hop := newTLSHop(t, hopCert)
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/mta-sts.txt", func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "mta-sts.example.com" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, policy)
	})
	ts := httptest.NewUnstartedServer(mux)
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{ca.tlsLeaf(t, false, "mta-sts.example.com")}}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	// The real HTTPS fetcher, trusting the test CA, with every connection
	// going to the in-test server.
	fetcher := mtasts.NewHTTPFetcher(ca.pool)
	fetcher.Client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, ts.Listener.Addr().String())
	}
	txt := txtRecords{}
	if policy != "" {
		txt["_mta-sts.example.com."] = []string{"v=STSv1; id=20240101T000000;"}
	}
	logs := &lockedBuffer{t: t}
	r := startRelay(t, testSettings(nil), Options{
		Resolver: &fakeResolver{
			mx:    map[string][]*net.MX{"example.com": {{Host: "mx1.example.com.", Pref: 10}}},
			hosts: map[string][]string{"mx1.example.com": {"127.0.0.1"}},
		},
		MXPort:      hop.port(),
		RootCAs:     ca.pool,
		TXTResolver: txt,
		STSFetcher:  fetcher,
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, "")
	return &stsRelay{relay: r, hop: hop, log: logs}
}

// sendAndSettle sends one message to b@example.com and waits until its
// recipient is sent or deferred; it returns the row and the last attempt.
func (r *stsRelay) sendAndSettle(t *testing.T) (storage.Row, storage.Attempt) {
	t.Helper()
	r.mustSend("a@example.org", []string{"b@example.com"}, simpleBody)
	rows := r.waitFor("a delivery attempt", func(rows []storage.Row) bool {
		return len(rows) == 1 && (rows[0].State == storage.Sent || rows[0].State == storage.Deferred)
	})
	attempts, err := r.store.Attempts(context.Background(), rows[0].MessageID)
	if err != nil || len(attempts) == 0 {
		t.Fatalf("attempt log: %v %v", attempts, err)
	}
	return rows[0], attempts[len(attempts)-1]
}

const stsEnforce = "version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 86400\n"

func TestMTASTSEnforceMatchingMXDeliversOverVerifiedTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	r := startSTSRelay(t, ca, stsEnforce, ca.tlsLeaf(t, false, "mx1.example.com"))
	row, attempt := r.sendAndSettle(t)
	if row.State != storage.Sent {
		t.Fatalf("state %s: %s", row.State, row.LastError)
	}
	r.hop.wait()
	if attempt.TLS != "TLS1.3 verified, MTA-STS enforce" {
		t.Fatalf("attempt log tls field %q", attempt.TLS)
	}
}

func TestMTASTSEnforceNonMatchingMXDefers(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	policy := "version: STSv1\nmode: enforce\nmx: mail.example.org\nmax_age: 86400\n"
	r := startSTSRelay(t, ca, policy, ca.tlsLeaf(t, false, "mx1.example.com"))
	row, attempt := r.sendAndSettle(t)
	if row.State != storage.Deferred {
		t.Fatalf("state %s, want deferred", row.State)
	}
	want := "MTA-STS policy of example.com (enforce) allows only MX mail.example.org; none of its MX hosts (mx1.example.com) matches"
	if !strings.Contains(row.LastError, want) {
		t.Fatalf("last error %q, want it to say %q", row.LastError, want)
	}
	if attempt.TLS != "MTA-STS enforce" {
		t.Errorf("attempt log tls field %q", attempt.TLS)
	}
	if n := r.hop.connections(); n != 0 {
		t.Fatalf("the MX outside the policy was contacted %d times", n)
	}
}

func TestMTASTSEnforceBadCertificateDefers(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	selfSigned := ca.tlsLeaf(t, true, "mx1.example.com")

	// Without a policy, opportunistic TLS takes the mail despite the
	// certificate...
	control := startSTSRelay(t, ca, "", selfSigned)
	if row, attempt := control.sendAndSettle(t); row.State != storage.Sent || attempt.TLS != "TLS1.3 not verified" {
		t.Fatalf("without a policy: %s %q (%s)", row.State, attempt.TLS, row.LastError)
	}

	// ...with enforce it waits.
	r := startSTSRelay(t, ca, stsEnforce, selfSigned)
	row, attempt := r.sendAndSettle(t)
	if row.State != storage.Deferred {
		t.Fatalf("state %s, want deferred", row.State)
	}
	for _, want := range []string{"MTA-STS policy of example.com (enforce) requires TLS with a certificate valid for the MX name", "certificate"} {
		if !strings.Contains(row.LastError, want) {
			t.Fatalf("last error %q does not say %q", row.LastError, want)
		}
	}
	if attempt.TLS != "MTA-STS enforce" {
		t.Errorf("attempt log tls field %q", attempt.TLS)
	}
	select {
	case m := <-r.hop.got:
		t.Fatalf("the MX with a bad certificate got a message from %s", m.From)
	default:
	}
}

func TestMTASTSTestingDeliversAndLogs(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	policy := "version: STSv1\nmode: testing\nmx: mail.example.org\nmax_age: 86400\n"
	r := startSTSRelay(t, ca, policy, ca.tlsLeaf(t, true, "mx1.example.com"))
	row, attempt := r.sendAndSettle(t)
	if row.State != storage.Sent {
		t.Fatalf("state %s: %s", row.State, row.LastError)
	}
	r.hop.wait()
	if attempt.TLS != "TLS1.3 not verified, MTA-STS testing" {
		t.Fatalf("attempt log tls field %q", attempt.TLS)
	}
	logs := r.log.String()
	for _, want := range []string{
		`"MTA-STS testing: under enforce these MX hosts would not be used" domain=example.com mx=mx1.example.com`,
		`"MTA-STS testing: the certificate does not verify for the MX name; under enforce this would be deferred"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log does not say %s", want)
		}
	}
}
