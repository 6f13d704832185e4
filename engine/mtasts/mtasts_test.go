package mtasts

import (
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
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	t.Parallel()
	good := "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"
	p, err := ParsePolicy([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ModeEnforce || p.MaxAge != 7*24*time.Hour || len(p.MX) != 2 {
		t.Fatalf("parsed %+v", p)
	}
	// LF line ends, unknown keys and extra space are fine; mode none
	// needs no mx.
	if p, err := ParsePolicy([]byte("version: STSv1\nmode: none\nmax_age:86400\nextension: x\n")); err != nil || p.Mode != ModeNone {
		t.Fatalf("mode none: %+v %v", p, err)
	}
	bad := map[string]string{
		"no version":      "mode: enforce\nmx: a.example\nmax_age: 1\n",
		"wrong version":   "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
		"no mode":         "version: STSv1\nmx: a.example\nmax_age: 1\n",
		"unknown mode":    "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
		"no max_age":      "version: STSv1\nmode: enforce\nmx: a.example\n",
		"max_age too big": "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n",
		"negative age":    "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
		"enforce no mx":   "version: STSv1\nmode: enforce\nmax_age: 1\n",
		"testing no mx":   "version: STSv1\nmode: testing\nmax_age: 1\n",
		"bad mx":          "version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n",
		"inner wildcard":  "version: STSv1\nmode: enforce\nmx: mail.*.example\nmax_age: 1\n",
		"not key: value":  "version: STSv1\nmode enforce\n",
	}
	for name, body := range bad {
		if p, err := ParsePolicy([]byte(body)); err == nil {
			t.Errorf("%s: accepted as %+v", name, p)
		}
	}
}

func TestMatches(t *testing.T) {
	t.Parallel()
	p := &Policy{MX: []string{"mail.example.com", "*.example.net"}}
	for host, want := range map[string]bool{
		"mail.example.com":      true,
		"MAIL.Example.COM.":     true,
		"mx1.example.net":       true,
		"example.net":           false, // the wildcard needs a label
		"a.b.example.net":       false, // and matches exactly one
		"mail.example.com.evil": false,
		"other.example.com":     false,
		"xexample.net":          false,
	} {
		if got := p.Matches(host); got != want {
			t.Errorf("Matches(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestParseRecord(t *testing.T) {
	t.Parallel()
	for txt, want := range map[string]string{
		"v=STSv1; id=20160831085700Z;": "20160831085700Z",
		"v=STSv1;id=abc":               "abc",
		"v=STSv1; id=1; ext=2":         "1",
	} {
		if id, err := ParseRecord(txt); err != nil || id != want {
			t.Errorf("ParseRecord(%q) = %q, %v; want %q", txt, id, err, want)
		}
	}
	for _, txt := range []string{"v=STSv1;", "v=STSv1; id=", "v=spf1 -all", "v=STSv1; id=a-b", "v=STSv1; id=" + strings.Repeat("a", 33)} {
		if id, err := ParseRecord(txt); err == nil {
			t.Errorf("ParseRecord(%q) accepted id %q", txt, id)
		}
	}
}

// fakeTXT answers TXT lookups from a map; a missing name is NXDOMAIN, and
// err (when set) is a temporary failure.
type fakeTXT struct {
	mu      sync.Mutex
	records map[string][]string
	err     error
}

func (r *fakeTXT) LookupTXT(_ context.Context, name string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	if v, ok := r.records[name]; ok {
		return v, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r *fakeTXT) set(name string, v ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v == nil {
		delete(r.records, name)
		return
	}
	r.records[name] = v
}

// countingFetcher serves a policy body and counts fetches.
type countingFetcher struct {
	mu    sync.Mutex
	body  string
	err   error
	count int
}

func (f *countingFetcher) Fetch(context.Context, string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count++
	return []byte(f.body), f.err
}

func (f *countingFetcher) fetches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const enforce = "version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 3600\n"

func TestCacheFollowsRecordID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res := &fakeTXT{records: map[string][]string{"_mta-sts.example.com.": {"v=spf1 -all", "v=STSv1; id=1"}}}
	f := &countingFetcher{body: enforce}
	clk := &testClock{now: time.Unix(1e9, 0)}
	c := NewCache(f, clk.Now)

	p, err := c.Lookup(ctx, res, "Example.COM.")
	if err != nil || p == nil || p.Mode != ModeEnforce || p.ID != "1" || p.Domain != "example.com" {
		t.Fatalf("first lookup: %+v %v", p, err)
	}
	if _, err := c.Lookup(ctx, res, "example.com"); err != nil || f.fetches() != 1 {
		t.Fatalf("same id fetched again: %d fetches, %v", f.fetches(), err)
	}

	// A new id means a new policy.
	res.set("_mta-sts.example.com.", "v=STSv1; id=2")
	f.mu.Lock()
	f.body = strings.Replace(enforce, "enforce", "testing", 1)
	f.mu.Unlock()
	if p, _ := c.Lookup(ctx, res, "example.com"); p == nil || p.Mode != ModeTesting || f.fetches() != 2 {
		t.Fatalf("after id change: %+v, %d fetches", p, f.fetches())
	}

	// The record gone, or DNS failing: the cached policy stays in force
	// until it expires.
	res.set("_mta-sts.example.com.")
	if p, err := c.Lookup(ctx, res, "example.com"); p == nil || err != nil {
		t.Fatalf("record removed: cached policy dropped: %+v %v", p, err)
	}
	res.mu.Lock()
	res.err = &net.DNSError{Err: "server misbehaving", Name: "_mta-sts.example.com."}
	res.mu.Unlock()
	if p, err := c.Lookup(ctx, res, "example.com"); p == nil || err == nil {
		t.Fatalf("DNS failure: want the cached policy and the error, got %+v %v", p, err)
	}
	clk.Advance(time.Hour)
	if p, _ := c.Lookup(ctx, res, "example.com"); p != nil {
		t.Fatalf("expired policy still in force: %+v", p)
	}
}

func TestCacheFetchFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res := &fakeTXT{records: map[string][]string{"_mta-sts.example.com.": {"v=STSv1; id=1"}}}
	f := &countingFetcher{body: enforce}
	clk := &testClock{now: time.Unix(1e9, 0)}
	c := NewCache(f, clk.Now)
	if p, err := c.Lookup(ctx, res, "example.com"); p == nil || err != nil {
		t.Fatalf("%+v %v", p, err)
	}

	// The id changes but the new policy cannot be fetched: the old one
	// stays, and the fetch is not retried at every delivery.
	res.set("_mta-sts.example.com.", "v=STSv1; id=2")
	f.mu.Lock()
	f.err = errors.New("connection refused")
	f.mu.Unlock()
	p, err := c.Lookup(ctx, res, "example.com")
	if p == nil || p.ID != "1" || err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("failed fetch: %+v %v", p, err)
	}
	if _, err := c.Lookup(ctx, res, "example.com"); err == nil || f.fetches() != 2 {
		t.Fatalf("failed fetch retried at once: %d fetches", f.fetches())
	}
	clk.Advance(retryFailedFetch)
	f.mu.Lock()
	f.err = nil
	f.mu.Unlock()
	if p, err := c.Lookup(ctx, res, "example.com"); p == nil || p.ID != "2" || err != nil || f.fetches() != 3 {
		t.Fatalf("retry after the pause: %+v %v, %d fetches", p, err, f.fetches())
	}

	// A bad policy is no policy; a domain without a record has none.
	res.set("_mta-sts.example.org.", "v=STSv1; id=9")
	f.mu.Lock()
	f.body = "version: STSv1\nmode: enforce\n"
	f.mu.Unlock()
	if p, err := c.Lookup(ctx, res, "example.org"); p != nil || err == nil {
		t.Fatalf("bad policy: %+v %v", p, err)
	}
	if p, err := c.Lookup(ctx, res, "example.net"); p != nil || err != nil {
		t.Fatalf("no record: %+v %v", p, err)
	}
	// Two STSv1 records: treated as none.
	res.set("_mta-sts.example.net.", "v=STSv1; id=1", "v=STSv1; id=2")
	if p, err := c.Lookup(ctx, res, "example.net"); p != nil || err != nil {
		t.Fatalf("two records: %+v %v", p, err)
	}
}

// selfSigned returns a certificate for names, its own issuer.
func selfSigned(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testFetcher returns an HTTPFetcher whose connections all go to ts, which
// it trusts.
func testFetcher(ts *httptest.Server) *HTTPFetcher {
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	f := NewHTTPFetcher(roots)
	tr := f.Client.Transport.(*http.Transport)
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, ts.Listener.Addr().String())
	}
	return f
}

func TestHTTPFetcher(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	var mu sync.Mutex
	hosts := map[string]bool{}
	mux.HandleFunc("/.well-known/mta-sts.txt", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts[r.Host] = true
		mu.Unlock()
		switch r.Host {
		case "mta-sts.example.com":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte(enforce))
		case "mta-sts.redirect.example.com":
			http.Redirect(w, r, "https://mta-sts.example.com/.well-known/mta-sts.txt", http.StatusFound)
		case "mta-sts.html.example.com":
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(enforce))
		default:
			http.NotFound(w, r)
		}
	})
	ts := httptest.NewUnstartedServer(mux)
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t, "mta-sts.example.com",
		"mta-sts.redirect.example.com", "mta-sts.html.example.com", "mta-sts.gone.example.com")}}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	f := testFetcher(ts)
	ctx := context.Background()

	body, err := f.Fetch(ctx, "example.com")
	if err != nil || string(body) != enforce {
		t.Fatalf("fetch: %q %v", body, err)
	}
	for domain, want := range map[string]string{
		"redirect.example.com": "302",
		"html.example.com":     "not text/plain",
		"gone.example.com":     "404",
		// The server's certificate is not valid for mta-sts.example.org.
		"example.org": "certificate",
	} {
		if _, err := f.Fetch(ctx, domain); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("fetch for %s: %v, want an error with %q", domain, err, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !hosts["mta-sts.example.com"] || hosts["mta-sts.example.org"] {
		t.Errorf("hosts asked: %v", hosts)
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(enforce))
	f.Add([]byte("version: STSv1\r\nmode: none\r\nmax_age: 0\r\n"))
	f.Add([]byte("mx: *.\nmx: *\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePolicy(body)
		if err != nil {
			return
		}
		if p.MaxAge < 0 || p.MaxAge > MaxMaxAge || (p.Mode != ModeNone && len(p.MX) == 0) {
			t.Fatalf("accepted an impossible policy: %+v", p)
		}
		for _, mx := range p.MX {
			p.Matches(mx)
		}
	})
}
