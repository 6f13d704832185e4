package deliver

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestRouteStaticRouteWinsAndDelivers(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{})
	res := &fakeResolver{}
	cfg := testConfig()
	cfg.Resolver = res
	cfg.Routes = map[string]string{"example.net": f.addr}
	cfg.Smarthost = "smarthost.invalid:587"

	route, err := cfg.Route(context.Background(), "Example.NET.")
	if err != nil {
		t.Fatal(err)
	}
	if route.Kind != RouteStatic || route.Key != "route:"+f.addr || len(route.Hosts) != 1 || route.Hosts[0].Addr() != f.addr {
		t.Fatalf("route = %+v, want the static route to %s", route, f.addr)
	}
	if len(res.queries) != 0 {
		t.Errorf("a static route made DNS queries: %v", res.queries)
	}
	results, _ := dialSend(t, cfg, route, testEnvelope("b@example.net"))
	mustBeDelivered(t, results)
	_, msgs, _, _ := f.snapshot()
	if len(msgs) != 1 || msgs[0].rcpts[0] != "b@example.net" {
		t.Fatalf("fake received %+v", msgs)
	}
	sameBody(t, msgs[0].data)
}

func TestRouteSmarthostTakesOtherDomains(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Resolver = &fakeResolver{}
	cfg.Routes = map[string]string{"example.net": "127.0.0.1:2526"}
	cfg.Smarthost = "Smtp.Provider.test:587"
	route, err := cfg.Route(context.Background(), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if route.Kind != RouteSmarthost || route.Key != "smarthost:smtp.provider.test:587" || route.Hosts[0].Host != "smtp.provider.test" || route.Hosts[0].Port != 587 {
		t.Fatalf("route = %+v", route)
	}
}

func TestRouteMXOrderAndFallbackWhenFirstRefuses(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{})
	// A port where nothing listens: connections to it are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().(*net.TCPAddr).Port
	l.Close()

	res := &fakeResolver{
		mx: map[string][]*net.MX{"example.com.": {
			{Host: "backup.example.com.", Pref: 20},
			{Host: "MX1.example.com.", Pref: 10},
			{Host: "mx1b.example.com.", Pref: 10},
			{Host: "last.example.com.", Pref: 30},
		}},
		hosts: map[string][]string{
			"mx1.example.com.":    {"192.0.2.1"},
			"mx1b.example.com.":   {"192.0.2.2"},
			"backup.example.com.": {"192.0.2.3"},
		},
	}
	cfg := testConfig()
	cfg.Resolver = res
	var dialed []string
	// Fault injection: the two preference-10 hosts are a closed port, the
	// backup is the fake.
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed = append(dialed, addr)
		target := net.JoinHostPort("127.0.0.1", itoa(closedPort))
		if addr == "192.0.2.3:25" {
			target = f.addr
		}
		var d net.Dialer
		return d.DialContext(ctx, network, target)
	}

	route, err := cfg.Route(context.Background(), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range route.Hosts {
		names = append(names, h.Host)
	}
	got := strings.Join(names, " ")
	if got != "mx1.example.com mx1b.example.com backup.example.com last.example.com" &&
		got != "mx1b.example.com mx1.example.com backup.example.com last.example.com" {
		t.Fatalf("hosts in order %q, want preference order", got)
	}
	if route.Key != "mx:example.com" || route.Kind != RouteMX {
		t.Errorf("route key/kind = %q/%v", route.Key, route.Kind)
	}

	results, info := dialSend(t, cfg, route, testEnvelope("x@example.com"))
	mustBeDelivered(t, results)
	if info.Host != "backup.example.com" || info.Addr != "192.0.2.3:25" {
		t.Errorf("session with %s [%s], want backup.example.com [192.0.2.3:25]", info.Host, info.Addr)
	}
	if results[0].Host != "backup.example.com" {
		t.Errorf("result names host %q", results[0].Host)
	}
	if len(dialed) != 3 || dialed[2] != "192.0.2.3:25" {
		t.Errorf("dialed %v, want both preference-10 hosts before the backup", dialed)
	}
}

func TestRouteEqualPreferencesAreShuffled(t *testing.T) {
	t.Parallel()
	res := &fakeResolver{mx: map[string][]*net.MX{"example.com.": {
		{Host: "a.example.com.", Pref: 10}, {Host: "b.example.com.", Pref: 10}, {Host: "c.example.com.", Pref: 5},
	}}}
	cfg := testConfig()
	cfg.Resolver = res
	firsts := map[string]bool{}
	for range 200 {
		route, err := cfg.Route(context.Background(), "example.com")
		if err != nil {
			t.Fatal(err)
		}
		if route.Hosts[0].Host != "c.example.com" {
			t.Fatalf("lowest preference not first: %+v", route.Hosts)
		}
		firsts[route.Hosts[1].Host] = true
	}
	if !firsts["a.example.com"] || !firsts["b.example.com"] {
		t.Errorf("equal-preference hosts always in the same order over 200 tries: %v", firsts)
	}
}

func TestRouteNoMXUsesAddressRecords(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{})
	cfg := testConfig()
	cfg.Resolver = &fakeResolver{hosts: map[string][]string{"nomx.test.": {"127.0.0.1"}}}
	cfg.Port = f.port
	route, err := cfg.Route(context.Background(), "nomx.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(route.Hosts) != 1 || route.Hosts[0].Host != "nomx.test" {
		t.Fatalf("route = %+v, want the implicit MX nomx.test", route)
	}
	results, _ := dialSend(t, cfg, route, testEnvelope("u@nomx.test"))
	mustBeDelivered(t, results)
}

func TestRoutePermanentAndTemporaryDNSFailures(t *testing.T) {
	t.Parallel()
	res := &fakeResolver{
		mx: map[string][]*net.MX{
			"null.test.":  {{Host: ".", Pref: 0}},
			"mixed.test.": {{Host: ".", Pref: 0}, {Host: "mx.mixed.test.", Pref: 10}},
		},
		mxErr: map[string]error{
			"servfail.test.": &net.DNSError{Err: "server misbehaving", Name: "servfail.test.", IsTemporary: true},
			"timeout.test.":  &net.DNSError{Err: "i/o timeout", Name: "timeout.test.", IsTimeout: true},
		},
	}
	cfg := testConfig()
	cfg.Resolver = res
	for _, tc := range []struct {
		domain    string
		permanent bool
		text      string
	}{
		{"null.test", true, "null MX"},
		{"nxdomain.test", true, "does not exist"},
		{"servfail.test", false, "server misbehaving"},
		{"timeout.test", false, "timeout"},
		{"", true, "empty"},
		{"[300.1.1.1]", true, "address literal"},
	} {
		_, err := cfg.Route(context.Background(), tc.domain)
		if err == nil {
			t.Errorf("%q: no error", tc.domain)
			continue
		}
		if IsPermanent(err) != tc.permanent || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%q: error %q permanent=%v, want permanent=%v containing %q", tc.domain, err, IsPermanent(err), tc.permanent, tc.text)
		}
	}
	route, err := cfg.Route(context.Background(), "mixed.test")
	if err != nil || len(route.Hosts) != 1 || route.Hosts[0].Host != "mx.mixed.test" {
		t.Errorf("null MX mixed with a real one: %+v, %v; want the real one", route, err)
	}
	route, err = cfg.Route(context.Background(), "[IPv6:2001:db8::1]")
	if err != nil || route.Hosts[0].Host != "2001:db8::1" || route.Key != "literal:2001:db8::1" {
		t.Errorf("address literal: %+v, %v", route, err)
	}
}

func TestRouteUnicodeDomainIsLookedUpAsPunycode(t *testing.T) {
	t.Parallel()
	res := &fakeResolver{mx: map[string][]*net.MX{"xn--bcher-kva.test.": {{Host: "mx.xn--bcher-kva.test.", Pref: 1}}}}
	cfg := testConfig()
	cfg.Resolver = res
	route, err := cfg.Route(context.Background(), "Bücher.test")
	if err != nil {
		t.Fatal(err)
	}
	if route.Key != "mx:xn--bcher-kva.test" {
		t.Errorf("key = %q", route.Key)
	}
}

func TestParseModes(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"opportunistic", "required", "none"} {
		m, err := ParseTLSMode(s)
		if err != nil || m.String() != s {
			t.Errorf("ParseTLSMode(%q) = %v, %v", s, m, err)
		}
	}
	for _, s := range []string{"starttls", "tls", "none"} {
		m, err := ParseSmarthostTLS(s)
		if err != nil || m.String() != s {
			t.Errorf("ParseSmarthostTLS(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseTLSMode("maybe"); err == nil {
		t.Error("ParseTLSMode accepted maybe")
	}
	if _, err := ParseSmarthostTLS("ssl"); err == nil {
		t.Error("ParseSmarthostTLS accepted ssl")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
