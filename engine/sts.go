package engine

// MTA-STS (RFC 8461) at delivery: before a group of recipients goes to
// its domain's MX hosts, the domain's policy (engine/mtasts) decides:
//
//   - enforce: only MX hosts the policy names are tried, with STARTTLS and a
//     certificate valid for the MX name (deliver.TLSRequired, whatever
//     delivery.tls says: the recipient's domain asked for it). No matching
//     MX, or no verified TLS, defers the mail with an error that names the
//     policy.
//   - testing: mail goes as it would without a policy; what enforce would
//     have refused is logged.
//   - none, or no policy: nothing changes.
//
// Only direct MX delivery is concerned: static routes and the smarthost are
// next hops the administrator chose, and address literals have no MX.
// The attempt log's tls field gains "MTA-STS enforce" or "MTA-STS testing".

import (
	"context"
	"fmt"
	"strings"

	"postroom/engine/deliver"
	"postroom/engine/mtasts"
)

func newSTSCache(opts Options) *mtasts.Cache {
	f := opts.STSFetcher
	if f == nil {
		f = mtasts.NewHTTPFetcher(opts.RootCAs)
	}
	return mtasts.NewCache(f, opts.Now)
}

// stsResolver is where the _mta-sts TXT record is looked up: the TXT
// resolver of Options, else the delivery resolver when it can do TXT
// (the system's, or delivery.resolver). A test resolver that answers only
// MX and address queries turns MTA-STS off rather than asking real DNS.
func (e *Engine) stsResolver(cfg *deliver.Config) mtasts.Resolver {
	if e.opts.TXTResolver != nil {
		return e.opts.TXTResolver
	}
	if r, ok := cfg.Resolver.(mtasts.Resolver); ok {
		return r
	}
	return nil
}

// stsRoute is what a policy did to one delivery group.
type stsRoute struct {
	domain string
	policy *mtasts.Policy // nil when no policy applies
}

// note is the attempt log's mention of the policy.
func (r stsRoute) note() string {
	if r.policy == nil {
		return ""
	}
	return "MTA-STS " + r.policy.Mode.String()
}

// fact adds the policy to the TLS fact of an attempt.
func (r stsRoute) fact(tls string) string {
	switch {
	case r.policy == nil:
		return tls
	case tls == "":
		return "no TLS, " + r.note()
	}
	return tls + ", " + r.note()
}

// explain says, for a connection that failed under enforce, that the
// policy is why no other way was tried.
func (r stsRoute) explain(err error) error {
	if r.policy == nil || r.policy.Mode != mtasts.ModeEnforce {
		return err
	}
	return fmt.Errorf("MTA-STS policy of %s (enforce) requires TLS with a certificate valid for the MX name: %w", r.domain, err)
}

// applySTS looks up the policy of a group's domain and applies it to the
// route and the TLS mode. An error defers the group.
func (e *Engine) applySTS(ctx context.Context, cfg *deliver.Config, route *deliver.Route, domain string) (stsRoute, error) {
	out := stsRoute{domain: domain}
	if route.Kind != deliver.RouteMX || !strings.HasPrefix(route.Key, "mx:") {
		return out, nil
	}
	r := e.stsResolver(cfg)
	if r == nil {
		return out, nil
	}
	ascii := strings.TrimPrefix(route.Key, "mx:")
	p, err := e.sts.Lookup(ctx, r, ascii)
	if err != nil {
		// RFC 8461 section 5.1: without a policy the domain is treated
		// as having none (or the cached one stays in force).
		e.log.Warn("MTA-STS policy could not be checked", "domain", ascii, "err", err, "cached_policy_in_force", p != nil)
	}
	if p == nil || p.Mode == mtasts.ModeNone {
		return out, nil
	}
	out.policy = p
	var allowed, refused []deliver.Hop
	var refusedNames []string
	for _, h := range route.Hosts {
		if p.Matches(h.Host) {
			allowed = append(allowed, h)
		} else {
			refused = append(refused, h)
			refusedNames = append(refusedNames, h.Host)
		}
	}
	if p.Mode == mtasts.ModeTesting {
		if len(refused) > 0 {
			e.log.Warn("MTA-STS testing: under enforce these MX hosts would not be used", "domain", ascii,
				"mx", strings.Join(refusedNames, " "), "policy_mx", strings.Join(p.MX, " "))
		}
		return out, nil
	}
	if len(allowed) == 0 {
		return out, &deliver.Error{Err: fmt.Errorf("MTA-STS policy of %s (enforce) allows only MX %s; none of its MX hosts (%s) matches",
			ascii, strings.Join(p.MX, ", "), strings.Join(refusedNames, ", "))}
	}
	if len(refused) > 0 {
		e.log.Info("MTA-STS enforce: MX hosts not in the policy are skipped", "domain", ascii, "mx", strings.Join(refusedNames, " "))
	}
	route.Hosts = allowed
	cfg.TLS = deliver.TLSRequired
	return out, nil
}

// observe logs, in testing mode, a connection that enforce would have
// refused for its TLS.
func (r stsRoute) observe(e *Engine, info deliver.ConnInfo) {
	if r.policy == nil || r.policy.Mode != mtasts.ModeTesting {
		return
	}
	switch {
	case !info.TLS:
		e.log.Warn("MTA-STS testing: delivering without TLS; under enforce this would be deferred", "domain", r.domain,
			"host", info.Host, "tls_error", info.TLSError)
	case !info.CertVerified:
		e.log.Warn("MTA-STS testing: the certificate does not verify for the MX name; under enforce this would be deferred",
			"domain", r.domain, "host", info.Host)
	}
}
