package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/sipmesh/sipmesh/roles/sipmsg"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// relays reports whether requests for host may be relayed (Config.RelayDomains).
func (p *Proxy) relays(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, d := range p.cfg.RelayDomains {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		switch {
		case d == "*", d == host:
			return true
		case strings.HasPrefix(d, "*.") && strings.HasSuffix(host, d[1:]):
			return true
		}
	}
	return false
}

// foreign relays an out-of-dialog request of a subscriber to a foreign
// domain that the configuration allows: to the servers RFC 3263 §4 finds,
// one after the other when a server cannot be reached, does not answer or
// answers 503 (§4.3). The request must come from an authenticated
// subscriber of the domain: anyone else is refused (403), or the node would
// be an open relay.
func (p *Proxy) foreign(ctx context.Context, in *inbound) error {
	req := in.req
	ruri := req.Recipient
	from := req.From()
	if from == nil || !strings.EqualFold(from.Address.Host, p.cfg.Domain) {
		return sipstatus.Forbidden(fmt.Errorf("%w: %s for %s: only subscribers of %s may call other domains", ErrRelay, req.Method, ruri.Host, p.cfg.Domain))
	}
	if err := p.verify(ctx, in); err != nil {
		return err
	}
	domain := ruri.Host
	if ruri.Port != 0 {
		domain = net.JoinHostPort(strings.Trim(ruri.Host, "[]"), strconv.Itoa(ruri.Port))
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	hops, err := p.cfg.Resolver.ResolveSIP(rctx, domain)
	cancel()
	if errors.Is(err, ErrNoSuchDomain) {
		return sipstatus.NotFound(fmt.Errorf("proxy: relaying to %s: %w", domain, err))
	}
	if err != nil {
		return sipstatus.ServiceUnavailable(5*time.Second, fmt.Errorf("proxy: relaying to %s: %w", domain, err))
	}
	// RFC 3263 §4.1: a transport the URI names, TLS for a SIPS URI; and
	// only what a server-to-server hop uses (no WebSocket).
	want, _ := ruri.UriParams.Get("transport")
	want = strings.ToLower(want)
	var chain []target
	for _, h := range hops {
		tr := sipmsg.Transport(h.Transport)
		if (tr != "udp" && tr != "tcp" && tr != "tls") || (want != "" && tr != want) || (ruri.IsEncrypted() && tr != "tls") {
			continue
		}
		chain = append(chain, target{ruri: ruri, transport: strings.ToUpper(tr), dest: h.Addr})
	}
	if len(chain) == 0 {
		return sipstatus.NotFound(fmt.Errorf("proxy: relaying to %s: %w over a transport this node can use (%v)", domain, ErrNoSuchDomain, hops))
	}
	head := chain[0]
	head.next, head.fo = chain[1:], dnsFailover
	p.log.Debug("proxy: relaying to a foreign domain", "domain", domain, "servers", len(chain), "call_id", callID(req))
	return p.proxy(ctx, in, []target{head}, false)
}
