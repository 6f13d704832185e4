package policy

import (
	"net/netip"
	"strings"
	"testing"

	"postroom/engine/addr"
)

func mustAddr(t *testing.T, s string) addr.Address {
	t.Helper()
	a, err := addr.Parse(s, addr.ParseOptions{SMTPUTF8: true, AllowNullSender: true})
	if err != nil {
		t.Fatalf("addr.Parse(%q): %v", s, err)
	}
	return a
}

func TestParseNetwork(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"192.168.1.10/24", "192.168.1.0/24"},
		{"192.0.2.7", "192.0.2.7/32"},
		{"::1", "::1/128"},
		{"2001:DB8::/32", "2001:db8::/32"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
	}
	for _, tt := range tests {
		got, err := ParseNetwork(tt.in)
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseNetwork(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "10.0.0", "example.com", "fe80::1%eth0", "10.0.0.0/8 ", "::/129", "1.2.3.4/-1"} {
		if got, err := ParseNetwork(bad); err == nil {
			t.Errorf("ParseNetwork(%q) = %v, want an error", bad, got)
		}
	}
}

func TestParseAddressEntry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Entry
		str  string
	}{
		{"user@example.com", Entry{EntryAddress, "user", "example.com"}, "user@example.com"},
		{"Boss@Example.COM.", Entry{EntryAddress, "boss", "example.com"}, "boss@example.com"},
		{"example.com", Entry{EntryDomain, "", "example.com"}, "@example.com"},
		{"@Example.com", Entry{EntryDomain, "", "example.com"}, "@example.com"},
		{".example.com", Entry{EntrySubdomains, "", "example.com"}, ".example.com"},
		{"@xn--bcher-kva.example", Entry{EntryDomain, "", "bücher.example"}, "@bücher.example"},
		{"info@bücher.example", Entry{EntryAddress, "info", "bücher.example"}, "info@bücher.example"},
		{"@[192.0.2.1]", Entry{EntryDomain, "", "[192.0.2.1]"}, "@[192.0.2.1]"},
		// Only ASCII is folded: RFC 6531 defines no case for UTF-8 mailboxes.
		{"ÄRGER.X@example.com", Entry{EntryAddress, "Ärger.x", "example.com"}, "Ärger.x@example.com"},
		{`"A B"@example.com`, Entry{EntryAddress, "a b", "example.com"}, `"a b"@example.com`},
	}
	for _, tt := range tests {
		got, err := ParseAddressEntry(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseAddressEntry(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
			continue
		}
		if got.String() != tt.str {
			t.Errorf("ParseAddressEntry(%q).String() = %q, want %q", tt.in, got.String(), tt.str)
		}
	}
	for _, bad := range []string{"", "<>", "a@@b", "@", ".", "..example.com", "user@", "exa mple.com", ".[192.0.2.1]", "a@b\x00c", "@-bad.example"} {
		if got, err := ParseAddressEntry(bad); err == nil {
			t.Errorf("ParseAddressEntry(%q) = %#v, want an error", bad, got)
		}
	}
}

func TestNewNamesBadEntry(t *testing.T) {
	t.Parallel()
	_, err := New([]string{"127.0.0.0/8", "10.0.0.0/99"}, nil, nil, []string{"ok@example.com", "a@@b"}, nil, nil)
	if err == nil {
		t.Fatal("New accepted bad entries")
	}
	for _, want := range []string{`trusted_networks: "10.0.0.0/99"`, `blocked_senders: "a@@b"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "127.0.0.0/8") || strings.Contains(err.Error(), "ok@example.com") {
		t.Errorf("error %q names a good entry", err)
	}
}

func TestConnect(t *testing.T) {
	t.Parallel()
	p, err := New([]string{"10.0.0.0/8"}, []string{"10.1.0.0/16", "10.1.2.0/24", "2001:db8::/32", "192.0.2.9"}, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip    string
		allow bool
		rule  string
	}{
		{"10.1.2.3", false, "blocked_networks 10.1.2.0/24"}, // most specific entry named; block beats trust
		{"10.1.9.9", false, "blocked_networks 10.1.0.0/16"},
		{"::ffff:10.1.2.3", false, "blocked_networks 10.1.2.0/24"},
		{"192.0.2.9", false, "blocked_networks 192.0.2.9/32"},
		{"192.0.2.10", true, "blocked_networks (not listed)"},
		{"2001:db8::5", false, "blocked_networks 2001:db8::/32"},
		{"2001:db9::5", true, "blocked_networks (not listed)"},
		{"10.2.0.1", true, "blocked_networks (not listed)"},
	}
	for _, tt := range tests {
		d := p.Connect(netip.MustParseAddr(tt.ip))
		if d.Allow != tt.allow || d.Rule != tt.rule || d.List != ListBlockedNetworks {
			t.Errorf("Connect(%s) = %+v, want allow=%v rule %q", tt.ip, d, tt.allow, tt.rule)
		}
	}
}

func TestTrusted(t *testing.T) {
	t.Parallel()
	p, err := New([]string{"127.0.0.0/8", "::1/128", "192.0.2.1"}, nil, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"192.0.2.1", true},
		{"192.0.2.2", false},
		{"::2", false},
		{"fe80::1%eth0", false},
	}
	for _, tt := range tests {
		if got := p.Trusted(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Trusted(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
	if p.Trusted(netip.Addr{}) {
		t.Error("the zero Addr is trusted")
	}
}

func TestSender(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		allowed, blocked []string
		sender           string
		allow            bool
		rule             string
	}{
		{"empty lists admit anyone", nil, nil, "a@example.com", true, "allowed_senders (empty: any sender)"},
		{"blocked address", nil, []string{"spam@example.com"}, "Spam@EXAMPLE.com", false, "blocked_senders spam@example.com"},
		{"blocked address, other mailbox", nil, []string{"spam@example.com"}, "ham@example.com", true, "allowed_senders (empty: any sender)"},
		{"blocked domain with at", nil, []string{"@spam.example"}, "x@spam.example", false, "blocked_senders @spam.example"},
		{"blocked domain bare", nil, []string{"spam.example"}, "x@SPAM.example.", false, "blocked_senders spam.example"},
		{"exact domain does not cover subdomain", nil, []string{"spam.example"}, "x@mail.spam.example", true, "allowed_senders (empty: any sender)"},
		{"subdomain entry", nil, []string{".spam.example"}, "x@a.b.spam.example", false, "blocked_senders .spam.example"},
		{"subdomain entry excludes the domain", nil, []string{".spam.example"}, "x@spam.example", true, "allowed_senders (empty: any sender)"},
		{"subdomain entry needs a label boundary", nil, []string{".spam.example"}, "x@notspam.example", true, "allowed_senders (empty: any sender)"},
		{"IDN entry matches punycode sender", nil, []string{"@bücher.example"}, "x@xn--bcher-kva.example", false, "blocked_senders @bücher.example"},
		{"allow list admits listed", []string{"example.com"}, nil, "a@example.com", true, "allowed_senders example.com"},
		{"allow list refuses others", []string{"example.com"}, nil, "a@example.org", false, "allowed_senders (not listed)"},
		{"block beats allow", []string{"example.com"}, []string{"bad@example.com"}, "bad@example.com", false, "blocked_senders bad@example.com"},
		{"mailbox named before its domain", []string{"example.com", "boss@example.com"}, nil, "boss@example.com", true, "allowed_senders boss@example.com"},
		{"null sender passes block lists", nil, []string{"example.com"}, "", true, "null sender (passes sender lists)"},
		{"null sender passes allow lists", []string{"example.com"}, nil, "", true, "null sender (passes sender lists)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := New(nil, nil, tt.allowed, tt.blocked, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Sender(mustAddr(t, tt.sender))
			if d.Allow != tt.allow || d.Rule != tt.rule {
				t.Errorf("Sender(%q) = %+v, want allow=%v rule %q", tt.sender, d, tt.allow, tt.rule)
			}
		})
	}
}

func TestRecipientOrder(t *testing.T) {
	t.Parallel()
	const (
		trustedIP = "192.168.1.5"
		outsideIP = "203.0.113.7"
	)
	tests := []struct {
		name             string
		allowed, blocked []string
		client           string
		auth             bool
		rcpt             string
		allow            bool
		rule             string
	}{
		{"trusted network relays", nil, nil, trustedIP, false, "a@example.org", true, "trusted_networks 192.168.1.0/24"},
		{"IPv4-mapped client is trusted", nil, nil, "::ffff:" + trustedIP, false, "a@example.org", true, "trusted_networks 192.168.1.0/24"},
		{"authenticated relays", nil, nil, outsideIP, true, "a@example.org", true, "authenticated"},
		{"trust named before AUTH", nil, nil, trustedIP, true, "a@example.org", true, "trusted_networks 192.168.1.0/24"},
		{"stranger refused", nil, nil, outsideIP, false, "a@example.org", false, "relay denied: not trusted, not authenticated"},
		{"block beats trust", nil, []string{"example.org"}, trustedIP, false, "a@example.org", false, "blocked_recipients example.org"},
		{"block beats AUTH", nil, []string{"a@example.org"}, outsideIP, true, "A@example.org", false, "blocked_recipients a@example.org"},
		{"block beats allow", []string{"example.org"}, []string{"a@example.org"}, trustedIP, false, "a@example.org", false, "blocked_recipients a@example.org"},
		{"allow list restricts trusted", []string{"example.org"}, nil, trustedIP, false, "a@example.net", false, "allowed_recipients (not listed)"},
		{"allow list restricts AUTH", []string{"example.org"}, nil, outsideIP, true, "a@example.net", false, "allowed_recipients (not listed)"},
		{"listed recipient still needs trust", []string{"example.org"}, nil, outsideIP, false, "a@example.org", false, "relay denied: not trusted, not authenticated"},
		{"listed recipient with trust", []string{"example.org"}, nil, trustedIP, false, "a@example.org", true, "trusted_networks 192.168.1.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := New([]string{"192.168.1.0/24"}, nil, nil, nil, tt.allowed, tt.blocked)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Recipient(netip.MustParseAddr(tt.client), tt.auth, mustAddr(t, tt.rcpt))
			if d.Allow != tt.allow || d.Rule != tt.rule {
				t.Errorf("Recipient(%s, auth=%v, %q) = %+v, want allow=%v rule %q", tt.client, tt.auth, tt.rcpt, d, tt.allow, tt.rule)
			}
		})
	}
}

func TestAllowedSenderNeverGrantsRelay(t *testing.T) {
	t.Parallel()
	p, err := New(nil, nil, []string{"boss@example.com"}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddr("203.0.113.7")
	if d := p.Sender(mustAddr(t, "boss@example.com")); !d.Allow {
		t.Fatalf("listed sender refused: %+v", d)
	}
	if d := p.Recipient(client, false, mustAddr(t, "someone@example.org")); d.Allow {
		t.Errorf("an allowed sender let a stranger relay: %+v", d)
	}
}

func TestDecisionListIsSafeToShow(t *testing.T) {
	t.Parallel()
	p, err := New(nil, []string{"10.0.0.0/8"}, nil, []string{"@secret-partner.example"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := p.Sender(mustAddr(t, "x@secret-partner.example"))
	if d.List != ListBlockedSenders || strings.Contains(d.List, "secret") {
		t.Errorf("List = %q, want %q without the entry", d.List, ListBlockedSenders)
	}
	d = p.Connect(netip.MustParseAddr("10.9.9.9"))
	if d.List != ListBlockedNetworks {
		t.Errorf("List = %q, want %q", d.List, ListBlockedNetworks)
	}
}
