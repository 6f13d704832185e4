package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"

	"postroom/engine/dkim"
	"postroom/engine/msgdata"
	"postroom/storage"
)

// ErrNoDKIMKey is returned when a domain has no DKIM key.
var ErrNoDKIMKey = errors.New("no DKIM key for this domain; create one with `postroom dkim generate DOMAIN`")

// GenerateDKIM creates and stores a DKIM key for domain. An empty selector
// picks one from the date, so a rotation gets a new selector while the old
// key stays until it is removed.
func (e *Engine) GenerateDKIM(ctx context.Context, domain, selector string, algo dkim.Algorithm) (dkim.Key, error) {
	now := e.now()
	if selector == "" {
		selector = dkim.DefaultSelector(now)
	}
	k, err := dkim.Generate(domain, selector, algo, now)
	if err != nil {
		return k, err
	}
	err = e.store.SaveDKIMKey(ctx, storage.DKIMKey{Domain: k.Domain, Selector: k.Selector, Algorithm: string(k.Algorithm),
		PrivateKeyPEM: k.PrivateKeyPEM, Created: k.Created})
	if err != nil {
		return k, err
	}
	e.log.Info("DKIM key created", "domain", k.Domain, "selector", k.Selector, "algorithm", k.Algorithm)
	return k, nil
}

// DKIMKey returns the key that signs mail from domain: the newest one.
func (e *Engine) DKIMKey(ctx context.Context, domain string) (dkim.Key, error) {
	d, err := dkim.NormaliseDomain(domain)
	if err != nil {
		return dkim.Key{}, err
	}
	keys, err := e.store.DKIMKeys(ctx, d)
	if err != nil {
		return dkim.Key{}, err
	}
	if len(keys) == 0 {
		return dkim.Key{}, fmt.Errorf("%s: %w", d, ErrNoDKIMKey)
	}
	k := keys[0]
	return dkim.Key{Domain: k.Domain, Selector: k.Selector, Algorithm: dkim.Algorithm(k.Algorithm), PrivateKeyPEM: k.PrivateKeyPEM, Created: k.Created}, nil
}

// sourceIPs is what SPF must cover: the configured source address, when
// there is one.
func (e *Engine) sourceIPs() []netip.Addr {
	if ip, err := netip.ParseAddr(e.Settings().Delivery.SourceIP); err == nil {
		return []netip.Addr{ip}
	}
	return nil
}

// DNSRecords returns the records to publish for domain: DKIM, an SPF
// suggestion and a DMARC starting point.
func (e *Engine) DNSRecords(ctx context.Context, domain, reportAddress string) ([]dkim.Record, error) {
	k, err := e.DKIMKey(ctx, domain)
	if err != nil {
		return nil, err
	}
	if reportAddress == "" {
		reportAddress = "postmaster@" + k.Domain
	}
	return dkim.Records(k, e.sourceIPs(), reportAddress)
}

// CheckDNS looks up what is published for domain and says, record by
// record, whether it matches.
func (e *Engine) CheckDNS(ctx context.Context, domain string) ([]dkim.Check, error) {
	k, err := e.DKIMKey(ctx, domain)
	if err != nil {
		return nil, err
	}
	var r dkim.Resolver = net.DefaultResolver
	if server := e.Settings().Delivery.Resolver; server != "" {
		r = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}}
	}
	if e.opts.TXTResolver != nil {
		r = e.opts.TXTResolver
	}
	return dkim.CheckDNS(ctx, r, k, e.sourceIPs()), nil
}

// signed wraps a message body in a DKIM signature when its From domain has
// a key. It returns the body to send, what to record about signing, and a
// function to call when done with the body.
func (e *Engine) signed(ctx context.Context, messageID int64, body io.ReadCloser) (io.Reader, string, func()) {
	header, err := msgdata.SplitHeader(body, maxOriginalHeader)
	body.Close()
	// Lines over 998 octets are folded before signing (msgdata.FoldLongLines).
	open := func() (io.ReadCloser, error) { return e.openOutbound(ctx, messageID) }
	plain := func(why string) (io.Reader, string, func()) {
		r, err := open()
		if err != nil {
			return errReader{err}, why, func() {}
		}
		return r, why, func() { r.Close() }
	}
	if err != nil && !errors.Is(err, msgdata.ErrHeaderTruncated) {
		return plain("unsigned: the header could not be read")
	}
	domain, err := dkim.FromDomain(header)
	if err != nil {
		return plain("unsigned: no usable From header")
	}
	if _, err := dkim.NormaliseDomain(domain); err != nil {
		return plain("unsigned: no usable From domain")
	}
	key, err := e.DKIMKey(ctx, domain)
	switch {
	case errors.Is(err, ErrNoDKIMKey):
		return plain("unsigned: no DKIM key for " + domain)
	case err != nil:
		// The key may exist: sending unsigned now could land the mail
		// in spam, so the send fails and the mail is deferred.
		return errReader{fmt.Errorf("looking up the DKIM key of %s: %w", domain, err)}, "unsigned: the DKIM key could not be read", func() {}
	}
	pr, pw := io.Pipe()
	now := e.now()
	go func() {
		pw.CloseWithError(dkim.Sign(pw, open, key, now))
	}()
	return pr, fmt.Sprintf("signed d=%s s=%s (%s)", key.Domain, key.Selector, key.Algorithm), func() { pr.Close() }
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
