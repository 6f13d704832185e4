package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

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
	e.keys.clear() // the new key signs from the next message on
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

// signingKey is DKIMKey for delivery: from keyCache, with the private key
// parsed.
func (e *Engine) signingKey(ctx context.Context, domain string) (dkim.Key, error) {
	e.mu.Lock()
	version := e.version
	e.mu.Unlock()
	if k, err, ok := e.keys.get(domain, version); ok {
		return k, err
	}
	k, err := e.DKIMKey(ctx, domain)
	if err == nil {
		k, err = k.Parsed()
	}
	if err == nil || errors.Is(err, ErrNoDKIMKey) {
		// A passing failure (a busy database) is not remembered.
		e.keys.put(domain, version, k, err)
	}
	return k, err
}

// keyTTL is how long a looked-up DKIM key (or the absence of one) is used
// without asking the store again. Keys change in this process through
// GenerateDKIM, which empties the cache, and a settings change empties it
// too; keyTTL bounds how long a key made by another process (`postroom
// dkim generate` while the relay runs) waits to be used.
const keyTTL = 5 * time.Second

// keyCache remembers each From domain's signing key: looking it up and
// parsing it for every message was a tenth of a signed delivery's CPU.
type keyCache struct {
	mu  sync.Mutex
	m   map[string]cachedKey
	now func() time.Time // the wall clock, but for tests
}

type cachedKey struct {
	key     dkim.Key
	err     error // nil or ErrNoDKIMKey
	loaded  time.Time
	version int // of the settings in effect when it was loaded
}

// maxCachedKeys bounds the cache against mail from very many domains.
const maxCachedKeys = 1024

func newKeyCache() *keyCache { return &keyCache{m: make(map[string]cachedKey), now: time.Now} }

func (c *keyCache) get(domain string, version int) (dkim.Key, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.m[domain]
	if !ok || k.version != version || c.now().Sub(k.loaded) > keyTTL {
		return dkim.Key{}, nil, false
	}
	return k.key, k.err, true
}

func (c *keyCache) put(domain string, version int, key dkim.Key, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedKeys {
		clear(c.m)
	}
	c.m[domain] = cachedKey{key: key, err: err, loaded: c.now(), version: version}
}

func (c *keyCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
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
func (e *Engine) signed(ctx context.Context, body *outBody) (io.Reader, string, func()) {
	header, err := readHeader(body)
	// Lines over 998 octets are folded before signing (msgdata.FoldLongLines).
	plain := func(why string) (io.Reader, string, func()) {
		r, err := body.outbound()
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
	key, err := e.signingKey(ctx, domain)
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
		pw.CloseWithError(dkim.Sign(pw, body.outbound, key, now))
	}()
	return pr, fmt.Sprintf("signed d=%s s=%s (%s)", key.Domain, key.Selector, key.Algorithm), func() { pr.Close() }
}

// readHeader returns the header section of a body.
func readHeader(body *outBody) ([]byte, error) {
	if body.data != nil {
		return msgdata.SplitHeader(bytes.NewReader(body.data), maxOriginalHeader)
	}
	r, err := body.raw()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return msgdata.SplitHeader(r, maxOriginalHeader)
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
