package dkim

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// signedHeaders are the header fields Sign protects. Each is listed in h=
// once more than the message has it (RFC 6376 section 8.15, "over-signing"),
// so a receiver rejects the signature when someone adds a second From, or a
// Subject the message did not have, after it left the relay. Header fields
// not listed (Received, for one) may be added on the way without harm.
var signedHeaders = [...]string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}

// maxHeaderBytes bounds the header Sign keeps in memory. Real headers are a
// few kilobytes; this only stops a broken message from using unbounded memory.
const maxHeaderBytes = 1 << 20

// foldWidth is the line length the DKIM-Signature header is folded to
// (RFC 5322 section 2.1.1 recommends 78 characters).
const foldWidth = 78

// Sign writes the message with a DKIM-Signature header for key prepended.
//
// open is called twice: the first read feeds the signer, the second is copied
// to w unchanged after the signature header. Only the message header is held
// in memory, never the body. If the two reads differ (the source changed under
// us) Sign returns an error after writing, and w must be discarded.
//
// The signature uses relaxed/relaxed canonicalisation and SHA-256, has no l=
// (so nothing can be appended to the body) and no x= (receivers judge age
// themselves), and t= is now. The header line ends in CRLF, as SMTP mail does.
func Sign(w io.Writer, open func() (io.ReadCloser, error), key Key, now time.Time) error {
	if err := checkKeyNames(key); err != nil {
		return err
	}
	signer, err := key.Signer()
	if err != nil {
		return err
	}

	fields, bodyHash, digest, err := readForSigning(open, signer.Public())
	if err != nil {
		return err
	}
	sigField, err := signatureField(fields, bodyHash, key, signer, now)
	if err != nil {
		return err
	}

	if _, err := io.WriteString(w, sigField); err != nil {
		return fmt.Errorf("dkim: writing signed message: %w", err)
	}
	rc, err := open()
	if err != nil {
		return fmt.Errorf("dkim: reopening message: %w", err)
	}
	defer rc.Close()
	again := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, again), rc); err != nil {
		return fmt.Errorf("dkim: writing signed message: %w", err)
	}
	if !bytes.Equal(again.Sum(nil), digest) {
		return errors.New("dkim: message changed between the two reads; the signature would not verify")
	}
	return nil
}

// checkKeyNames refuses a Key whose domain or selector would not make a valid
// d= or s= tag (a damaged database row, say) rather than emit a broken header.
func checkKeyNames(key Key) error {
	d, err := NormaliseDomain(key.Domain)
	if err != nil {
		return err
	}
	s, err := normaliseSelector(key.Selector)
	if err != nil {
		return err
	}
	if d != key.Domain || s != key.Selector {
		return fmt.Errorf("dkim: key names %q/%q are not normalised (want %q/%q)", key.Domain, key.Selector, d, s)
	}
	return nil
}

// readForSigning reads the message once. It returns the header fields (each
// with its continuation lines and final CRLF), the relaxed body hash, and a
// SHA-256 of the raw bytes so the second read can be checked against it.
func readForSigning(open func() (io.ReadCloser, error), pub crypto.PublicKey) (fields []string, bodyHash string, digest []byte, err error) {
	rc, err := open()
	if err != nil {
		return nil, "", nil, fmt.Errorf("dkim: opening message: %w", err)
	}
	defer rc.Close()
	raw := sha256.New()
	br := bufio.NewReader(io.TeeReader(rc, raw))

	fields, err = readHeader(br)
	if err != nil {
		return nil, "", nil, err
	}
	bodyHash, err = hashBody(br, pub)
	if err != nil {
		return nil, "", nil, err
	}
	return fields, bodyHash, raw.Sum(nil), nil
}

// readHeader reads header fields up to the blank line (or the end of a
// message that has no body). Line ends may be CRLF or bare LF; fields are
// returned with CRLF, which is what canonicalisation needs.
func readHeader(br *bufio.Reader) ([]string, error) {
	var fields []string
	total := 0
	for {
		var line []byte
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			// Copy: ReadSlice's result is overwritten by the next read.
			line = append(line, chunk...)
			if total+len(line) > maxHeaderBytes {
				return nil, fmt.Errorf("dkim: message header is larger than %d bytes", maxHeaderBytes)
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		total += len(line)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("dkim: reading message header: %w", err)
		}
		text := strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r")
		if text == "" && (len(line) > 0 || err != nil) {
			// The blank line, or the end of a header-only message.
			break
		}
		if text[0] == ' ' || text[0] == '\t' {
			if len(fields) == 0 {
				// A verifier would fold this line into the DKIM-Signature
				// we prepend, so the message cannot be signed as it is.
				return nil, errors.New("dkim: message starts with an indented line, which is not a header field")
			}
			fields[len(fields)-1] += text + "\r\n"
		} else {
			fields = append(fields, text+"\r\n")
		}
		if err != nil { // io.EOF after a last line with no line end
			break
		}
	}
	return fields, nil
}

// hashBody returns the base64 relaxed body hash of what remains in br.
//
// go-msgauth's Signer does the body canonicalisation; it is given an empty
// header and a key that only knows its public half, because the signature it
// would make carries go-msgauth's own clock in t= (see the package comment).
// The bh= tag of its result is all that is used.
func hashBody(br io.Reader, pub crypto.PublicKey) (string, error) {
	s, err := msgauth.NewSigner(&msgauth.SignOptions{
		Domain:                 "body.invalid",
		Selector:               "body",
		Signer:                 publicOnly{pub},
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: msgauth.CanonicalizationRelaxed,
		BodyCanonicalization:   msgauth.CanonicalizationRelaxed,
		HeaderKeys:             []string{"From"},
	})
	if err != nil {
		return "", fmt.Errorf("dkim: body hasher: %w", err)
	}
	defer s.Close()
	if _, err := io.WriteString(s, "\r\n"); err != nil {
		return "", fmt.Errorf("dkim: hashing body: %w", err)
	}
	if _, err := io.Copy(s, br); err != nil {
		return "", fmt.Errorf("dkim: hashing body: %w", err)
	}
	if err := s.Close(); err != nil {
		return "", fmt.Errorf("dkim: hashing body: %w", err)
	}
	_, tags, _ := strings.Cut(s.Signature(), ":")
	bh, ok := tagValue(tags, "bh")
	if !ok || bh == "" {
		return "", errors.New("dkim: body hasher returned no bh= tag")
	}
	return bh, nil
}

// publicOnly satisfies crypto.Signer for the body hasher: go-msgauth needs
// the public key to name the algorithm, and its signature is thrown away.
type publicOnly struct{ pub crypto.PublicKey }

func (p publicOnly) Public() crypto.PublicKey { return p.pub }

func (publicOnly) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) { return nil, nil }

// tagValue finds tag in a tag list ("k=v; k=v", RFC 6376 section 3.2),
// with folding and whitespace removed from the value.
func tagValue(list, tag string) (string, bool) {
	for part := range strings.SplitSeq(list, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.TrimSpace(k) == tag {
			return strings.Join(strings.Fields(v), ""), true
		}
	}
	return "", false
}

// signatureField builds and signs the DKIM-Signature header field.
func signatureField(fields []string, bodyHash string, key Key, signer crypto.Signer, now time.Time) (string, error) {
	var keyAlgo string
	var opts crypto.SignerOpts
	switch signer.Public().(type) {
	case *rsa.PublicKey:
		keyAlgo, opts = "rsa", crypto.SHA256
	case ed25519.PublicKey:
		// RFC 8463: Ed25519 signs the SHA-256 digest as its message, so the
		// signer must not be told a hash was applied.
		keyAlgo, opts = "ed25519", crypto.Hash(0)
	default:
		return "", fmt.Errorf("dkim: unsupported public key type %T", signer.Public())
	}

	h := headerList(fields)
	if !hasField(fields, "From") {
		return "", errors.New("dkim: message has no From header, which DKIM must sign")
	}

	var f folder
	f.sb.WriteString("DKIM-Signature:")
	f.col = len("DKIM-Signature:")
	f.add(" ", "v=1;")
	f.add(" ", "a="+keyAlgo+"-sha256;")
	f.add(" ", "c=relaxed/relaxed;")
	f.add(" ", "d="+key.Domain+";")
	f.add(" ", "s="+key.Selector+";")
	f.add(" ", "t="+strconv.FormatInt(now.Unix(), 10)+";")
	for i, name := range h {
		switch {
		case i == 0:
			f.add(" ", "h="+name+":")
		case i == len(h)-1:
			f.add("", name+";")
		default:
			f.add("", name+":")
		}
	}
	f.add(" ", "bh="+bodyHash+";")
	f.add(" ", "b=")
	unsigned := f.sb.String()

	digest := sha256.New()
	picked := make(map[string]int)
	for _, name := range h {
		if field, ok := pickField(fields, name, picked); ok {
			io.WriteString(digest, canonicalHeader(field))
		}
	}
	io.WriteString(digest, strings.TrimSuffix(canonicalHeader(unsigned), "\r\n"))

	sig, err := signer.Sign(rand.Reader, digest.Sum(nil), opts)
	if err != nil {
		return "", fmt.Errorf("dkim: signing: %w", err)
	}
	b64 := base64.StdEncoding.EncodeToString(sig)
	for len(b64) > 0 {
		n := min(len(b64), foldWidth-2)
		if room := foldWidth - f.col; room > 8 && room < n {
			n = room
		}
		f.add("", b64[:n])
		b64 = b64[n:]
	}
	return f.sb.String() + "\r\n", nil
}

// headerList returns the h= names: each of signedHeaders as many times as the
// message has it, plus once more.
func headerList(fields []string) []string {
	var h []string
	for _, name := range signedHeaders {
		n := 1
		for _, field := range fields {
			if strings.EqualFold(fieldName(field), name) {
				n++
			}
		}
		for range n {
			h = append(h, strings.ToLower(name))
		}
	}
	return h
}

func hasField(fields []string, name string) bool {
	for _, field := range fields {
		if strings.EqualFold(fieldName(field), name) {
			return true
		}
	}
	return false
}

// fieldName is the name of a header field, as verifiers compare it.
func fieldName(field string) string {
	name, _, _ := strings.Cut(field, ":")
	return strings.TrimSpace(name)
}

// pickField returns the next instance of name, from the bottom of the header
// up (RFC 6376 section 5.4.2), and false once all are used: an over-signed
// name then adds nothing to the hash, as verifiers also do.
func pickField(fields []string, name string, picked map[string]int) (string, bool) {
	skip := picked[name]
	for i := len(fields) - 1; i >= 0; i-- {
		if !strings.EqualFold(fieldName(fields[i]), name) {
			continue
		}
		if skip == 0 {
			picked[name]++
			return fields[i], true
		}
		skip--
	}
	return "", false
}

// canonicalHeader applies relaxed header canonicalisation (RFC 6376 section
// 3.4.2): lower-case name, unfolded value with runs of whitespace made one
// space and none at either end.
func canonicalHeader(field string) string {
	name, value, _ := strings.Cut(field, ":")
	value = strings.Join(strings.FieldsFunc(value, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\n'
	}), " ")
	return strings.ToLower(strings.TrimSpace(name)) + ":" + value + "\r\n"
}

// folder writes a header value as folded lines of at most foldWidth
// characters, breaking only where whitespace is allowed.
type folder struct {
	sb  strings.Builder
	col int
}

// add appends atom, preceded by sep if it fits on the current line, else on
// a new continuation line.
func (f *folder) add(sep, atom string) {
	if f.col+len(sep)+len(atom) > foldWidth && f.col > 1 {
		f.sb.WriteString("\r\n\t")
		f.col = 1
		sep = ""
	}
	f.sb.WriteString(sep)
	f.sb.WriteString(atom)
	f.col += len(sep) + len(atom)
}
