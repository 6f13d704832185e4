package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"postroom/engine/addr"
)

// ParseNetwork parses an entry of trusted_networks or blocked_networks: a
// CIDR prefix ("10.0.0.0/8", "2001:db8::/32") or a bare IP, which means that
// one host (/32 or /128). Host bits are cleared ("192.168.1.10/24" is
// 192.168.1.0/24), as a user writing it means the network. An IPv4-mapped
// IPv6 prefix of /96 or longer is turned into the IPv4 prefix it covers, so
// it matches the IPv4 clients it was meant for.
func ParseNetwork(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("empty network")
	}
	var prefix netip.Prefix
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not a CIDR network: %w", err)
		}
		prefix = p
	} else {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR network: %w", err)
		}
		if ip.Zone() != "" {
			return netip.Prefix{}, errors.New("an IPv6 zone has no meaning in an access list")
		}
		prefix = netip.PrefixFrom(ip, ip.BitLen())
	}
	if ip := prefix.Addr(); ip.Is4In6() && prefix.Bits() >= 96 {
		prefix = netip.PrefixFrom(ip.Unmap(), prefix.Bits()-96)
	}
	return prefix.Masked(), nil
}

// EntryKind says what an address-list entry matches.
type EntryKind int

const (
	// EntryAddress matches one mailbox: "user@example.com".
	EntryAddress EntryKind = iota + 1
	// EntryDomain matches every mailbox at exactly one domain:
	// "example.com" or "@example.com".
	EntryDomain
	// EntrySubdomains matches every mailbox at any subdomain of a domain,
	// but not at the domain itself: ".example.com" matches
	// "a@mail.example.com" and not "a@example.com". This is Postfix's
	// meaning; list both "example.com" and ".example.com" for both.
	EntrySubdomains
)

// Entry is a parsed entry of an address list (allowed_senders,
// blocked_senders, allowed_recipients, blocked_recipients).
type Entry struct {
	Kind EntryKind
	// Local is the local part with ASCII letters folded to lower case
	// (EntryAddress only).
	Local string
	// Domain is the domain as addr.NormalizeDomain gives it.
	Domain string
}

// ParseAddressEntry parses one address-list entry. Entries may use Unicode
// (they come from the settings, not from a client), and an IDN may be given
// in either spelling.
func ParseAddressEntry(s string) (Entry, error) {
	switch {
	case s == "":
		return Entry{}, errors.New("empty entry")
	case s == "<>":
		// The null sender always passes the sender lists (see
		// Policy.Sender); accepting "<>" here would suggest otherwise.
		return Entry{}, errors.New("the null sender <> cannot be listed: bounces must always be accepted")
	case strings.HasPrefix(s, "."):
		d, err := addr.NormalizeDomain(s[1:])
		if err != nil {
			return Entry{}, fmt.Errorf("invalid domain: %w", err)
		}
		if strings.HasPrefix(d, "[") {
			return Entry{}, errors.New("an address literal has no subdomains")
		}
		return Entry{Kind: EntrySubdomains, Domain: d}, nil
	case strings.HasPrefix(s, "@"):
		d, err := addr.NormalizeDomain(s[1:])
		if err != nil {
			return Entry{}, fmt.Errorf("invalid domain: %w", err)
		}
		return Entry{Kind: EntryDomain, Domain: d}, nil
	case strings.Contains(s, "@"):
		a, err := addr.Parse(s, addr.ParseOptions{SMTPUTF8: true, RequireQuoting: true})
		if err != nil {
			return Entry{}, fmt.Errorf("invalid address: %w", err)
		}
		return Entry{Kind: EntryAddress, Local: foldLocal(a.Local), Domain: a.Domain}, nil
	default:
		d, err := addr.NormalizeDomain(s)
		if err != nil {
			return Entry{}, fmt.Errorf("invalid domain: %w", err)
		}
		return Entry{Kind: EntryDomain, Domain: d}, nil
	}
}

// String returns the entry's canonical spelling ("user@example.com",
// "@example.com", ".example.com").
func (e Entry) String() string {
	switch e.Kind {
	case EntryAddress:
		return addr.Address{Local: e.Local, Domain: e.Domain}.String()
	case EntryDomain:
		return "@" + e.Domain
	case EntrySubdomains:
		return "." + e.Domain
	}
	return ""
}

// Match reports whether the entry covers a. The null sender matches
// nothing.
func (e Entry) Match(a addr.Address) bool {
	if a.IsNull() {
		return false
	}
	switch e.Kind {
	case EntryAddress:
		return a.Domain == e.Domain && foldLocal(a.Local) == e.Local
	case EntryDomain:
		return a.Domain == e.Domain
	case EntrySubdomains:
		return strings.HasSuffix(a.Domain, "."+e.Domain)
	}
	return false
}

// foldLocal folds a local part for comparison. RFC 5321 lets a host treat
// local parts case-sensitively, but no mail system a small office meets
// does, and a user listing "Boss@example.com" expects it to catch
// "boss@example.com": lists compare local parts case-insensitively. Only
// ASCII letters are folded: no standard defines case for non-ASCII
// mailboxes (RFC 6531 leaves them byte-exact), and ASCII folding keeps the
// length, so a folded entry stays within the 64-octet limit.
func foldLocal(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
