// Package addr parses and normalises SMTP envelope addresses: the values of
// MAIL FROM and RCPT TO as go-smtp hands them to the engine, and the address
// entries of the settings file.
//
// Parsing follows RFC 5321 (and RFC 6531 for SMTPUTF8) with some hardening:
// control characters are refused everywhere, source routes are refused rather
// than ignored, and lengths are checked on the canonical forms so that a
// parsed Address can always be written out again. Domains are normalised
// (lowercase, no trailing dot, IDNA mapping) and kept in their Unicode form,
// so "BÜCHER.example." and "xn--bcher-kva.example" compare equal.
package addr

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Limits from RFC 5321 section 4.5.3.1.
const (
	// MaxLocalLen is the longest local part, in octets, as written on the wire.
	MaxLocalLen = 64
	// MaxDomainLen is the longest domain, in octets of its ASCII form.
	MaxDomainLen = 255
	// MaxPathLen is the longest whole address, in octets. RFC 5321 counts
	// the angle brackets too; go-smtp has removed them before we see the
	// path, so this is slightly more lenient than the RFC.
	MaxPathLen = 256
	// maxRawDomainLen bounds the work NormalizeDomain does on hostile input
	// before the canonical length can be known (IDNA mapping may shrink
	// Unicode input considerably).
	maxRawDomainLen = 4 * MaxDomainLen
)

// Kind classifies a parse failure so the SMTP layer can choose the reply.
type Kind int

const (
	// KindSyntax is a malformed address (suggested reply: 501 5.1.3 for
	// RCPT, 501 5.1.7 for MAIL).
	KindSyntax Kind = iota + 1
	// KindTooLong is an address, local part or domain over an RFC 5321 limit
	// (suggested reply: 501 5.1.3, or 552 5.3.4 per RFC 5321 4.5.3.1.10).
	KindTooLong
	// KindNeedsSMTPUTF8 is a non-ASCII address from a client that did not
	// ask for SMTPUTF8 (RFC 6531 section 3.5: 553 5.6.7).
	KindNeedsSMTPUTF8
)

// String names the kind for logs.
func (k Kind) String() string {
	switch k {
	case KindSyntax:
		return "syntax"
	case KindTooLong:
		return "too long"
	case KindNeedsSMTPUTF8:
		return "needs SMTPUTF8"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is the error returned by Parse and NormalizeDomain. Reason never
// contains raw input bytes (at most a Go-quoted label from the IDNA
// checker), so it is safe to put in an SMTP reply or a log line even when
// the client sent control characters.
type Error struct {
	Kind   Kind
	Reason string
}

// Error returns the reason.
func (e *Error) Error() string { return e.Reason }

func newError(kind Kind, reason string) *Error {
	return &Error{Kind: kind, Reason: reason}
}

// ParseOptions says what the SMTP session allows.
type ParseOptions struct {
	// SMTPUTF8 is set when the client gave the SMTPUTF8 parameter on MAIL
	// FROM (or, for settings entries, always): only then are non-ASCII
	// characters allowed.
	SMTPUTF8 bool
	// AllowNullSender accepts the empty path, the reverse path of bounces.
	// Set it for MAIL FROM only.
	AllowNullSender bool
	// RequireQuoting refuses a local part that is neither a dot-string nor
	// a quoted string, such as "a b" or "a@". Set it for addresses written
	// by people (the settings), where "a@@b" is a typo; leave it off for
	// go-smtp's output, which has already removed the quotes.
	RequireQuoting bool
}

// Address is a parsed envelope address. Local is the local part's value
// (unquoted, case preserved: RFC 5321 leaves its meaning to the receiving
// host); Domain is the normalised domain in Unicode form, or an address
// literal such as "[192.0.2.1]" or "[IPv6:2001:db8::1]". The zero Address is
// the null sender "<>". Two Addresses for the same mailbox compare equal with
// ==.
type Address struct {
	Local  string
	Domain string
}

// IsNull reports whether a is the null reverse path "<>".
func (a Address) IsNull() bool { return a.Local == "" && a.Domain == "" }

// String returns local@domain, quoting the local part when it is not a
// valid dot-string, with the domain in Unicode form; "" for the null sender.
// This is the form to show to people; it re-parses (with SMTPUTF8) to a.
func (a Address) String() string {
	if a.IsNull() {
		return ""
	}
	return encodeLocal(a.Local) + "@" + a.Domain
}

// ASCIIString returns local@domain with the domain in ASCII (punycode) form:
// the form to send to a server that does not offer SMTPUTF8. The local part
// may still be non-ASCII; see NeedsSMTPUTF8.
func (a Address) ASCIIString() string {
	if a.IsNull() {
		return ""
	}
	return encodeLocal(a.Local) + "@" + a.ASCIIDomain()
}

// ASCIIDomain returns the domain in ASCII form (A-labels), as DNS needs it.
// Address literals are returned unchanged.
func (a Address) ASCIIDomain() string {
	if a.Domain == "" || a.IsLiteral() {
		return a.Domain
	}
	ascii, err := idnaProfile().ToASCII(a.Domain)
	if err != nil {
		// Only possible for an Address built by hand rather than parsed.
		return a.Domain
	}
	return ascii
}

// NeedsSMTPUTF8 reports whether the address cannot be written in ASCII, so
// that relaying it needs a next hop offering SMTPUTF8. A Unicode domain
// alone does not count: it has an ASCII form.
func (a Address) NeedsSMTPUTF8() bool { return !isASCII(a.Local) }

// IsLiteral reports whether the domain is an address literal ("[192.0.2.1]").
func (a Address) IsLiteral() bool { return strings.HasPrefix(a.Domain, "[") }

// LiteralIP returns the IP address of an address-literal domain.
func (a Address) LiteralIP() (netip.Addr, bool) {
	if !a.IsLiteral() {
		return netip.Addr{}, false
	}
	inner := strings.TrimSuffix(strings.TrimPrefix(a.Domain, "["), "]")
	inner = strings.TrimPrefix(inner, "IPv6:")
	ip, err := netip.ParseAddr(inner)
	return ip, err == nil
}

// Suspicious reports local parts that legitimate office software never
// produces but that are used to smuggle routing past filters: one that
// needs quoting, or that contains '@' (nested address), '%' (the "percent
// hack", user%host@relay) or '!' (UUCP bang path). The engine refuses them
// from unauthenticated clients.
func (a Address) Suspicious() bool {
	if a.IsNull() {
		return false
	}
	return !isDotString(a.Local) || strings.ContainsAny(a.Local, "@%!")
}

// Parse parses the value of a MAIL FROM or RCPT TO path as go-smtp hands it
// over: without angle brackets, and with a quoted local part already
// unquoted (so `"a b"@example.com` arrives as `a b@example.com`). The domain
// is therefore taken after the last '@'. A local part that is itself a
// well-formed quoted string is unquoted, so the output of String parses back
// to the same Address. (One consequence: the wire form `"\"x\""@d` reaches
// us from go-smtp as `"x"@d` and is read as x@d. That is harmless, because
// the policy checks the very Address that is delivered to.)
func Parse(path string, opts ParseOptions) (Address, error) {
	if path == "" {
		if opts.AllowNullSender {
			return Address{}, nil
		}
		return Address{}, newError(KindSyntax, "empty address")
	}
	if len(path) > MaxPathLen {
		return Address{}, newError(KindTooLong, fmt.Sprintf("address longer than %d octets", MaxPathLen))
	}
	if err := checkChars(path, opts.SMTPUTF8); err != nil {
		return Address{}, err
	}
	if path[0] == '@' {
		return Address{}, newError(KindSyntax, "source routes are not accepted")
	}
	at := strings.LastIndexByte(path, '@')
	if at < 0 {
		return Address{}, newError(KindSyntax, "address has no domain")
	}
	local, err := parseLocal(path[:at], opts.RequireQuoting)
	if err != nil {
		return Address{}, err
	}
	domain, err := NormalizeDomain(path[at+1:])
	if err != nil {
		return Address{}, err
	}
	a := Address{Local: local, Domain: domain}
	if len(a.String()) > MaxPathLen || len(a.ASCIIString()) > MaxPathLen {
		return Address{}, newError(KindTooLong, fmt.Sprintf("address longer than %d octets", MaxPathLen))
	}
	return a, nil
}

// checkChars refuses control characters, and non-ASCII unless allowed.
func checkChars(s string, utf8Allowed bool) *Error {
	nonASCII := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return newError(KindSyntax, "address contains a control character")
		}
		if c >= utf8.RuneSelf {
			nonASCII = true
		}
	}
	if !nonASCII {
		return nil
	}
	if !utf8Allowed {
		return newError(KindNeedsSMTPUTF8, "non-ASCII address without SMTPUTF8")
	}
	if !utf8.ValidString(s) {
		return newError(KindSyntax, "address is not valid UTF-8")
	}
	for _, r := range s {
		// C1 controls (U+0080-U+009F) are as dangerous in logs as C0 ones.
		if unicode.IsControl(r) {
			return newError(KindSyntax, "address contains a control character")
		}
	}
	return nil
}

// parseLocal returns the value of a local part: a quoted string is unquoted,
// anything else (a dot-string, or a value go-smtp already unquoted) is taken
// as it is. Control characters were refused before.
func parseLocal(raw string, requireQuoting bool) (string, error) {
	local := raw
	if unquoted, ok := unquote(raw); ok {
		local = unquoted
	} else if requireQuoting && !isDotString(raw) {
		return "", newError(KindSyntax, "local part must be a dot-string or a quoted string")
	}
	if local == "" {
		return "", newError(KindSyntax, "empty local part")
	}
	if len(encodeLocal(local)) > MaxLocalLen {
		return "", newError(KindTooLong, fmt.Sprintf("local part longer than %d octets", MaxLocalLen))
	}
	return local, nil
}

// unquote decodes an RFC 5321 Quoted-string that spans all of s.
func unquote(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		c := s[i]
		switch {
		case c == '\\':
			i++
			if i == len(s)-1 || s[i] < 0x20 || s[i] > 0x7e {
				return "", false
			}
			b.WriteByte(s[i])
		case c == '"':
			return "", false
		case c < 0x20 || c == 0x7f:
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// encodeLocal writes a local part as RFC 5321 wants it: a dot-string when it
// is one, a quoted string otherwise.
func encodeLocal(local string) string {
	if isDotString(local) {
		return local
	}
	var b strings.Builder
	b.Grow(len(local) + 2)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String()
}

// isDotString reports whether s is an RFC 5321 Dot-string (with RFC 6531's
// UTF-8 atext): atoms of atext separated by single dots.
func isDotString(s string) bool {
	if s == "" {
		return false
	}
	atomLen := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if atomLen == 0 {
				return false
			}
			atomLen = 0
			continue
		}
		if !isAtext(c) {
			return false
		}
		atomLen++
	}
	return atomLen > 0
}

func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c >= utf8.RuneSelf:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// idnaProfile is the IDNA mapping used for every domain: the lookup mapping
// of RFC 5891 section 5 (case folding, width mapping, NFC) with the Bidi
// rule. Hyphen checks are off because real ASCII host names such as
// "r3---sn-abc.example" break them; isLDHLabel checks leading and trailing
// hyphens instead. Lengths are checked by NormalizeDomain. A new Profile per
// call keeps the package free of shared state; it is a small allocation.
func idnaProfile() *idna.Profile {
	return idna.New(
		idna.MapForLookup(),
		idna.Transitional(false),
		idna.CheckHyphens(false),
		idna.BidiRule(),
	)
}

// NormalizeDomain returns the canonical form of a domain name or address
// literal: for a name, lowercase Unicode (U-labels) without the trailing
// dot; for a literal, "[192.0.2.1]" or "[IPv6:2001:db8::1]" with the IP in
// its canonical text form. It accepts Unicode and punycode alike, so both
// spellings of an IDN give the same result.
func NormalizeDomain(s string) (string, error) {
	if s == "" {
		return "", newError(KindSyntax, "empty domain")
	}
	if len(s) > maxRawDomainLen {
		return "", newError(KindTooLong, fmt.Sprintf("domain longer than %d octets", MaxDomainLen))
	}
	if err := checkChars(s, true); err != nil {
		return "", err
	}
	if s[0] == '[' {
		return normalizeLiteral(s)
	}
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return "", newError(KindSyntax, "empty domain")
	}
	if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
		return "", newError(KindSyntax, "an IP address must be written as an address literal, e.g. [192.0.2.1]")
	}
	profile := idnaProfile()
	ascii, err := profile.ToASCII(s)
	if err != nil {
		return "", newError(KindSyntax, "invalid domain name: "+err.Error())
	}
	if err := checkLDH(ascii); err != nil {
		return "", err
	}
	unicodeForm, err := profile.ToUnicode(ascii)
	if err != nil {
		return "", newError(KindSyntax, "invalid domain name: "+err.Error())
	}
	// The stored form must map back to the same A-labels, or two spellings
	// of one domain could compare unequal (and ASCIIDomain could fail).
	if again, err := profile.ToASCII(unicodeForm); err != nil || again != ascii {
		return "", newError(KindSyntax, "invalid domain name: unstable IDNA mapping")
	}
	return unicodeForm, nil
}

// DomainToASCII returns the ASCII (A-label) form of a domain name or address
// literal, after the same checks as NormalizeDomain.
func DomainToASCII(s string) (string, error) {
	d, err := NormalizeDomain(s)
	if err != nil {
		return "", err
	}
	return Address{Local: "x", Domain: d}.ASCIIDomain(), nil
}

// checkLDH checks the ASCII form of a domain name: RFC 1035 labels of
// letters, digits and hyphens, 1 to 63 octets, no hyphen at either end.
func checkLDH(ascii string) *Error {
	if len(ascii) > MaxDomainLen {
		return newError(KindTooLong, fmt.Sprintf("domain longer than %d octets", MaxDomainLen))
	}
	for label := range strings.SplitSeq(ascii, ".") {
		switch {
		case label == "":
			return newError(KindSyntax, "domain has an empty label")
		case len(label) > 63:
			return newError(KindTooLong, "domain label longer than 63 octets")
		case label[0] == '-' || label[len(label)-1] == '-':
			return newError(KindSyntax, "domain label starts or ends with a hyphen")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return newError(KindSyntax, "domain label contains a character other than letters, digits and hyphens")
			}
		}
	}
	return nil
}

// normalizeLiteral handles RFC 5321 address literals. General literals
// ("[tag:content]") other than IPv6 are refused: nothing routes them.
func normalizeLiteral(s string) (string, error) {
	if len(s) < 3 || s[len(s)-1] != ']' {
		return "", newError(KindSyntax, "malformed address literal")
	}
	inner := s[1 : len(s)-1]
	if len(inner) >= 5 && strings.EqualFold(inner[:5], "IPv6:") {
		ip, err := netip.ParseAddr(inner[5:])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", newError(KindSyntax, "malformed IPv6 address literal")
		}
		return "[IPv6:" + ip.String() + "]", nil
	}
	if strings.Contains(inner, ":") {
		return "", newError(KindSyntax, "unsupported address literal")
	}
	ip, err := netip.ParseAddr(inner)
	if err != nil || !ip.Is4() {
		return "", newError(KindSyntax, "malformed IPv4 address literal")
	}
	return "[" + ip.String() + "]", nil
}

// CheckHelo checks the name a client gives in EHLO or HELO (RFC 5321
// section 4.1.1.1): a host name or an address literal. It is more lenient
// than the RFC where office equipment is known to differ, as Postfix's
// reject_invalid_helo_hostname is: underscores in labels (Windows computer
// names), a trailing dot, and a bare IP address without brackets (old
// printers) pass. What it refuses cannot be a name: empty labels, labels
// over 63 octets, names over 255 octets, spaces, control characters and
// punctuation, and non-ASCII that is not a valid IDN. The error's reason
// never contains the input.
func CheckHelo(name string) error {
	if name == "" {
		return newError(KindSyntax, "empty name")
	}
	if len(name) > MaxDomainLen {
		return newError(KindTooLong, fmt.Sprintf("name longer than %d octets", MaxDomainLen))
	}
	if err := checkChars(name, true); err != nil {
		return newError(err.Kind, "name contains a control character or invalid UTF-8")
	}
	if name[0] == '[' {
		if _, err := normalizeLiteral(name); err != nil {
			return err
		}
		return nil
	}
	if ip, err := netip.ParseAddr(name); err == nil && ip.Zone() == "" {
		return nil
	}
	ascii := strings.TrimSuffix(name, ".")
	if !isASCII(ascii) {
		a, err := idnaProfile().ToASCII(ascii)
		if err != nil {
			return newError(KindSyntax, "name is not a valid internationalised domain name")
		}
		ascii = a
	}
	if len(ascii) > MaxDomainLen {
		return newError(KindTooLong, fmt.Sprintf("name longer than %d octets", MaxDomainLen))
	}
	for label := range strings.SplitSeq(ascii, ".") {
		switch {
		case label == "":
			return newError(KindSyntax, "name has an empty label")
		case len(label) > 63:
			return newError(KindTooLong, "name has a label longer than 63 octets")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return newError(KindSyntax, "name contains a character other than letters, digits, hyphens and underscores")
			}
		}
	}
	return nil
}
