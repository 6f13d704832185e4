package policy

import (
	"testing"

	"postroom/engine/addr"
)

// FuzzParseAddressEntry checks that entry parsing never panics, that an
// accepted entry's canonical spelling parses back to it, and that it matches
// what its kind promises.
func FuzzParseAddressEntry(f *testing.F) {
	for _, seed := range []string{
		"user@example.com", "Boss@Example.COM.", "example.com", "@example.com", ".example.com",
		"@xn--bcher-kva.example", "info@bücher.example", "@[192.0.2.1]", "a@@b", "<>", ".", "@", "\"a b\"@example.com",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseAddressEntry(s)
		if err != nil {
			return
		}
		again, err := ParseAddressEntry(e.String())
		if err != nil || again != e {
			t.Fatalf("ParseAddressEntry(%q) = %#v; its String %q parses to %#v, %v", s, e, e.String(), again, err)
		}
		self := addr.Address{Local: e.Local, Domain: e.Domain}
		sub := addr.Address{Local: "x", Domain: "sub." + e.Domain}
		switch e.Kind {
		case EntryAddress:
			if !e.Match(self) {
				t.Fatalf("%#v does not match its own mailbox", e)
			}
		case EntryDomain:
			if !e.Match(addr.Address{Local: "x", Domain: e.Domain}) || e.Match(sub) {
				t.Fatalf("%#v: exact-domain match is wrong", e)
			}
		case EntrySubdomains:
			if !e.Match(sub) || e.Match(addr.Address{Local: "x", Domain: e.Domain}) {
				t.Fatalf("%#v: subdomain match is wrong", e)
			}
		default:
			t.Fatalf("ParseAddressEntry(%q) returned kind %d", s, e.Kind)
		}
		if e.Match(addr.Address{}) {
			t.Fatalf("%#v matches the null sender", e)
		}
	})
}

// FuzzParseNetwork checks that an accepted network is canonical: masked,
// and its text form parses back to itself.
func FuzzParseNetwork(f *testing.F) {
	for _, seed := range []string{"10.0.0.0/8", "192.168.1.10/24", "::1", "::ffff:10.0.0.0/104", "fe80::1%eth0", "2001:db8::/32", "1.2.3.4/33"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseNetwork(s)
		if err != nil {
			return
		}
		if p != p.Masked() || p.Addr().Is4In6() && p.Bits() >= 96 || p.Addr().Zone() != "" {
			t.Fatalf("ParseNetwork(%q) = %v is not canonical", s, p)
		}
		again, err := ParseNetwork(p.String())
		if err != nil || again != p {
			t.Fatalf("ParseNetwork(%q) = %v re-parses to %v, %v", s, p, again, err)
		}
	})
}
