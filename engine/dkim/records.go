package dkim

import (
	"fmt"
	"net/mail"
	"net/netip"
	"strings"
)

// Record is one DNS record to publish, with a sentence saying what it is for,
// as `postroom dkim dns` and the window show it.
type Record struct {
	Name    string // owner name without the trailing dot, e.g. "pr202611._domainkey.example.com"
	Type    string // "TXT"
	Value   string // the whole value; see SplitTXT for how it is stored
	Purpose string // one plain-English sentence
}

// txtChunk is the most one character-string in a TXT record can hold
// (RFC 1035 section 3.3).
const txtChunk = 255

// zoneTTL is the TTL FormatZone writes: an hour lets a mistake be corrected
// the same day without loading resolvers with queries.
const zoneTTL = 3600

// Records returns the records a domain needs for mail from this relay: the
// DKIM key, an SPF suggestion naming the relay's public source addresses, and
// a DMARC record in monitoring mode ("p=none") that sends aggregate reports to
// reportAddress (left out when empty). Addresses that are not public
// (loopback, private, link-local) are left out of SPF: receivers on the
// internet never see them.
func Records(key Key, sourceIPs []netip.Addr, reportAddress string) ([]Record, error) {
	dkimValue, err := key.PublicRecord()
	if err != nil {
		return nil, err
	}
	domain, err := NormaliseDomain(key.Domain)
	if err != nil {
		return nil, err
	}
	rua, err := reportURI(reportAddress)
	if err != nil {
		return nil, err
	}

	ips := publicAddrs(sourceIPs)
	spf := []string{"v=spf1"}
	for _, ip := range ips {
		if ip.Is4() {
			spf = append(spf, "ip4:"+ip.String())
		} else {
			spf = append(spf, "ip6:"+ip.String())
		}
	}
	spf = append(spf, "mx", "~all")
	spfPurpose := "Tells receivers which servers may send mail for " + domain +
		": this relay's address and the domain's own mail servers (mx); if the domain already has an SPF record, add these terms to it instead of publishing a second one."
	if len(ips) == 0 {
		spfPurpose = "Tells receivers which servers may send mail for " + domain +
			"; this relay's public address is not known, so add it as ip4:ADDRESS (or ip6:ADDRESS) before mx, and if the domain already has an SPF record, add to it instead of publishing a second one."
	}

	dmarc := "v=DMARC1; p=none"
	dmarcPurpose := "Turns on DMARC in monitoring mode: receivers deliver mail as before but can check that it is aligned with " + domain + "; add rua=mailto:ADDRESS to receive daily reports."
	if rua != "" {
		dmarc += "; rua=" + rua
		dmarcPurpose = "Turns on DMARC in monitoring mode: receivers deliver mail as before and send daily reports to " + strings.TrimPrefix(rua, "mailto:") + ", so you can see who sends as " + domain + " before choosing a stricter policy."
	}

	return []Record{
		{
			Name:    key.Selector + "._domainkey." + domain,
			Type:    "TXT",
			Value:   dkimValue,
			Purpose: "Publishes the public key (selector " + key.Selector + ") that receivers use to check the DKIM signature this relay adds to mail from " + domain + ".",
		},
		{Name: domain, Type: "TXT", Value: strings.Join(spf, " "), Purpose: spfPurpose},
		{Name: "_dmarc." + domain, Type: "TXT", Value: dmarc, Purpose: dmarcPurpose},
	}, nil
}

// reportURI turns a report address ("dmarc@example.com" or
// "mailto:dmarc@example.com") into a rua= URI, refusing characters that
// would break the tag list.
func reportURI(address string) (string, error) {
	a := strings.TrimSpace(address)
	if a == "" {
		return "", nil
	}
	a = strings.TrimPrefix(a, "mailto:")
	parsed, err := mail.ParseAddress(a)
	if err != nil || parsed.Address != a {
		return "", fmt.Errorf("dkim: DMARC report address %q is not a plain e-mail address", address)
	}
	if strings.ContainsAny(a, ";,! \t\"") {
		return "", fmt.Errorf("dkim: DMARC report address %q contains characters a DMARC record cannot hold", address)
	}
	return "mailto:" + a, nil
}

// publicAddrs returns the addresses worth naming in SPF, unmapped and without
// duplicates, in the order given.
func publicAddrs(ips []netip.Addr) []netip.Addr {
	var out []netip.Addr
	seen := make(map[netip.Addr]bool)
	for _, ip := range ips {
		ip = ip.Unmap().WithZone("")
		if !ip.IsValid() || ip.IsUnspecified() || ip.IsLoopback() || ip.IsPrivate() ||
			ip.IsLinkLocalUnicast() || ip.IsMulticast() || seen[ip] {
			continue
		}
		seen[ip] = true
		out = append(out, ip)
	}
	return out
}

// SplitTXT splits a TXT value into the 255-byte character-strings a TXT
// record is made of. Receivers join them back without separators, so a long
// DKIM key can be cut anywhere.
func SplitTXT(value string) []string {
	if value == "" {
		return []string{""}
	}
	var parts []string
	for len(value) > txtChunk {
		parts = append(parts, value[:txtChunk])
		value = value[txtChunk:]
	}
	return append(parts, value)
}

// FormatZone writes records as BIND zone-file lines, each after a comment
// with its purpose. Long TXT values become several quoted strings inside
// parentheses, which is how zone files continue a record over lines.
func FormatZone(records []Record) string {
	var sb strings.Builder
	for i, r := range records {
		if i > 0 {
			sb.WriteString("\n")
		}
		if r.Purpose != "" {
			fmt.Fprintf(&sb, "; %s\n", strings.ReplaceAll(r.Purpose, "\n", " "))
		}
		fmt.Fprintf(&sb, "%s. %d IN %s ", strings.TrimSuffix(r.Name, "."), zoneTTL, r.Type)
		parts := SplitTXT(r.Value)
		if len(parts) == 1 {
			fmt.Fprintf(&sb, "%s\n", quoteTXT(parts[0]))
			continue
		}
		sb.WriteString("(\n")
		for _, p := range parts {
			fmt.Fprintf(&sb, "\t%s\n", quoteTXT(p))
		}
		sb.WriteString("\t)\n")
	}
	return sb.String()
}

// quoteTXT quotes a character-string for a zone file.
func quoteTXT(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}
