// Package dkim owns Postroom's DKIM work on key material and message bytes:
// generating signing keys, signing outgoing mail, describing the DNS records a
// domain needs (DKIM, SPF, DMARC) and checking what is actually published.
//
// It knows nothing about the database or the command line: keys come in and
// go out as [Key] values holding PEM bytes, and messages as byte streams.
//
// Signing is built on github.com/emersion/go-msgauth (v0.7.0). That library
// stamps the t= tag from its own clock, which cannot be set from outside, so
// Sign uses its signer only for the body hash (the part with subtle
// canonicalisation rules) and hashes, signs and folds the DKIM-Signature
// header itself. That keeps t= under the caller's control, so a signature is
// reproducible for a given key, message and time. go-msgauth's verifier and
// dkimpy check the result in the tests.
package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Algorithm names a kind of signing key, as stored in settings and given to
// `postroom dkim generate --algo`.
type Algorithm string

// The supported algorithms. RSA is what every receiver understands; Ed25519
// (RFC 8463) is smaller and faster but not yet verified everywhere, so a domain
// that wants it usually publishes both.
const (
	AlgorithmRSA2048 Algorithm = "rsa2048"
	AlgorithmEd25519 Algorithm = "ed25519"
)

// rsaBits is the RSA modulus size: RFC 8301 requires at least 1024 bits and
// recommends 2048, which still fits a TXT record (split into strings).
const rsaBits = 2048

// Key is one DKIM signing key: the private key and where its public half is
// published (Selector._domainkey.Domain).
type Key struct {
	Domain        string    // normalised: lower case, no trailing dot
	Selector      string    // one or more DNS labels
	Algorithm     Algorithm // AlgorithmRSA2048 or AlgorithmEd25519
	PrivateKeyPEM []byte    // PKCS#8, PEM type "PRIVATE KEY"
	Created       time.Time

	signer crypto.Signer // PrivateKeyPEM parsed, once (Parsed)
}

// Parsed returns k with its private key parsed, so that Signer (and Sign)
// need not parse it again for every message: parsing an RSA key costs
// more than signing with it.
func (k Key) Parsed() (Key, error) {
	k.signer = nil
	signer, err := k.Signer()
	if err != nil {
		return k, err
	}
	k.signer = signer
	return k, nil
}

// Generate makes a new key for domain under selector. The domain is
// normalised and the selector checked, so a Key is always safe to put into a
// DNS name and a DKIM-Signature header.
func Generate(domain, selector string, algo Algorithm, now time.Time) (Key, error) {
	d, err := NormaliseDomain(domain)
	if err != nil {
		return Key{}, err
	}
	s, err := normaliseSelector(selector)
	if err != nil {
		return Key{}, err
	}
	var priv crypto.Signer
	switch algo {
	case AlgorithmRSA2048:
		priv, err = rsa.GenerateKey(rand.Reader, rsaBits)
	case AlgorithmEd25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return Key{}, fmt.Errorf("dkim: unknown key algorithm %q (want %q or %q)", algo, AlgorithmRSA2048, AlgorithmEd25519)
	}
	if err != nil {
		return Key{}, fmt.Errorf("dkim: generating %s key: %w", algo, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return Key{}, fmt.Errorf("dkim: encoding %s key: %w", algo, err)
	}
	return Key{
		Domain:        d,
		Selector:      s,
		Algorithm:     algo,
		PrivateKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		Created:       now,
	}, nil
}

// Signer decodes the private key. It fails when the PEM is damaged or holds a
// different kind of key than Algorithm says, so a mix-up is caught before the
// published record and the signatures disagree.
func (k Key) Signer() (crypto.Signer, error) {
	if k.signer != nil {
		return k.signer, nil
	}
	block, _ := pem.Decode(k.PrivateKeyPEM)
	if block == nil {
		return nil, errors.New("dkim: private key is not PEM encoded")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("dkim: private key PEM type is %q, want \"PRIVATE KEY\" (PKCS#8)", block.Type)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("dkim: parsing private key: %w", err)
	}
	switch priv := parsed.(type) {
	case *rsa.PrivateKey:
		if k.Algorithm != AlgorithmRSA2048 {
			return nil, fmt.Errorf("dkim: key is RSA but its algorithm is recorded as %q", k.Algorithm)
		}
		if priv.N.BitLen() < 1024 {
			return nil, fmt.Errorf("dkim: RSA key has %d bits; receivers ignore keys under 1024 bits", priv.N.BitLen())
		}
		return priv, nil
	case ed25519.PrivateKey:
		if k.Algorithm != AlgorithmEd25519 {
			return nil, fmt.Errorf("dkim: key is Ed25519 but its algorithm is recorded as %q", k.Algorithm)
		}
		return priv, nil
	default:
		return nil, fmt.Errorf("dkim: unsupported private key type %T", parsed)
	}
}

// PublicRecord returns the TXT record value that publishes the public key,
// for example "v=DKIM1; k=ed25519; p=...". RSA keys are given as
// SubjectPublicKeyInfo, the form RFC 6376 verifiers expect.
func (k Key) PublicRecord() (string, error) {
	kind, p, err := k.publicKey()
	if err != nil {
		return "", err
	}
	return "v=DKIM1; k=" + kind + "; p=" + p, nil
}

// publicKey returns the k= and p= values of the key's DNS record.
func (k Key) publicKey() (kind, p string, err error) {
	signer, err := k.Signer()
	if err != nil {
		return "", "", err
	}
	switch pub := signer.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", "", fmt.Errorf("dkim: encoding public key: %w", err)
		}
		return "rsa", base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		// RFC 8463 publishes the raw 32-byte key, not an ASN.1 structure.
		return "ed25519", base64.StdEncoding.EncodeToString(pub), nil
	default:
		return "", "", fmt.Errorf("dkim: unsupported public key type %T", pub)
	}
}

// DefaultSelector returns a selector named after the month, such as
// "pr202611". A new key made in a later month gets a new selector, so the old
// record can stay published while mail signed with the old key is in flight.
func DefaultSelector(now time.Time) string {
	return "pr" + now.UTC().Format("200601")
}

// NormaliseDomain lower-cases a domain name, drops a trailing dot and checks
// that it is a plain ASCII host name (letters, digits, hyphens; labels of at
// most 63 bytes). Internationalised names must be given in their xn-- form.
func NormaliseDomain(domain string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if d == "" {
		return "", errors.New("dkim: empty domain name")
	}
	if len(d) > 253 {
		return "", fmt.Errorf("dkim: domain name %.40q... is longer than 253 bytes", d)
	}
	for _, label := range strings.Split(d, ".") {
		if err := checkLabel(label); err != nil {
			return "", fmt.Errorf("dkim: bad domain name %q: %w", domain, err)
		}
	}
	return d, nil
}

// normaliseSelector lower-cases a selector and checks it is one or more DNS
// labels, as RFC 6376 section 3.1 allows.
func normaliseSelector(selector string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(selector))
	if s == "" {
		return "", errors.New("dkim: empty selector")
	}
	if len(s) > 63*3 {
		return "", fmt.Errorf("dkim: selector %.40q... is too long", s)
	}
	for _, label := range strings.Split(s, ".") {
		if err := checkLabel(label); err != nil {
			return "", fmt.Errorf("dkim: bad selector %q: %w", selector, err)
		}
	}
	return s, nil
}

// checkLabel accepts one lower-case LDH label.
func checkLabel(label string) error {
	if label == "" {
		return errors.New("empty label")
	}
	if len(label) > 63 {
		return errors.New("label longer than 63 bytes")
	}
	if label[0] == '-' || label[len(label)-1] == '-' {
		return errors.New("label starts or ends with a hyphen")
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return fmt.Errorf("character %q not allowed (letters, digits and hyphens only)", c)
		}
	}
	return nil
}
