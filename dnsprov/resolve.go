package dnsprov

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Target is one place to send SIP requests to; ResolveSIP returns them in
// the order RFC 3263 says to try them. JSON names are stable.
type Target struct {
	Transport string `json:"transport"` // udp, tcp, tls, ws or wss
	Host      string `json:"host"`      // SRV target (or the domain itself), no trailing dot
	Addr      string `json:"addr"`      // ip:port
	Priority  uint16 `json:"priority"`  // SRV priority; 0 without SRV
	Weight    uint16 `json:"weight"`    // SRV weight; 0 without SRV
}

// ResolveSIP locates the SIP servers of domain the way a phone does
// (RFC 3263 §4): NAPTR records (order, then preference) lead to SRV names,
// SRV records (priority, then weighted random, RFC 2782) to hosts, and
// A/AAAA records to addresses. Without usable NAPTRs it tries the SRV
// names of TLS, TCP and UDP; without SRV, the domain's addresses on 5060
// over UDP (§4.2). domain may carry a port ("host:5080"), which skips NAPTR
// and SRV (§4.1), or be an IP literal. resolverAddr is the DNS server to
// ask (host[:port]); empty means the system resolver (/etc/resolv.conf).
func ResolveSIP(ctx context.Context, resolverAddr, domain string) ([]Target, error) {
	r, err := newResolver(resolverAddr)
	if err != nil {
		return nil, err
	}
	host, port := domain, ""
	if h, p, err := net.SplitHostPort(domain); err == nil {
		host, port = h, p
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if host == "" {
		return nil, errors.New("dnsprov: resolve SIP: empty domain")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return []Target{{Transport: "udp", Host: host, Addr: net.JoinHostPort(ip.String(), cmp.Or(port, "5060"))}}, nil
	}
	if port != "" {
		return r.hostTargets(ctx, host, "udp", port)
	}

	byService := map[string]transport{}
	for _, t := range transports() {
		byService[strings.ToUpper(t.naptr)] = t
	}
	naptrs, _, err := r.lookup(ctx, host, dns.TypeNAPTR)
	if err != nil {
		return nil, err
	}
	var usable []*dns.NAPTR
	for _, rr := range naptrs {
		n := rr.(*dns.NAPTR)
		if _, ok := byService[strings.ToUpper(n.Service)]; ok && strings.EqualFold(n.Flags, "s") {
			usable = append(usable, n)
		}
	}
	slices.SortStableFunc(usable, func(a, b *dns.NAPTR) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.Preference, b.Preference))
	})
	// A name that does not resolve costs its targets, not the whole answer:
	// the other NAPTR and SRV records are the fallbacks RFC 3263 §4 wants.
	var out []Target
	var errs []error
	for _, n := range usable {
		ts, err := r.srvTargets(ctx, n.Replacement, byService[strings.ToUpper(n.Service)].name)
		errs = append(errs, err)
		out = append(out, ts...)
	}
	if len(out) == 0 {
		// §4.1: no (usable) NAPTR: SRV for the transports we support, the
		// secure one first.
		for _, t := range transports()[:3] {
			ts, err := r.srvTargets(ctx, t.srv+"."+host, t.name)
			errs = append(errs, err)
			out = append(out, ts...)
		}
	}
	if len(out) == 0 {
		ts, err := r.hostTargets(ctx, host, "udp", "5060")
		errs = append(errs, err)
		out = ts
	}
	if len(out) == 0 {
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("dnsprov: no SIP servers found for %s: %w", host, err)
		}
		return nil, fmt.Errorf("dnsprov: %w found for %s (no NAPTR, SRV or address records at %s)", ErrNoSIPServers, host, strings.Join(r.servers, ","))
	}
	return out, nil
}

// ErrNoSIPServers is what ResolveSIP's error wraps when the DNS answered
// and the domain has no SIP servers (as opposed to a DNS failure).
var ErrNoSIPServers = errors.New("no SIP servers")

// resolver asks one of a list of servers.
type resolver struct {
	servers []string
}

func newResolver(addr string) (*resolver, error) {
	if addr != "" {
		return &resolver{servers: []string{hostPortDefault(addr, "53")}}, nil
	}
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("dnsprov: no DNS server given and the system resolver is unusable: %w", err)
	}
	r := &resolver{}
	for _, s := range cc.Servers {
		r.servers = append(r.servers, net.JoinHostPort(s, cmp.Or(cc.Port, "53")))
	}
	if len(r.servers) == 0 {
		return nil, errors.New("dnsprov: no DNS server given and /etc/resolv.conf lists none")
	}
	return r, nil
}

// lookup asks the servers in turn until one answers (NXDOMAIN is an
// answer). RD is set so that recursive resolvers resolve; authoritative
// servers ignore it.
func (r *resolver) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, *dns.Msg, error) {
	var errs []error
	for _, s := range r.servers {
		c := &client{server: s, net: "udp", timeout: 3 * time.Second, now: time.Now}
		rrs, m, err := c.query(ctx, name, qtype, true)
		if err == nil {
			return rrs, m, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, nil, errors.Join(errs...)
}

// srvTargets resolves an SRV name to ordered targets.
func (r *resolver) srvTargets(ctx context.Context, name, transport string) ([]Target, error) {
	rrs, m, err := r.lookup(ctx, name, dns.TypeSRV)
	if err != nil {
		return nil, err
	}
	var out []Target
	var errs []error
	for _, srv := range orderSRV(rrs) {
		if srv.Target == "." {
			continue // RFC 2782: service decidedly not available here
		}
		addrs := addrsFrom(m.Extra, srv.Target)
		if len(addrs) == 0 {
			if addrs, err = r.addrs(ctx, srv.Target); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		for _, a := range addrs {
			out = append(out, Target{
				Transport: transport, Host: strings.TrimSuffix(srv.Target, "."),
				Addr: net.JoinHostPort(a.String(), strconv.Itoa(int(srv.Port))), Priority: srv.Priority, Weight: srv.Weight,
			})
		}
	}
	if len(out) == 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func (r *resolver) hostTargets(ctx context.Context, host, transport, port string) ([]Target, error) {
	addrs, err := r.addrs(ctx, dns.Fqdn(host))
	if err != nil {
		return nil, err
	}
	var out []Target
	for _, a := range addrs {
		out = append(out, Target{Transport: transport, Host: host, Addr: net.JoinHostPort(a.String(), port)})
	}
	return out, nil
}

// addrs returns the A then AAAA addresses of name.
func (r *resolver) addrs(ctx context.Context, name string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, _, err := r.lookup(ctx, name, t)
		if err != nil {
			return nil, err
		}
		out = append(out, addrsFrom(rrs, "")...) // owners may differ after a CNAME chain
	}
	return out, nil
}

// addrsFrom picks the A/AAAA records of name ("" for any) out of rrs.
func addrsFrom(rrs []dns.RR, name string) []netip.Addr {
	var out []netip.Addr
	for _, rr := range rrs {
		if name != "" && !strings.EqualFold(rr.Header().Name, name) {
			continue
		}
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			ip = v.A
		case *dns.AAAA:
			ip = v.AAAA
		default:
			continue
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// orderSRV sorts SRV records by priority and, within a priority, by the
// weighted random selection of RFC 2782.
func orderSRV(rrs []dns.RR) []*dns.SRV {
	var srvs []*dns.SRV
	for _, rr := range rrs {
		if s, ok := rr.(*dns.SRV); ok {
			srvs = append(srvs, s)
		}
	}
	slices.SortStableFunc(srvs, func(a, b *dns.SRV) int { return cmp.Compare(a.Priority, b.Priority) })
	out := make([]*dns.SRV, 0, len(srvs))
	for i := 0; i < len(srvs); {
		j := i
		for j < len(srvs) && srvs[j].Priority == srvs[i].Priority {
			j++
		}
		group := slices.Clone(srvs[i:j])
		// RFC 2782: weight-0 records first, then pick by running sum.
		slices.SortStableFunc(group, func(a, b *dns.SRV) int { return cmp.Compare(min(a.Weight, 1), min(b.Weight, 1)) })
		for len(group) > 0 {
			total := 0
			for _, s := range group {
				total += int(s.Weight)
			}
			pick := 0
			if total > 0 {
				n := mrand.IntN(total + 1)
				sum := 0
				for k, s := range group {
					sum += int(s.Weight)
					if sum >= n {
						pick = k
						break
					}
				}
			}
			out = append(out, group[pick])
			group = slices.Delete(group, pick, pick+1)
		}
		i = j
	}
	return out
}
