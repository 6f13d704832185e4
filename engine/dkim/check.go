package dkim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// Resolver looks up TXT records; *net.Resolver fits. TXT records made of
// several strings must come back joined, as net.Resolver does.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// HostResolver is the optional extra a Resolver may have (*net.Resolver has
// it) so that CheckDNS can follow SPF's "a" and "mx" mechanisms. Without it
// those mechanisms are reported as "covered only if ... includes it".
type HostResolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
}

// Check is the verdict on one published record, worded for the person who
// has to fix it rather than in DNS terms.
type Check struct {
	Record  string // "DKIM", "SPF" or "DMARC"
	OK      bool
	Message string
}

// publishHint ends messages about missing or wrong records.
const publishHint = "Publish the record shown above; DNS changes can take up to an hour to appear."

// CheckDNS looks up the DKIM, SPF and DMARC records of key's domain and says,
// record by record, whether they are what mail from this relay needs.
// sourceIPs are the relay's sending addresses; non-public ones are ignored.
func CheckDNS(ctx context.Context, r Resolver, key Key, sourceIPs []netip.Addr) []Check {
	return []Check{
		checkDKIM(ctx, r, key),
		checkSPF(ctx, r, key.Domain, publicAddrs(sourceIPs)),
		checkDMARC(ctx, r, key.Domain),
	}
}

// lookupTXT queries a rooted name (so no search domain is tried) and turns
// "no such name" and "no TXT records" into an empty answer.
func lookupTXT(ctx context.Context, r Resolver, name string) ([]string, error) {
	txts, err := r.LookupTXT(ctx, name+".")
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return nil, nil
	}
	return txts, err
}

// lookupFailure words a failed lookup without DNS jargon.
func lookupFailure(name string, err error) string {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsTimeout {
		return fmt.Sprintf("The DNS server did not answer in time when asked about %s; check the network and try again.", name)
	}
	return fmt.Sprintf("Could not look up %s (%v); check the network and try again.", name, err)
}

func checkDKIM(ctx context.Context, r Resolver, key Key) Check {
	c := Check{Record: "DKIM"}
	name := key.Selector + "._domainkey." + key.Domain
	wantKind, wantP, err := key.publicKey()
	if err != nil {
		c.Message = fmt.Sprintf("Our own key for %s cannot be read (%v), so there is nothing to compare with; generate a new key.", key.Domain, err)
		return c
	}
	txts, err := lookupTXT(ctx, r, name)
	if err != nil {
		c.Message = lookupFailure(name, err)
		return c
	}
	var records []string
	for _, t := range txts {
		// A DKIM record may omit v=, so anything with a p= tag counts.
		if _, ok := tagValue(t, "p"); ok {
			records = append(records, t)
		}
	}
	switch {
	case len(records) == 0 && len(txts) > 0:
		c.Message = fmt.Sprintf("A TXT record is published at %s but it is not a DKIM key. %s", name, publishHint)
		return c
	case len(records) == 0:
		c.Message = fmt.Sprintf("No DKIM record found at %s. %s", name, publishHint)
		return c
	case len(records) > 1:
		c.Message = fmt.Sprintf("%d DKIM records are published at %s; receivers cannot tell which one to use. Keep only the record shown above.", len(records), name)
		return c
	}
	rec := records[0]
	if v, ok := tagValue(rec, "v"); ok && v != "DKIM1" {
		c.Message = fmt.Sprintf("The record at %s starts with v=%s instead of v=DKIM1, so receivers ignore it. %s", name, v, publishHint)
		return c
	}
	kind, ok := tagValue(rec, "k")
	if !ok {
		kind = "rsa" // the default, RFC 6376 section 3.6.1
	}
	p, _ := tagValue(rec, "p")
	switch {
	case p == "":
		c.Message = fmt.Sprintf("The DKIM record at %s has an empty key, which tells receivers the key was withdrawn. %s", name, publishHint)
	case kind != wantKind:
		c.Message = fmt.Sprintf("The DKIM record at %s is for a %s key but ours is %s. %s", name, kind, wantKind, publishHint)
	case p != wantP:
		c.Message = fmt.Sprintf("A DKIM record is published at %s but its key does not match ours, so signatures will fail. Replace it with the record shown above.", name)
	default:
		c.OK = true
		c.Message = fmt.Sprintf("The DKIM record for selector %s is published and matches our key.", key.Selector)
	}
	return c
}

func checkDMARC(ctx context.Context, r Resolver, domain string) Check {
	c := Check{Record: "DMARC"}
	name := "_dmarc." + domain
	records, err := dmarcRecords(ctx, r, name)
	if err == nil && len(records) == 0 {
		// Receivers fall back to the organisational domain (RFC 7489
		// section 6.6.3), so mail.example.com is covered by example.com.
		if org, oerr := publicsuffix.EffectiveTLDPlusOne(domain); oerr == nil && org != domain {
			name = "_dmarc." + org
			records, err = dmarcRecords(ctx, r, name)
		}
	}
	switch {
	case err != nil:
		c.Message = lookupFailure(name, err)
		return c
	case len(records) == 0:
		c.Message = fmt.Sprintf("No DMARC record found at _dmarc.%s; it tells receivers what to do with mail that fails the checks and where to send reports. %s", domain, publishHint)
		return c
	case len(records) > 1:
		c.Message = fmt.Sprintf("%d DMARC records are published at %s; receivers then ignore all of them. Keep only one.", len(records), name)
		return c
	}
	policy, ok := tagValue(records[0], "p")
	policy = strings.ToLower(policy)
	if !ok || (policy != "none" && policy != "quarantine" && policy != "reject") {
		c.Message = fmt.Sprintf("The DMARC record at %s has no valid policy (p=none, p=quarantine or p=reject), so receivers ignore it.", name)
		return c
	}
	c.OK = true
	meaning := map[string]string{
		"none":       "receivers deliver mail that fails the checks as usual (monitoring only)",
		"quarantine": "receivers treat mail that fails the checks as spam",
		"reject":     "receivers refuse mail that fails the checks",
	}[policy]
	reports := "no reports are requested (add rua=mailto:ADDRESS to get them)"
	if rua, ok := tagValue(records[0], "rua"); ok && rua != "" {
		reports = "reports go to " + strings.ReplaceAll(rua, "mailto:", "")
	}
	c.Message = fmt.Sprintf("A DMARC record is published at %s with policy %q: %s; %s.", name, policy, meaning, reports)
	return c
}

// dmarcRecords returns the DMARC records at name.
func dmarcRecords(ctx context.Context, r Resolver, name string) ([]string, error) {
	txts, err := lookupTXT(ctx, r, name)
	if err != nil {
		return nil, err
	}
	var records []string
	for _, t := range txts {
		// RFC 7489 section 6.4: v=DMARC1 must be the first tag.
		first, _, _ := strings.Cut(t, ";")
		if v, ok := tagValue(first, "v"); ok && v == "DMARC1" {
			records = append(records, t)
		}
	}
	return records, nil
}
