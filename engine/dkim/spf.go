package dkim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// This file answers one question about a published SPF record (RFC 7208):
// does it authorise the relay's sending address? It is not a full SPF
// evaluator. ip4, ip6, all, include and redirect are followed with TXT
// lookups; a and mx only when the resolver is a HostResolver; exists, ptr and
// macros never, and an address that depends on them is reported as "covered
// only if ... includes it" rather than guessed.

// spfLookupLimit is RFC 7208 section 4.6.4's cap on DNS-querying terms;
// receivers treat a record that needs more as an error.
const spfLookupLimit = 10

type spfOutcome int

const (
	spfNotCovered spfOutcome = iota // evaluated: fail, softfail, neutral or no match
	spfPass                         // a "+" term matched
	spfUnknown                      // depends on a term we could not evaluate
	spfNone                         // the domain has no SPF record
)

// spfVerdict is the result for one address. via is the deciding term (for
// spfUnknown, the term that could not be evaluated). problem, when set,
// describes a fault receivers treat as a permanent error.
type spfVerdict struct {
	outcome spfOutcome
	via     string
	problem string
}

type spfEval struct {
	ctx     context.Context
	r       Resolver
	hosts   HostResolver // nil: a and mx cannot be followed
	lookups int
}

// spfRecords returns the SPF records published at domain.
func (e *spfEval) spfRecords(domain string) ([]string, error) {
	txts, err := lookupTXT(e.ctx, e.r, domain)
	if err != nil {
		return nil, err
	}
	var records []string
	for _, t := range txts {
		if lower := strings.ToLower(t); lower == "v=spf1" || strings.HasPrefix(lower, "v=spf1 ") {
			records = append(records, t)
		}
	}
	return records, nil
}

// countLookup charges one DNS-querying term and reports whether the record
// is still within the limit.
func (e *spfEval) countLookup() bool {
	e.lookups++
	return e.lookups <= spfLookupLimit
}

const tooManyLookups = "it needs more than 10 DNS lookups, so receivers treat it as an error; replace some include: terms with ip4:/ip6: terms"

// evaluate decides whether domain's SPF record authorises ip.
func (e *spfEval) evaluate(domain string, ip netip.Addr, depth int) spfVerdict {
	if depth > spfLookupLimit {
		return spfVerdict{problem: "its include: or redirect= terms loop back on themselves"}
	}
	records, err := e.spfRecords(domain)
	switch {
	case err != nil:
		return spfVerdict{outcome: spfUnknown, via: "the record at " + domain + " (the lookup failed)"}
	case len(records) == 0:
		return spfVerdict{outcome: spfNone}
	case len(records) > 1:
		return spfVerdict{problem: fmt.Sprintf("%s publishes %d SPF records, which receivers treat as an error; merge them into one", domain, len(records))}
	}

	var pending *spfVerdict // first term we could not evaluate
	pendingIsPass := true   // every unevaluated term so far would give pass
	redirect := ""
	for _, term := range strings.Fields(records[0])[1:] {
		qualifier := byte('+')
		if strings.IndexByte("+-~?", term[0]) >= 0 {
			qualifier, term = term[0], term[1:]
		}
		name, arg, modifier := splitTerm(term)
		if modifier {
			if name == "redirect" {
				redirect = arg
			}
			continue // other modifiers do not affect the result
		}

		match, unknown, problem := e.mechanism(domain, name, arg, ip, depth)
		if problem != "" {
			return spfVerdict{problem: problem}
		}
		if unknown {
			if pending == nil {
				pending = &spfVerdict{outcome: spfUnknown, via: term}
			}
			pendingIsPass = pendingIsPass && qualifier == '+'
			continue
		}
		if !match {
			continue
		}
		switch {
		case qualifier == '+' && (pending == nil || pendingIsPass):
			return spfVerdict{outcome: spfPass, via: term}
		case pending != nil:
			return *pending
		default:
			return spfVerdict{outcome: spfNotCovered, via: string(qualifier) + term}
		}
	}
	if redirect != "" {
		if !e.countLookup() {
			return spfVerdict{problem: tooManyLookups}
		}
		sub := e.evaluate(redirect, ip, depth+1)
		switch {
		case sub.problem != "":
			return sub
		case sub.outcome == spfNone:
			return spfVerdict{problem: "redirect=" + redirect + " names a domain with no SPF record"}
		case pending != nil && !(sub.outcome == spfPass && pendingIsPass):
			return *pending
		}
		return sub
	}
	if pending != nil {
		return *pending
	}
	return spfVerdict{outcome: spfNotCovered}
}

// splitTerm splits "ip4:192.0.2.0/24" into ("ip4", "192.0.2.0/24"),
// "a/24" into ("a", "/24") and the modifier "redirect=x" into ("redirect", "x").
func splitTerm(term string) (name, arg string, modifier bool) {
	i := strings.IndexAny(term, ":/=")
	if i < 0 {
		return strings.ToLower(term), "", false
	}
	name = strings.ToLower(term[:i])
	switch term[i] {
	case '/':
		return name, term[i:], false
	case '=':
		return name, term[i+1:], true
	}
	return name, term[i+1:], false
}

// mechanism evaluates one mechanism for ip.
func (e *spfEval) mechanism(domain, name, arg string, ip netip.Addr, depth int) (match, unknown bool, problem string) {
	if strings.Contains(arg, "%") {
		return false, true, "" // macros need the sender's address; not evaluated
	}
	switch name {
	case "all":
		return true, false, ""
	case "ip4", "ip6":
		prefix, err := parsePrefix(arg, name == "ip4")
		if err != nil {
			return false, false, fmt.Sprintf("its term %s:%s is not a valid address", name, arg)
		}
		return prefix.Contains(ip), false, ""
	case "a", "mx":
		if !e.countLookup() {
			return false, false, tooManyLookups
		}
		target, bits4, bits6, err := parseDomainCIDR(arg, domain)
		if err != nil {
			return false, false, fmt.Sprintf("its term %s is malformed (%v)", name+arg, err)
		}
		if e.hosts == nil {
			return false, true, ""
		}
		hosts := []string{target}
		if name == "mx" {
			mxs, err := e.hosts.LookupMX(e.ctx, target+".")
			if err != nil && !isNotFound(err) {
				return false, true, ""
			}
			hosts = hosts[:0]
			for _, mx := range mxs {
				hosts = append(hosts, strings.TrimSuffix(mx.Host, "."))
			}
			if len(hosts) > spfLookupLimit {
				return false, false, fmt.Sprintf("%s has more than 10 MX hosts, which SPF's mx cannot use", target)
			}
		}
		for _, h := range hosts {
			addrs, err := e.hosts.LookupNetIP(e.ctx, "ip", h+".")
			if err != nil && !isNotFound(err) {
				return false, true, ""
			}
			for _, a := range addrs {
				a = a.Unmap()
				bits := bits6
				if a.Is4() {
					bits = bits4
				}
				if p, err := a.Prefix(bits); err == nil && p.Contains(ip) {
					return true, false, ""
				}
			}
		}
		return false, false, ""
	case "include":
		if !e.countLookup() {
			return false, false, tooManyLookups
		}
		if arg == "" {
			return false, false, "its include: term names no domain"
		}
		sub := e.evaluate(strings.TrimSuffix(arg, "."), ip, depth+1)
		switch {
		case sub.problem != "":
			return false, false, sub.problem
		case sub.outcome == spfNone:
			return false, false, "include:" + arg + " names a domain with no SPF record, which receivers treat as an error"
		case sub.outcome == spfUnknown:
			return false, true, ""
		}
		return sub.outcome == spfPass, false, ""
	case "exists", "ptr":
		if !e.countLookup() {
			return false, false, tooManyLookups
		}
		return false, true, ""
	default:
		return false, false, fmt.Sprintf("it contains %q, which is not an SPF mechanism, so receivers treat it as an error", name)
	}
}

// parsePrefix parses an ip4:/ip6: argument, with or without a prefix length.
func parsePrefix(s string, want4 bool) (netip.Prefix, error) {
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(s)
		if err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4() != want4 || p.Addr().Zone() != "" {
		return netip.Prefix{}, errors.New("wrong address family")
	}
	return p.Masked(), nil
}

// parseDomainCIDR parses the argument of a or mx, which splitTerm left as
// [domain]["/"n]["//"n6]; an empty domain means the current one.
func parseDomainCIDR(arg, current string) (target string, bits4, bits6 int, err error) {
	bits4, bits6 = 32, 128
	target, cidr := arg, ""
	if i := strings.IndexByte(arg, '/'); i >= 0 {
		target, cidr = arg[:i], arg[i:]
	}
	if target == "" {
		target = current
	}
	target = strings.TrimSuffix(target, ".")
	v4, v6 := "", ""
	if strings.HasPrefix(cidr, "//") {
		v6 = cidr[2:]
	} else if cidr != "" {
		v4, v6, _ = strings.Cut(cidr[1:], "//")
	}
	if v4 != "" {
		if bits4, err = strconv.Atoi(v4); err != nil || bits4 < 0 || bits4 > 32 {
			return "", 0, 0, fmt.Errorf("bad IPv4 prefix length %q", v4)
		}
	}
	if v6 != "" {
		if bits6, err = strconv.Atoi(v6); err != nil || bits6 < 0 || bits6 > 128 {
			return "", 0, 0, fmt.Errorf("bad IPv6 prefix length %q", v6)
		}
	}
	return target, bits4, bits6, nil
}

func isNotFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// checkSPF reports whether domain's SPF record authorises every address in ips.
func checkSPF(ctx context.Context, r Resolver, domain string, ips []netip.Addr) Check {
	c := Check{Record: "SPF"}
	e := &spfEval{ctx: ctx, r: r}
	if h, ok := r.(HostResolver); ok {
		e.hosts = h
	}
	records, err := e.spfRecords(domain)
	switch {
	case err != nil:
		c.Message = lookupFailure(domain, err)
		return c
	case len(records) == 0:
		c.Message = fmt.Sprintf("No SPF record is published for %s. %s", domain, publishHint)
		return c
	case len(records) > 1:
		c.Message = fmt.Sprintf("%d SPF records are published for %s, which receivers treat as an error. Merge them into one.", len(records), domain)
		return c
	case len(ips) == 0:
		c.OK = true
		c.Message = fmt.Sprintf("An SPF record is published for %s. This relay's public address is not known, so whether the record covers it was not checked.", domain)
		return c
	}

	var passed, notCovered []string
	var unknown []string
	for _, ip := range ips {
		e.lookups = 0 // each address is a separate evaluation for the receiver
		v := e.evaluate(domain, ip, 0)
		switch {
		case v.problem != "":
			c.Message = fmt.Sprintf("An SPF record is published for %s, but %s.", domain, v.problem)
			return c
		case v.outcome == spfPass:
			passed = append(passed, fmt.Sprintf("%s (through %s)", ip, v.via))
		case v.outcome == spfUnknown:
			unknown = append(unknown, fmt.Sprintf("An SPF record is published; %s (this relay's address) is covered only if %s includes it.", ip, v.via))
		default:
			notCovered = append(notCovered, ip.String())
		}
	}
	if len(notCovered) == 0 && len(unknown) == 0 {
		c.OK = true
		c.Message = fmt.Sprintf("The SPF record for %s is published and authorises %s.", domain, strings.Join(passed, " and "))
		return c
	}
	var msg []string
	if len(notCovered) > 0 {
		noun, terms := "address", make([]string, len(notCovered))
		if len(notCovered) > 1 {
			noun = "addresses"
		}
		for i, s := range notCovered {
			if strings.Contains(s, ":") {
				terms[i] = "ip6:" + s
			} else {
				terms[i] = "ip4:" + s
			}
		}
		msg = append(msg, fmt.Sprintf("An SPF record is published but does not include %s (this relay's %s). Add %s to it, before the final all.",
			strings.Join(notCovered, " or "), noun, strings.Join(terms, " ")))
	}
	msg = append(msg, unknown...)
	c.Message = strings.Join(msg, " ")
	return c
}
