package dkim

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// mapResolver answers TXT queries from a map, with "not found" for the rest.
type mapResolver map[string][]string

func (m mapResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := m[strings.TrimSuffix(name, ".")]; ok {
		return v, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func TestSPFEvaluate(t *testing.T) {
	t.Parallel()
	ip4 := netip.MustParseAddr("203.0.113.5")
	ip6 := netip.MustParseAddr("2001:db8::5")
	many := mapResolver{}
	chain := "v=spf1"
	for i := range 11 {
		name := fmt.Sprintf("i%d.example", i)
		many[name] = []string{"v=spf1 -all"}
		chain += " include:" + name
	}
	many["example.com"] = []string{chain + " ip4:203.0.113.5 -all"}

	cases := []struct {
		name    string
		txt     mapResolver
		ip      netip.Addr
		outcome spfOutcome
		via     string
		problem string
	}{
		{"ip4 exact", mapResolver{"example.com": {"v=spf1 ip4:203.0.113.5 -all"}}, ip4, spfPass, "ip4:203.0.113.5", ""},
		{"ip4 outside CIDR", mapResolver{"example.com": {"v=spf1 ip4:203.0.113.8/29 -all"}}, ip4, spfNotCovered, "-all", ""},
		{"ip6 CIDR", mapResolver{"example.com": {"v=spf1 ip6:2001:db8::/32 -all"}}, ip6, spfPass, "ip6:2001:db8::/32", ""},
		{"ip6 address against ip4 term", mapResolver{"example.com": {"v=spf1 ip4:0.0.0.0/0 ~all"}}, ip6, spfNotCovered, "~all", ""},
		{"upper case and + qualifier", mapResolver{"example.com": {"V=SPF1 +IP4:203.0.113.0/24 -ALL"}}, ip4, spfPass, "IP4:203.0.113.0/24", ""},
		{"matched by -ip4", mapResolver{"example.com": {"v=spf1 -ip4:203.0.113.5 +all"}}, ip4, spfNotCovered, "-ip4:203.0.113.5", ""},
		{"no match, no all", mapResolver{"example.com": {"v=spf1 ip4:192.0.2.1"}}, ip4, spfNotCovered, "", ""},
		{"redirect", mapResolver{"example.com": {"v=spf1 redirect=_spf.example.com"}, "_spf.example.com": {"v=spf1 ip4:203.0.113.5 -all"}}, ip4, spfPass, "ip4:203.0.113.5", ""},
		{"include not matching falls through", mapResolver{"example.com": {"v=spf1 include:other.example ip4:203.0.113.5 -all"}, "other.example": {"v=spf1 -all"}}, ip4, spfPass, "ip4:203.0.113.5", ""},
		{"exists before a pass", mapResolver{"example.com": {"v=spf1 exists:%{i}.bl.example ip4:203.0.113.5 -all"}}, ip4, spfPass, "ip4:203.0.113.5", ""},
		{"exists before all", mapResolver{"example.com": {"v=spf1 exists:x.example -all"}}, ip4, spfUnknown, "exists:x.example", ""},
		{"a without host lookups", mapResolver{"example.com": {"v=spf1 a/24 -all"}}, ip4, spfUnknown, "a/24", ""},
		{"include of a domain without SPF", mapResolver{"example.com": {"v=spf1 include:nothing.example -all"}}, ip4, 0, "", "names a domain with no SPF record"},
		{"include loop", mapResolver{"example.com": {"v=spf1 include:example.com -all"}}, ip4, 0, "", "more than 10 DNS lookups"},
		{"too many lookups", many, ip4, 0, "", "more than 10 DNS lookups"},
		{"bad ip4", mapResolver{"example.com": {"v=spf1 ip4:203.0.113 -all"}}, ip4, 0, "", "not a valid address"},
		{"unknown mechanism", mapResolver{"example.com": {"v=spf1 ipv4:203.0.113.5 -all"}}, ip4, 0, "", "not an SPF mechanism"},
		{"unknown modifier ignored", mapResolver{"example.com": {"v=spf1 foo=bar ip4:203.0.113.5 -all"}}, ip4, spfPass, "ip4:203.0.113.5", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := &spfEval{ctx: context.Background(), r: c.txt}
			v := e.evaluate("example.com", c.ip, 0)
			if c.problem != "" {
				if !strings.Contains(v.problem, c.problem) {
					t.Errorf("problem = %q, want one containing %q (verdict %+v)", v.problem, c.problem, v)
				}
				return
			}
			if v.problem != "" || v.outcome != c.outcome || v.via != c.via {
				t.Errorf("verdict = %+v, want outcome %d via %q", v, c.outcome, c.via)
			}
		})
	}
}

func TestParseDomainCIDR(t *testing.T) {
	t.Parallel()
	cases := []struct {
		arg          string
		target       string
		bits4, bits6 int
		bad          bool
	}{
		{"", "example.com", 32, 128, false},
		{"/24", "example.com", 24, 128, false},
		{"//64", "example.com", 32, 64, false},
		{"/24//64", "example.com", 24, 64, false},
		{"mail.example.net.", "mail.example.net", 32, 128, false},
		{"mail.example.net/28", "mail.example.net", 28, 128, false},
		{"/33", "", 0, 0, true},
		{"//129", "", 0, 0, true},
		{"/x", "", 0, 0, true},
	}
	for _, c := range cases {
		target, b4, b6, err := parseDomainCIDR(c.arg, "example.com")
		if c.bad {
			if err == nil {
				t.Errorf("parseDomainCIDR(%q) accepted a bad prefix length", c.arg)
			}
			continue
		}
		if err != nil || target != c.target || b4 != c.bits4 || b6 != c.bits6 {
			t.Errorf("parseDomainCIDR(%q) = %q %d %d %v, want %q %d %d", c.arg, target, b4, b6, err, c.target, c.bits4, c.bits6)
		}
	}
}
