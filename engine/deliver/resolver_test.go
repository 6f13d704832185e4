package deliver

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startDNS serves a tiny zone on 127.0.0.1 UDP and returns its address and
// a function listing the names it was asked for.
func startDNS(t *testing.T) (string, func() []string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asked []string
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative, m.RecursionAvailable = true, true
		q := req.Question[0]
		mu.Lock()
		asked = append(asked, dns.TypeToString[q.Qtype]+" "+q.Name)
		mu.Unlock()
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 60, Rrtype: q.Qtype}
		switch q.Name {
		case "example.test.":
			if q.Qtype == dns.TypeMX {
				m.Answer = append(m.Answer,
					&dns.MX{Hdr: hdr, Preference: 20, Mx: "backup.example.test."},
					&dns.MX{Hdr: hdr, Preference: 10, Mx: "mx.example.test."})
			}
		case "null.test.":
			if q.Qtype == dns.TypeMX {
				m.Answer = append(m.Answer, &dns.MX{Hdr: hdr, Preference: 0, Mx: "."})
			}
		case "nomx.test.":
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 1)})
			}
		case "servfail.test.":
			m.Rcode = dns.RcodeServerFailure
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: handler}
	go srv.ActivateAndServe() //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), asked...)
	}
}

func TestNewResolverQueriesTheGivenServer(t *testing.T) {
	t.Parallel()
	addr, asked := startDNS(t)
	r := NewResolver(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mxs, err := r.LookupMX(ctx, "example.test.")
	if err != nil {
		t.Fatal(err)
	}
	if len(mxs) != 2 {
		t.Fatalf("MX = %v", mxs)
	}
	if got := asked(); len(got) == 0 || got[0] != "MX example.test." {
		t.Errorf("server was asked %v", got)
	}

	// The whole of Route over real DNS messages: the Go resolver's view
	// of null MX, NODATA, NXDOMAIN and SERVFAIL is what Route relies on.
	cfg := testConfig()
	cfg.Resolver = r
	route, err := cfg.Route(ctx, "example.test")
	if err != nil || len(route.Hosts) != 2 || route.Hosts[0].Host != "mx.example.test" || route.Hosts[1].Host != "backup.example.test" {
		t.Errorf("example.test: %+v, %v", route, err)
	}
	route, err = cfg.Route(ctx, "nomx.test")
	if err != nil || len(route.Hosts) != 1 || len(route.Hosts[0].Addrs) != 1 || route.Hosts[0].Addrs[0] != "127.0.0.1" {
		t.Errorf("nomx.test: %+v, %v; want the implicit MX 127.0.0.1", route, err)
	}
	for _, tc := range []struct {
		domain    string
		permanent bool
		text      string
	}{{"null.test", true, "null MX"}, {"nxdomain.test", true, "does not exist"}, {"servfail.test", false, "MX"}} {
		_, err := cfg.Route(ctx, tc.domain)
		if err == nil || IsPermanent(err) != tc.permanent || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: err = %v (permanent=%v), want permanent=%v containing %q", tc.domain, err, IsPermanent(err), tc.permanent, tc.text)
		}
	}
}

func TestNewResolverEmptyIsTheSystemResolver(t *testing.T) {
	t.Parallel()
	if NewResolver("") != net.DefaultResolver {
		t.Error("NewResolver(\"\") is not net.DefaultResolver")
	}
}
