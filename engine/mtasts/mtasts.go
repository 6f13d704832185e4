// Package mtasts implements the sending side of SMTP MTA Strict Transport
// Security (RFC 8461): finding a recipient domain's policy, fetching it over
// HTTPS, caching it, and telling which MX hosts it allows.
//
// Discovery follows RFC 8461 sections 3 and 5.1:
//
//  1. Look up the TXT record at _mta-sts.DOMAIN. Exactly one record starting
//     with "v=STSv1" must be there, carrying an "id".
//  2. A cached, unexpired policy with the same id is used as it is: no fetch.
//  3. Otherwise the policy is fetched from
//     https://mta-sts.DOMAIN/.well-known/mta-sts.txt (certificate verified,
//     no redirects, status 200, text/plain) and cached for its max_age.
//  4. When the record is missing or the fetch fails, an unexpired cached
//     policy stays in force: an attacker who can remove the record or block
//     the HTTPS fetch must not be able to turn TLS off for a domain whose
//     policy we have seen. Without a cached policy the domain has none.
//
// The cache lives in memory: after a restart each domain's policy is
// fetched again at its first delivery. A fetch that failed is not retried
// for a few minutes, so a domain with a broken policy server costs one
// timeout per few minutes, not one per delivery.
package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Mode is a policy's mode.
type Mode int

const (
	// ModeNone: the domain has withdrawn its policy; nothing is enforced.
	ModeNone Mode = iota
	// ModeTesting: failures are to be reported, not acted upon.
	ModeTesting
	// ModeEnforce: only MX hosts matching the policy, only with TLS and a
	// verified certificate.
	ModeEnforce
)

// String returns the policy-file spelling of m.
func (m Mode) String() string {
	switch m {
	case ModeNone:
		return "none"
	case ModeTesting:
		return "testing"
	case ModeEnforce:
		return "enforce"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// MaxMaxAge is the largest max_age RFC 8461 allows (about a year).
const MaxMaxAge = 31557600 * time.Second

// maxPolicyBytes bounds a policy body; real ones are a few hundred bytes.
const maxPolicyBytes = 64 << 10

// Policy is one domain's MTA-STS policy.
type Policy struct {
	Domain string
	// ID is the id of the TXT record the policy was fetched for.
	ID     string
	Mode   Mode
	MX     []string // patterns: "mx.example.net" or "*.example.net"
	MaxAge time.Duration
	// Expires is when the cached policy must be fetched again.
	Expires time.Time
}

// Matches reports whether an MX host name is allowed by the policy: equal
// to a pattern, or matching a "*." pattern in exactly one leftmost label
// (RFC 8461 section 4.1). Case and a trailing dot do not matter.
func (p *Policy) Matches(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, pat := range p.MX {
		pat = strings.TrimSuffix(strings.ToLower(pat), ".")
		if suffix, ok := strings.CutPrefix(pat, "*."); ok {
			label, rest, found := strings.Cut(host, ".")
			if found && label != "" && rest == suffix {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// ParsePolicy reads a policy body (RFC 8461 section 3.2). Lines end in LF or
// CRLF; unknown keys are ignored; version, mode and max_age are required,
// and at least one mx unless the mode is none.
func ParsePolicy(body []byte) (*Policy, error) {
	p := &Policy{}
	var haveVersion, haveMode, haveMaxAge bool
	for line := range strings.SplitSeq(string(body), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("policy line %q is not \"key: value\"", clip(line))
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "version":
			if haveVersion {
				continue
			}
			if value != "STSv1" {
				return nil, fmt.Errorf("policy version %q is not STSv1", clip(value))
			}
			haveVersion = true
		case "mode":
			if haveMode {
				continue
			}
			switch value {
			case "enforce":
				p.Mode = ModeEnforce
			case "testing":
				p.Mode = ModeTesting
			case "none":
				p.Mode = ModeNone
			default:
				return nil, fmt.Errorf("policy mode %q is not enforce, testing or none", clip(value))
			}
			haveMode = true
		case "max_age":
			if haveMaxAge {
				continue
			}
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil || len(value) > 10 || time.Duration(n)*time.Second > MaxMaxAge {
				return nil, fmt.Errorf("policy max_age %q is not a number of seconds up to %d", clip(value), int(MaxMaxAge/time.Second))
			}
			p.MaxAge = time.Duration(n) * time.Second
			haveMaxAge = true
		case "mx":
			if !validPattern(value) {
				return nil, fmt.Errorf("policy mx %q is not a host name or *.domain pattern", clip(value))
			}
			p.MX = append(p.MX, strings.ToLower(value))
		}
	}
	switch {
	case !haveVersion:
		return nil, errors.New("policy has no version")
	case !haveMode:
		return nil, errors.New("policy has no mode")
	case !haveMaxAge:
		return nil, errors.New("policy has no max_age")
	case p.Mode != ModeNone && len(p.MX) == 0:
		return nil, fmt.Errorf("policy in %s mode lists no mx", p.Mode)
	}
	return p, nil
}

// validPattern accepts a host name, optionally with "*." as its whole
// first label.
func validPattern(s string) bool {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "*."), ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}

// ParseRecord reads the TXT record at _mta-sts.DOMAIN ("v=STSv1; id=...;")
// and returns its id (RFC 8461 section 3.1).
func ParseRecord(txt string) (id string, err error) {
	fields := strings.Split(txt, ";")
	if strings.TrimSpace(fields[0]) != "v=STSv1" {
		return "", errors.New("the record does not start with v=STSv1")
	}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		if strings.TrimSpace(k) == "id" && id == "" {
			id = strings.TrimSpace(v)
		}
	}
	if id == "" || len(id) > 32 || strings.IndexFunc(id, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) >= 0 {
		return "", fmt.Errorf("the record's id %q is not 1 to 32 letters and digits", clip(id))
	}
	return id, nil
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// Resolver answers the TXT lookup; *net.Resolver satisfies it.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Fetcher fetches a domain's policy body.
type Fetcher interface {
	Fetch(ctx context.Context, domain string) ([]byte, error)
}

// FetchTimeout bounds one policy fetch when the context has no earlier
// deadline.
const FetchTimeout = 30 * time.Second

// HTTPFetcher fetches policies from https://mta-sts.DOMAIN/.well-known/mta-sts.txt
// as RFC 8461 section 3.3 asks: the certificate must verify for the
// mta-sts host name, redirects are not followed, only a 200 with a
// text/plain body counts.
type HTTPFetcher struct {
	Client *http.Client
}

// NewHTTPFetcher returns a fetcher verifying certificates against roots
// (nil: the system's).
func NewHTTPFetcher(roots *x509.CertPool) *HTTPFetcher {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	tr.Proxy = nil // a proxy would see (and could alter) what we trust
	return &HTTPFetcher{Client: &http.Client{
		Transport: tr,
		Timeout:   FetchTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// PolicyURL is where a domain's policy is published.
func PolicyURL(domain string) string {
	return "https://mta-sts." + strings.TrimSuffix(domain, ".") + "/.well-known/mta-sts.txt"
}

// Fetch implements Fetcher.
func (f *HTTPFetcher) Fetch(ctx context.Context, domain string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, PolicyURL(domain), nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", req.URL, resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("%s is %q, not text/plain", req.URL, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", req.URL, err)
	}
	if len(body) > maxPolicyBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", req.URL, maxPolicyBytes)
	}
	return body, nil
}

const (
	// retryFailedFetch is how long a failed fetch is remembered.
	retryFailedFetch = 5 * time.Minute
	// maxEntries bounds the cache; past it, expired entries go first.
	maxEntries = 10000
)

// Cache finds and caches policies. It is safe for concurrent use.
type Cache struct {
	fetcher Fetcher
	now     func() time.Time

	mu      sync.Mutex
	entries map[string]*entry
}

type entry struct {
	policy   *Policy   // nil: none known
	failedID string    // the record id whose fetch failed
	failedAt time.Time // when
	failure  error
}

// NewCache returns an empty cache using fetcher; now is the clock (nil:
// time.Now).
func NewCache(fetcher Fetcher, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{fetcher: fetcher, now: now, entries: make(map[string]*entry)}
}

// Lookup returns the policy in force for domain, or nil when it has none.
// A non-nil error says why the current policy could not be found out (a DNS
// failure, a failed fetch, a bad policy); the policy returned with it is
// the cached one still in force, or nil.
func (c *Cache) Lookup(ctx context.Context, r Resolver, domain string) (*Policy, error) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	now := c.now()
	cached := c.cached(domain, now)

	id, err := lookupID(ctx, r, domain)
	switch {
	case err != nil:
		return cached, err
	case id == "":
		return cached, nil
	case cached != nil && cached.ID == id:
		return cached, nil
	}

	c.mu.Lock()
	if e := c.entries[domain]; e != nil && e.failedID == id && now.Sub(e.failedAt) < retryFailedFetch {
		c.mu.Unlock()
		return cached, e.failure
	}
	c.mu.Unlock()

	p, err := c.fetch(ctx, domain)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[domain]
	if e == nil {
		c.makeRoom(now)
		e = &entry{}
		c.entries[domain] = e
	}
	if err != nil {
		e.failedID, e.failedAt, e.failure = id, now, err
		return cached, err
	}
	p.Domain, p.ID, p.Expires = domain, id, now.Add(p.MaxAge)
	e.policy, e.failedID, e.failure = p, "", nil
	return p, nil
}

// cached returns the unexpired cached policy of domain, or nil.
func (c *Cache) cached(domain string, now time.Time) *Policy {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[domain]; e != nil && e.policy != nil && now.Before(e.policy.Expires) {
		return e.policy
	}
	return nil
}

func (c *Cache) fetch(ctx context.Context, domain string) (*Policy, error) {
	body, err := c.fetcher.Fetch(ctx, domain)
	if err != nil {
		return nil, fmt.Errorf("fetching the MTA-STS policy of %s: %w", domain, err)
	}
	p, err := ParsePolicy(body)
	if err != nil {
		return nil, fmt.Errorf("the MTA-STS policy of %s is not valid: %w", domain, err)
	}
	return p, nil
}

// makeRoom drops entries when the cache is full: expired ones first, then
// any. Called with mu held.
func (c *Cache) makeRoom(now time.Time) {
	if len(c.entries) < maxEntries {
		return
	}
	for d, e := range c.entries {
		if e.policy == nil || !now.Before(e.policy.Expires) {
			delete(c.entries, d)
		}
	}
	for d := range c.entries {
		if len(c.entries) < maxEntries {
			break
		}
		delete(c.entries, d)
	}
}

// lookupID returns the id of the domain's one STSv1 record, or "" when
// there is none (or not exactly one valid one, which RFC 8461 treats the
// same).
func lookupID(ctx context.Context, r Resolver, domain string) (string, error) {
	txts, err := r.LookupTXT(ctx, "_mta-sts."+domain+".")
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return "", nil
		}
		return "", fmt.Errorf("looking up the MTA-STS record of %s: %w", domain, err)
	}
	var records []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1") {
			records = append(records, t)
		}
	}
	if len(records) != 1 {
		return "", nil
	}
	id, err := ParseRecord(records[0])
	if err != nil {
		return "", nil
	}
	return id, nil
}
