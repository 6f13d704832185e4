package deliver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// RouteKind says where a Route came from, which decides its TLS and AUTH
// policy.
type RouteKind int

const (
	// RouteMX is delivery to the domain's MX hosts (or its implicit MX, or
	// an address literal); Config.TLS applies.
	RouteMX RouteKind = iota
	// RouteStatic is a next hop from Config.Routes; Config.TLS applies.
	RouteStatic
	// RouteSmarthost is the smarthost; Config.SmarthostTLS and AUTH apply.
	RouteSmarthost
)

// String names k for logs.
func (k RouteKind) String() string {
	switch k {
	case RouteMX:
		return "mx"
	case RouteStatic:
		return "route"
	case RouteSmarthost:
		return "smarthost"
	}
	return fmt.Sprintf("RouteKind(%d)", int(k))
}

// Route is where mail for one recipient domain goes.
type Route struct {
	// Key identifies the next hop, for grouping recipients and reusing
	// connections: "mx:example.com", "route:host:port",
	// "smarthost:host:port", "literal:192.0.2.1".
	Key  string
	Kind RouteKind
	// Hosts are tried in order.
	Hosts []Hop
}

// Hop is one next-hop host.
type Hop struct {
	// Host is the name a certificate must match (an MX host name without
	// the trailing dot, or an IP address).
	Host string
	Port int
	// Addrs, when non-nil, are Host's addresses already looked up (for an
	// implicit MX); otherwise Dial resolves Host.
	Addrs []string
}

// Addr returns "host:port".
func (h Hop) Addr() string { return net.JoinHostPort(h.Host, strconv.Itoa(h.Port)) }

// Route resolves a recipient domain to its next hops: Routes first, then the
// smarthost, then MX records (lowest preference first, equal preferences
// shuffled so load spreads as RFC 5321 section 5.1 asks). A domain without MX
// records is its own implicit MX (its A/AAAA records). A null MX (RFC 7505)
// or a domain that does not exist is a permanent error; any other DNS failure
// is temporary.
func (c *Config) Route(ctx context.Context, domain string) (Route, error) {
	cfg := c.withDefaults()
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	if d == "" {
		return Route{}, &Error{Permanent: true, Err: errors.New("empty recipient domain")}
	}
	if hp, ok := cfg.Routes[d]; ok {
		hop, err := parseHop(hp, cfg.Port)
		if err != nil {
			// A broken setting is the administrator's to fix; the mail
			// waits for it instead of bouncing.
			return Route{}, &Error{Err: fmt.Errorf("route for %s: %w", d, err)}
		}
		return Route{Key: "route:" + hop.Addr(), Kind: RouteStatic, Hosts: []Hop{hop}}, nil
	}
	if cfg.Smarthost != "" {
		hop, err := parseHop(cfg.Smarthost, 0)
		if err != nil {
			return Route{}, &Error{Err: fmt.Errorf("smarthost: %w", err)}
		}
		return Route{Key: "smarthost:" + hop.Addr(), Kind: RouteSmarthost, Hosts: []Hop{hop}}, nil
	}
	if strings.HasPrefix(d, "[") {
		return literalRoute(d, cfg.Port)
	}
	ascii, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return Route{}, &Error{Permanent: true, Err: fmt.Errorf("recipient domain %q is not a valid domain name: %w", d, err)}
	}
	// Rooted names, so that the resolver's search list never turns a
	// missing domain into a query for "domain.our-lan.local".
	mxs, err := cfg.Resolver.LookupMX(ctx, ascii+".")
	if err != nil && len(mxs) == 0 {
		if !isNotFound(err) {
			return Route{}, &Error{Err: fmt.Errorf("looking up MX of %s: %w", ascii, err)}
		}
		mxs = nil // no MX records (or no domain): try the implicit MX below
	}
	key := "mx:" + ascii
	if len(mxs) == 0 {
		addrs, err := cfg.Resolver.LookupHost(ctx, ascii+".")
		if err != nil || len(addrs) == 0 {
			if err == nil || isNotFound(err) {
				return Route{}, &Error{Permanent: true, Err: fmt.Errorf("domain %s has no MX and no address records (it does not exist or does not take mail): %w", ascii, orNoAddrs(err))}
			}
			return Route{}, &Error{Err: fmt.Errorf("looking up addresses of %s: %w", ascii, err)}
		}
		return Route{Key: key, Kind: RouteMX, Hosts: []Hop{{Host: ascii, Port: cfg.Port, Addrs: addrs}}}, nil
	}
	hosts, err := orderMX(mxs, cfg.Port)
	if err != nil {
		return Route{}, &Error{Permanent: true, Err: fmt.Errorf("domain %s: %w", ascii, err)}
	}
	return Route{Key: key, Kind: RouteMX, Hosts: hosts}, nil
}

// errNullMX is the text of RFC 7505's verdict.
var errNullMX = errors.New("the domain publishes a null MX (RFC 7505): it accepts no mail")

// orderMX sorts MX records by preference, shuffling equal preferences, and
// drops duplicates. A lone null MX ("." ) is an error; a null MX mixed with
// real ones is a misconfiguration RFC 7505 forbids, so the real ones win.
func orderMX(mxs []*net.MX, port int) ([]Hop, error) {
	var recs []*net.MX
	for _, mx := range mxs {
		if mx == nil {
			continue
		}
		host := strings.TrimSuffix(strings.ToLower(mx.Host), ".")
		if host == "" {
			continue
		}
		recs = append(recs, &net.MX{Host: host, Pref: mx.Pref})
	}
	if len(recs) == 0 {
		return nil, errNullMX
	}
	rand.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	slices.SortStableFunc(recs, func(a, b *net.MX) int { return cmp.Compare(a.Pref, b.Pref) })
	seen := make(map[string]bool, len(recs))
	hops := make([]Hop, 0, len(recs))
	for _, r := range recs {
		if seen[r.Host] {
			continue
		}
		seen[r.Host] = true
		hops = append(hops, Hop{Host: r.Host, Port: port})
	}
	return hops, nil
}

// literalRoute handles address literals ("[192.0.2.1]", "[IPv6:2001:db8::1]",
// RFC 5321 section 4.1.3), which are delivered to directly.
func literalRoute(d string, port int) (Route, error) {
	inner := strings.TrimSuffix(strings.TrimPrefix(d, "["), "]")
	inner = strings.TrimPrefix(inner, "ipv6:")
	ip, err := netip.ParseAddr(inner)
	if err != nil || ip.Zone() != "" || !strings.HasSuffix(d, "]") {
		return Route{}, &Error{Permanent: true, Err: fmt.Errorf("bad address literal %q", d)}
	}
	return Route{Key: "literal:" + ip.String(), Kind: RouteMX, Hosts: []Hop{{Host: ip.String(), Port: port}}}, nil
}

// parseHop reads "host:port", or "host" with defaultPort when that is > 0.
func parseHop(hp string, defaultPort int) (Hop, error) {
	host, portStr, err := net.SplitHostPort(hp)
	if err != nil {
		if defaultPort <= 0 || strings.Count(hp, ":") > 1 && !strings.HasPrefix(hp, "[") {
			return Hop{}, fmt.Errorf("%q is not host:port: %w", hp, err)
		}
		host, portStr = strings.Trim(hp, "[]"), strconv.Itoa(defaultPort)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return Hop{}, fmt.Errorf("%q has a bad port", hp)
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return Hop{}, fmt.Errorf("%q has no host", hp)
	}
	return Hop{Host: host, Port: port}, nil
}

// isNotFound reports an authoritative "no such name / no such record".
func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

func orNoAddrs(err error) error {
	if err != nil {
		return err
	}
	return errors.New("no addresses")
}
