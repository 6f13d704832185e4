package msgdata

import (
	"net/netip"
	"strings"
	"time"
)

// ReceivedFields is what the relay knows about one accepted message for its
// Received: trace field (RFC 5321 section 4.4).
type ReceivedFields struct {
	// FromHelo is the name the client gave in HELO/EHLO. It is client data:
	// it is cleaned before use.
	FromHelo string
	// ClientIP is the address the connection came from.
	ClientIP netip.Addr
	// ClientHost is the verified reverse DNS name of ClientIP, or empty.
	ClientHost string
	// ByHost is our own host name (the hostname setting).
	ByHost string
	// Protocol is the "with" keyword: "ESMTP", "ESMTPS", "ESMTPA" or
	// "ESMTPSA" (RFC 3848). Empty means "ESMTP".
	Protocol string
	// ID is the queue ID the message was stored under.
	ID string
	// For is the recipient when there is exactly one, else empty. Naming one
	// of several recipients would disclose the others' presence to each
	// other's copies, so callers leave it empty then.
	For string
	// TLS describes the session's encryption, e.g.
	// "TLS1.3 TLS_AES_128_GCM_SHA256"; empty for plain text.
	TLS string
	// Time is when the message was accepted.
	Time time.Time
}

// Length limits for values in a Received field. A DNS name has at most 253
// characters and an address 254; anything longer is not a real value and is
// cut so the field stays well under the 998-octet line limit.
const (
	maxHostLen = 253
	maxAddrLen = 254
	maxIDLen   = 64
	maxTLSLen  = 100
)

// foldAt is the longest line Received produces where the values allow it:
// RFC 5322 section 2.1.1 asks for lines of no more than 78 characters.
const foldAt = 77

// Received returns one "Received:" header field, folded and ending in CRLF:
//
//	Received: from printer.lan (scan.example.com [192.0.2.7])
//		by relay.example.com with ESMTPS (TLS1.3 TLS_AES_128_GCM_SHA256)
//		id 01J7X; Tue, 2 Jan 2024 10:00:00 +0000
//
// Nothing the client sent is echoed raw: the HELO name and the recipient lose
// any byte that is not printable ASCII and any character that would end a
// token or comment early (space, parentheses, brackets, angle brackets,
// quotes, backslash, semicolon), and long values are cut. A HELO that is an
// address literal keeps its brackets only when it parses as an address.
func Received(f ReceivedFields) string {
	helo := heloText(f.FromHelo)
	tokens := []string{"from " + helo}
	if tcpInfo := tcpInfo(f.ClientHost, f.ClientIP); tcpInfo != "" {
		tokens = append(tokens, "("+tcpInfo+")")
	}
	by := clean(f.ByHost, isHostByte, maxHostLen)
	if by == "" {
		by = "localhost"
	}
	tokens = append(tokens, "by "+by)
	protocol := clean(f.Protocol, isAlnum, 16)
	if protocol == "" {
		protocol = "ESMTP"
	}
	tokens = append(tokens, "with "+protocol)
	if tls := tlsComment(f.TLS); tls != "" {
		tokens = append(tokens, "("+tls+")")
	}
	if id := clean(f.ID, isHostByte, maxIDLen); id != "" {
		tokens = append(tokens, "id "+id)
	}
	if rcpt := forPath(f.For); rcpt != "" {
		tokens = append(tokens, "for <"+rcpt+">")
	}
	tokens[len(tokens)-1] += ";"
	tokens = append(tokens, f.Time.Format(time.RFC1123Z))

	var b strings.Builder
	line := "Received: " + tokens[0]
	for _, t := range tokens[1:] {
		if len(line)+1+len(t) > foldAt {
			b.WriteString(line)
			b.WriteString("\r\n")
			line = "\t" + t
			continue
		}
		line += " " + t
	}
	b.WriteString(line)
	b.WriteString("\r\n")
	return b.String()
}

// heloText is the HELO name as it may appear after "from".
func heloText(helo string) string {
	if lit, ok := strings.CutPrefix(helo, "["); ok {
		if lit, ok := strings.CutSuffix(lit, "]"); ok {
			if v6, ok := strings.CutPrefix(lit, "IPv6:"); ok {
				if a, err := netip.ParseAddr(v6); err == nil && a.Is6() && a.Zone() == "" {
					return "[IPv6:" + a.String() + "]"
				}
			} else if a, err := netip.ParseAddr(lit); err == nil && a.Is4() {
				return "[" + a.String() + "]"
			}
		}
	}
	if h := clean(helo, isTokenByte, maxHostLen); h != "" {
		return h
	}
	return "unknown"
}

// tcpInfo is the comment after the HELO name: what we know of the peer.
func tcpInfo(host string, ip netip.Addr) string {
	host = clean(host, isHostByte, maxHostLen)
	lit := ""
	if ip.IsValid() {
		ip = ip.Unmap().WithZone("")
		if ip.Is4() {
			lit = "[" + ip.String() + "]"
		} else {
			lit = "[IPv6:" + ip.String() + "]"
		}
	}
	return strings.TrimSpace(host + " " + lit)
}

// forPath returns the recipient for the "for" clause, or "" to leave the
// clause out. Addresses that would need quoting or are not ASCII are left
// out rather than altered: a wrong address in a trace field misleads.
func forPath(addr string) string {
	if len(addr) > maxAddrLen || !strings.Contains(addr, "@") {
		return ""
	}
	for i := 0; i < len(addr); i++ {
		if !isTokenByte(addr[i]) {
			return ""
		}
	}
	return addr
}

// tlsComment cleans the TLS description for use inside a comment: printable
// ASCII with single spaces, and no parentheses, backslashes or semicolons
// (naive parsers find the date after the last semicolon).
func tlsComment(s string) string {
	s = clean(s, func(c byte) bool {
		return c == ' ' || c == '\t' || c > ' ' && c < 0x7f && !strings.ContainsRune(`()\;`, rune(c))
	}, 4*maxTLSLen)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxTLSLen {
		s = strings.TrimSpace(s[:maxTLSLen])
	}
	return s
}

// clean keeps the bytes of s that keep says are safe, up to max bytes.
func clean(s string, keep func(byte) bool, max int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < max; i++ {
		if keep(s[i]) {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isHostByte allows the characters of host names and queue IDs.
func isHostByte(c byte) bool {
	return isAlnum(c) || c == '.' || c == '-' || c == '_'
}

// isTokenByte allows printable ASCII except what would end a token or
// comment or hide a header field inside the value.
func isTokenByte(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	return !strings.ContainsRune(`()[]<>";\`, rune(c))
}
