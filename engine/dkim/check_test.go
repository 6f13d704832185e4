package dkim

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// zone is what the test DNS server knows, by lower-case name without the
// trailing dot.
type zone struct {
	txt map[string][]string // each value is one record; long ones are split with SplitTXT
	a   map[string][]netip.Addr
	mx  map[string][]string
}

// startDNS serves z on 127.0.0.1 over UDP and returns a Go resolver that
// asks only that server.
func startDNS(t *testing.T, z zone) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{
		PacketConn:        pc,
		NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(req)
			m.Authoritative, m.RecursionAvailable = true, true
			q := req.Question[0]
			name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
			hdr := func(t uint16) dns.RR_Header {
				return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 60}
			}
			switch q.Qtype {
			case dns.TypeTXT:
				for _, v := range z.txt[name] {
					m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: SplitTXT(v)})
				}
			case dns.TypeMX:
				for i, h := range z.mx[name] {
					m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: uint16(10 * (i + 1)), Mx: h + "."})
				}
			case dns.TypeA, dns.TypeAAAA:
				for _, a := range z.a[name] {
					if a.Is4() && q.Qtype == dns.TypeA {
						m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: a.AsSlice()})
					}
					if a.Is6() && q.Qtype == dns.TypeAAAA {
						m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a.AsSlice()})
					}
				}
			}
			if z.txt[name] == nil && z.a[name] == nil && z.mx[name] == nil {
				m.Rcode = dns.RcodeNameError
			}
			w.WriteMsg(m)
		}),
	}
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-served:
		t.Fatalf("DNS server did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("DNS server did not start within 10s")
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("stopping DNS server: %v", err)
		}
	})
	addr := pc.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
}

// txtOnly hides the resolver's LookupNetIP and LookupMX.
type txtOnly struct{ r *net.Resolver }

func (t txtOnly) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return t.r.LookupTXT(ctx, name)
}

func TestCheckDNS(t *testing.T) {
	t.Parallel()
	key := fixedEd25519Key(t)
	rsaKey := generate(t, AlgorithmRSA2048)
	ourRecord, _ := key.PublicRecord()
	rsaRecord, _ := rsaKey.PublicRecord()
	otherKey, err := Generate("example.com", "pr202611", AlgorithmEd25519, testNow)
	if err != nil {
		t.Fatal(err)
	}
	otherRecord, _ := otherKey.PublicRecord()
	relay := []netip.Addr{netip.MustParseAddr("203.0.113.5")}

	const (
		dkimName  = "pr202611._domainkey.example.com"
		dmarc     = "v=DMARC1; p=none; rua=mailto:dmarc@example.com"
		spfDirect = "v=spf1 ip4:203.0.113.5 mx ~all"
	)
	good := func() map[string][]string {
		return map[string][]string{
			dkimName:             {ourRecord},
			"example.com":        {spfDirect, "google-site-verification=abc"},
			"_dmarc.example.com": {dmarc},
		}
	}
	with := func(change func(map[string][]string)) map[string][]string {
		m := good()
		change(m)
		return m
	}

	type want struct {
		ok       bool
		contains string
	}
	cases := []struct {
		name       string
		key        Key
		txt        map[string][]string
		a          map[string][]netip.Addr
		mx         map[string][]string
		sources    []netip.Addr
		txtOnly    bool
		dkim, spf  want
		dmarcCheck want
	}{
		{
			name: "all right", key: key, txt: good(), sources: relay,
			dkim:       want{true, "The DKIM record for selector pr202611 is published and matches our key."},
			spf:        want{true, "authorises 203.0.113.5 (through ip4:203.0.113.5)"},
			dmarcCheck: want{true, `policy "none"`},
		},
		{
			name: "RSA key split over two strings", key: rsaKey, sources: relay,
			txt:        with(func(m map[string][]string) { m[dkimName] = []string{rsaRecord} }),
			dkim:       want{true, "matches our key"},
			spf:        want{true, ""},
			dmarcCheck: want{true, ""},
		},
		{
			name: "missing DKIM", key: key, sources: relay,
			txt:        with(func(m map[string][]string) { delete(m, dkimName) }),
			dkim:       want{false, "No DKIM record found at pr202611._domainkey.example.com. Publish the record shown above; DNS changes can take up to an hour to appear."},
			spf:        want{true, ""},
			dmarcCheck: want{true, ""},
		},
		{
			name: "wrong DKIM key", key: key, sources: relay,
			txt:        with(func(m map[string][]string) { m[dkimName] = []string{otherRecord} }),
			dkim:       want{false, "its key does not match ours"},
			spf:        want{true, ""},
			dmarcCheck: want{true, ""},
		},
		{
			name: "SPF does not cover the relay", key: key, sources: relay,
			txt:        with(func(m map[string][]string) { m["example.com"] = []string{"v=spf1 ip4:198.51.100.0/24 -all"} }),
			dkim:       want{true, ""},
			spf:        want{false, "An SPF record is published but does not include 203.0.113.5 (this relay's address)."},
			dmarcCheck: want{true, ""},
		},
		{
			name: "SPF covers through an ip4 CIDR", key: key, sources: relay,
			txt:        with(func(m map[string][]string) { m["example.com"] = []string{"v=spf1 ip4:203.0.113.0/24 -all"} }),
			dkim:       want{true, ""},
			spf:        want{true, "through ip4:203.0.113.0/24"},
			dmarcCheck: want{true, ""},
		},
		{
			name: "no DMARC", key: key, sources: relay,
			txt:        with(func(m map[string][]string) { delete(m, "_dmarc.example.com") }),
			dkim:       want{true, ""},
			spf:        want{true, ""},
			dmarcCheck: want{false, "No DMARC record found at _dmarc.example.com;"},
		},
		{
			name: "SPF covers through mx", key: key, sources: relay,
			txt:        with(func(m map[string][]string) { m["example.com"] = []string{"v=spf1 mx -all"} }),
			mx:         map[string][]string{"example.com": {"mail.example.com"}},
			a:          map[string][]netip.Addr{"mail.example.com": {netip.MustParseAddr("203.0.113.5")}},
			dkim:       want{true, ""},
			spf:        want{true, "through mx"},
			dmarcCheck: want{true, ""},
		},
		{
			name: "SPF mx without address lookups", key: key, sources: relay, txtOnly: true,
			txt:        with(func(m map[string][]string) { m["example.com"] = []string{"v=spf1 mx -all"} }),
			dkim:       want{true, ""},
			spf:        want{false, "203.0.113.5 (this relay's address) is covered only if mx includes it."},
			dmarcCheck: want{true, ""},
		},
		{
			name: "SPF covers through include", key: key, sources: relay,
			txt: with(func(m map[string][]string) {
				m["example.com"] = []string{"v=spf1 include:_spf.provider.example ~all"}
				m["_spf.provider.example"] = []string{"v=spf1 ip4:203.0.113.0/28 ip6:2001:db8::/32 -all"}
			}),
			dkim:       want{true, ""},
			spf:        want{true, "through include:_spf.provider.example"},
			dmarcCheck: want{true, ""},
		},
		{
			name: "two SPF records", key: key, sources: relay,
			txt:        with(func(m map[string][]string) { m["example.com"] = []string{spfDirect, "v=spf1 -all"} }),
			dkim:       want{true, ""},
			spf:        want{false, "2 SPF records are published for example.com"},
			dmarcCheck: want{true, ""},
		},
		{
			name: "no SPF", key: key, sources: relay,
			txt:        with(func(m map[string][]string) { m["example.com"] = []string{"google-site-verification=abc"} }),
			dkim:       want{true, ""},
			spf:        want{false, "No SPF record is published for example.com."},
			dmarcCheck: want{true, ""},
		},
		{
			name: "relay address unknown", key: key, sources: []netip.Addr{netip.MustParseAddr("192.168.1.10")},
			txt:        good(),
			dkim:       want{true, ""},
			spf:        want{true, "not known"},
			dmarcCheck: want{true, ""},
		},
		{
			name: "DMARC reject without reports", key: key, sources: relay,
			txt:        with(func(m map[string][]string) { m["_dmarc.example.com"] = []string{"v=DMARC1; p=reject"} }),
			dkim:       want{true, ""},
			spf:        want{true, ""},
			dmarcCheck: want{true, "receivers refuse mail that fails the checks; no reports are requested"},
		},
		{
			name: "DMARC without a policy", key: key, sources: relay,
			txt:        with(func(m map[string][]string) { m["_dmarc.example.com"] = []string{"v=DMARC1; rua=mailto:x@example.com"} }),
			dkim:       want{true, ""},
			spf:        want{true, ""},
			dmarcCheck: want{false, "no valid policy"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res := startDNS(t, zone{txt: c.txt, a: c.a, mx: c.mx})
			var r Resolver = res
			if c.txtOnly {
				r = txtOnly{res}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			checks := CheckDNS(ctx, r, c.key, c.sources)
			if len(checks) != 3 || checks[0].Record != "DKIM" || checks[1].Record != "SPF" || checks[2].Record != "DMARC" {
				t.Fatalf("CheckDNS = %+v, want DKIM, SPF, DMARC checks", checks)
			}
			for i, w := range []want{c.dkim, c.spf, c.dmarcCheck} {
				got := checks[i]
				t.Logf("%s: OK=%v %s", got.Record, got.OK, got.Message)
				if got.OK != w.ok || !strings.Contains(got.Message, w.contains) {
					t.Errorf("%s check = OK %v %q, want OK %v containing %q", got.Record, got.OK, got.Message, w.ok, w.contains)
				}
			}
		})
	}
}

// TestCheckDMARCOrganisationalDomain checks the RFC 7489 fallback: a
// subdomain with no record of its own is covered by its parent's.
func TestCheckDMARCOrganisationalDomain(t *testing.T) {
	t.Parallel()
	res := startDNS(t, zone{txt: map[string][]string{"_dmarc.example.com": {"v=DMARC1; p=quarantine"}}})
	c := checkDMARC(context.Background(), res, "mail.example.com")
	if !c.OK || !strings.Contains(c.Message, "_dmarc.example.com") {
		t.Errorf("DMARC check for mail.example.com = OK %v %q, want the parent's record found", c.OK, c.Message)
	}
}
