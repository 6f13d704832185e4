// Package policy decides who may connect, send and relay, from the [access]
// lists of the settings: trusted and blocked networks, allowed and blocked
// senders and recipients.
//
// The rules, in the order they are applied:
//
//   - Connect: a client in blocked_networks is refused, even if it is also in
//     trusted_networks (a block always wins).
//   - Sender: the null sender "<>" passes the sender lists, because bounces
//     must always be accepted (RFC 5321 section 4.5.5). Otherwise a sender in
//     blocked_senders is refused; a non-empty allowed_senders admits only the
//     senders it lists. An allowed sender never grants relaying.
//   - Recipient: a recipient in blocked_recipients is refused; a non-empty
//     allowed_recipients refuses every recipient it does not list, even for
//     trusted and authenticated clients (it restricts where mail may go, it
//     never opens relaying); then a client in trusted_networks, or one that
//     authenticated, may relay; anyone else is refused.
//
// Address entries are "user@example.com" (one mailbox), "example.com" or
// "@example.com" (every mailbox at exactly that domain) and ".example.com"
// (every mailbox at a subdomain, not at the domain itself, as in Postfix).
// Domains compare in normalised form (case, trailing dot and IDN spelling do
// not matter) and local parts compare with ASCII letters case-insensitive.
package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"postroom/engine/addr"
)

// Names of the settings lists, as they appear in rules and errors.
const (
	ListTrustedNetworks   = "trusted_networks"
	ListBlockedNetworks   = "blocked_networks"
	ListAllowedSenders    = "allowed_senders"
	ListBlockedSenders    = "blocked_senders"
	ListAllowedRecipients = "allowed_recipients"
	ListBlockedRecipients = "blocked_recipients"
)

// Decision is the outcome of a check.
type Decision struct {
	// Allow is true when the client may go on.
	Allow bool
	// Rule names the rule that decided, with the matching entry, for the
	// log: "blocked_senders @spam.example", "allowed_senders (not listed)",
	// "relay denied: not trusted, not authenticated".
	Rule string
	// List is the name of the list that decided ("blocked_senders"), or
	// "relay" for the relaying rule: what an SMTP reply may say without
	// revealing the configuration.
	List string
}

// Policy holds the parsed access lists. It is read-only after New and safe
// for concurrent use; build a new one when the settings change.
type Policy struct {
	trusted           []netip.Prefix
	blocked           []netip.Prefix
	allowedSenders    addressList
	blockedSenders    addressList
	allowedRecipients addressList
	blockedRecipients addressList
}

// New parses the six [access] lists. The error names every bad entry with
// its list, e.g. `blocked_senders: "a@@b": invalid address: ...`.
func New(trusted, blocked, allowedSenders, blockedSenders, allowedRecipients, blockedRecipients []string) (*Policy, error) {
	var errs []error
	p := &Policy{
		trusted:           parseNetworks(ListTrustedNetworks, trusted, &errs),
		blocked:           parseNetworks(ListBlockedNetworks, blocked, &errs),
		allowedSenders:    parseAddressList(ListAllowedSenders, allowedSenders, &errs),
		blockedSenders:    parseAddressList(ListBlockedSenders, blockedSenders, &errs),
		allowedRecipients: parseAddressList(ListAllowedRecipients, allowedRecipients, &errs),
		blockedRecipients: parseAddressList(ListBlockedRecipients, blockedRecipients, &errs),
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func parseNetworks(list string, entries []string, errs *[]error) []netip.Prefix {
	prefixes := make([]netip.Prefix, 0, len(entries))
	for _, s := range entries {
		p, err := ParseNetwork(s)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %q: %w", list, s, err))
			continue
		}
		prefixes = append(prefixes, p)
	}
	return prefixes
}

// matchNetwork returns the most specific prefix that contains ip, so the
// rule named in a decision is the one the user will recognise.
func matchNetwork(prefixes []netip.Prefix, ip netip.Addr) (netip.Prefix, bool) {
	ip = ip.Unmap().WithZone("")
	var best netip.Prefix
	found := false
	for _, p := range prefixes {
		if p.Contains(ip) && (!found || p.Bits() > best.Bits()) {
			best, found = p, true
		}
	}
	return best, found
}

// addressList is one parsed address list, indexed for lookups that cost
// the number of labels in the domain rather than the length of the list.
// The values are the entries as the user wrote them, for Decision.Rule.
type addressList struct {
	name       string
	size       int
	addresses  map[Entry]string
	domains    map[string]string
	subdomains map[string]string
}

func parseAddressList(list string, entries []string, errs *[]error) addressList {
	l := addressList{
		name:       list,
		addresses:  map[Entry]string{},
		domains:    map[string]string{},
		subdomains: map[string]string{},
	}
	for _, s := range entries {
		e, err := ParseAddressEntry(s)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %q: %w", list, s, err))
			continue
		}
		var m map[string]string
		key := e.Domain
		switch e.Kind {
		case EntryAddress:
			if _, dup := l.addresses[e]; !dup {
				l.addresses[e] = s
			}
			l.size++
			continue
		case EntryDomain:
			m = l.domains
		case EntrySubdomains:
			m = l.subdomains
		}
		if _, dup := m[key]; !dup {
			m[key] = s
		}
		l.size++
	}
	return l
}

// match returns the most specific entry covering a: a mailbox entry, then
// the exact domain, then the nearest parent domain's subdomain entry.
func (l addressList) match(a addr.Address) (string, bool) {
	if a.IsNull() {
		return "", false
	}
	if s, ok := l.addresses[Entry{Kind: EntryAddress, Local: foldLocal(a.Local), Domain: a.Domain}]; ok {
		return s, true
	}
	if s, ok := l.domains[a.Domain]; ok {
		return s, true
	}
	if a.IsLiteral() {
		return "", false
	}
	for d := a.Domain; ; {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return "", false
		}
		d = d[i+1:]
		if s, ok := l.subdomains[d]; ok {
			return s, true
		}
	}
}

// Trusted reports whether ip is in trusted_networks. An IPv4-mapped IPv6
// address (::ffff:192.0.2.1) is treated as the IPv4 address it carries.
func (p *Policy) Trusted(ip netip.Addr) bool {
	_, ok := matchNetwork(p.trusted, ip)
	return ok
}

// Connect decides whether a client may connect at all.
func (p *Policy) Connect(ip netip.Addr) Decision {
	if prefix, ok := matchNetwork(p.blocked, ip); ok {
		return Decision{Allow: false, Rule: ListBlockedNetworks + " " + prefix.String(), List: ListBlockedNetworks}
	}
	return Decision{Allow: true, Rule: ListBlockedNetworks + " (not listed)", List: ListBlockedNetworks}
}

// Sender decides whether a MAIL FROM address is accepted. It grants nothing
// beyond that: relaying is decided per recipient.
func (p *Policy) Sender(a addr.Address) Decision {
	if a.IsNull() {
		return Decision{Allow: true, Rule: "null sender (passes sender lists)", List: ListAllowedSenders}
	}
	return p.checkLists(a, p.blockedSenders, p.allowedSenders, "any sender")
}

// Recipient decides whether a RCPT TO address is accepted from client,
// which has or has not authenticated in this session.
func (p *Policy) Recipient(client netip.Addr, authenticated bool, rcpt addr.Address) Decision {
	if d := p.checkLists(rcpt, p.blockedRecipients, p.allowedRecipients, ""); !d.Allow {
		return d
	}
	if prefix, ok := matchNetwork(p.trusted, client); ok {
		return Decision{Allow: true, Rule: ListTrustedNetworks + " " + prefix.String(), List: ListTrustedNetworks}
	}
	if authenticated {
		return Decision{Allow: true, Rule: "authenticated", List: "relay"}
	}
	return Decision{Allow: false, Rule: "relay denied: not trusted, not authenticated", List: "relay"}
}

// checkLists applies a block list, then an allow list that admits only what
// it lists unless it is empty.
func (p *Policy) checkLists(a addr.Address, blocked, allowed addressList, emptyMeans string) Decision {
	if entry, ok := blocked.match(a); ok {
		return Decision{Allow: false, Rule: blocked.name + " " + entry, List: blocked.name}
	}
	if allowed.size == 0 {
		rule := allowed.name + " (empty)"
		if emptyMeans != "" {
			rule = allowed.name + " (empty: " + emptyMeans + ")"
		}
		return Decision{Allow: true, Rule: rule, List: allowed.name}
	}
	if entry, ok := allowed.match(a); ok {
		return Decision{Allow: true, Rule: allowed.name + " " + entry, List: allowed.name}
	}
	return Decision{Allow: false, Rule: allowed.name + " (not listed)", List: allowed.name}
}
