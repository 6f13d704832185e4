package dkim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
)

// FromDomain returns the normalised domain of the first address in the
// message's From header, which is the domain whose key signs the message
// (DMARC aligns d= with it). header may be the header block alone or the
// whole message; reading stops at the blank line.
//
// Display names in any character set are accepted: only the address matters,
// so encoded words are not decoded, and an office app writing
// "=?windows-1252?Q?Jos=E9?= <jose@example.com>" still gets its mail signed.
func FromDomain(header []byte) (string, error) {
	msg, err := mail.ReadMessage(io.MultiReader(bytes.NewReader(header), strings.NewReader("\r\n\r\n")))
	if err != nil {
		return "", fmt.Errorf("dkim: reading message header: %w", err)
	}
	from := msg.Header.Get("From")
	if strings.TrimSpace(from) == "" {
		return "", errors.New("dkim: message has no From header")
	}
	parser := mail.AddressParser{WordDecoder: &mime.WordDecoder{
		CharsetReader: func(_ string, input io.Reader) (io.Reader, error) { return input, nil },
	}}
	addrs, err := parser.ParseList(from)
	if err != nil {
		return "", fmt.Errorf("dkim: From header %q: %w", from, err)
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("dkim: From header %q has no address", from)
	}
	at := strings.LastIndexByte(addrs[0].Address, '@')
	if at < 0 {
		return "", fmt.Errorf("dkim: From address %q has no domain", addrs[0].Address)
	}
	domain, err := NormaliseDomain(addrs[0].Address[at+1:])
	if err != nil {
		return "", fmt.Errorf("dkim: From address %q: %w", addrs[0].Address, err)
	}
	return domain, nil
}
