package proxy

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"hash/maphash"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// A BYE over UDP that follows its dialog's route set to a UDP target is
// forwarded by a stateless proxy (RFC 3261 §16.11), in the goroutine that
// read it, and so is its response: a BYE has one target and nothing to
// fork, fail over or cancel, so a server and a client transaction would
// only absorb retransmissions that the UAS's own transaction absorbs
// anyway, at the cost of two transactions, their timers and goroutines
// for every call. The branch is a hash of the request (§16.11: the same
// for every retransmission, so the UAS sees one transaction). BYEs of
// calls whose media this node anchors, to or from other transports, that
// route on a Request-URI of the domain, or that the stateful path would
// refuse (483, a loop) keep the stateful path.

// statelessBranchMagic starts the branch of a statelessly forwarded
// request; its responses are recognised by it.
const statelessBranchMagic = "z9hG4bK-sl"

// takeBye forwards req statelessly when it may; see above.
func (p *Proxy) takeBye(props sip.TransportReadProps, req *sip.Request) bool {
	if req.Method != sip.BYE || props.RemoteAddr == nil || !strings.EqualFold(props.Transport, "udp") || toTag(req) == "" {
		return false
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		return false
	}
	if p.cfg.Media != nil && p.media.get(callID(req)) != nil {
		return false
	}
	var routes []sip.Header
	for _, h := range req.Headers() {
		switch v := h.(type) {
		case *sip.ViaHeader:
			if p.self[v.Host] && p.ports[v.Port] {
				return false // a loop or a spiral: the stateful path knows
			}
		case *sip.RouteHeader:
			routes = append(routes, v)
		}
	}
	// Loose routing removes our Route entries; a BYE handed back to the
	// stateful path gets them again (only their order among themselves
	// matters, §20.34).
	giveBack := func() bool {
		for req.RemoveHeader("Route") {
		}
		req.PrependHeader(routes...)
		return false
	}
	req.SetTransport("UDP")
	req.SetSource(props.RemoteAddr.String())
	in := p.inbound(req, nil)
	t, routed, err := p.routeTarget(in)
	if err == nil && !routed {
		ruri := req.Recipient
		if p.isOwn(ruri) || strings.EqualFold(ruri.Host, p.cfg.Domain) {
			return giveBack()
		}
		t, err = p.uriTarget(ruri, nil, ruri)
	}
	if err != nil {
		p.logFailure(in, err)
		if res := sipstatus.Response(req, err); res != nil {
			p.writeUDP(props, req, []byte(res.String()))
		}
		return true
	}
	dst, perr := netip.ParseAddrPort(t.dest)
	conn, ok := p.udpSocket(props.LocalAddr)
	if perr != nil || t.transport != "UDP" || !ok {
		return giveBack()
	}
	in.branch = p.statelessBranch(in)
	out := p.rewrite(req, in, t, false)
	if _, err := conn.WriteTo([]byte(out.String()), net.UDPAddrFromAddrPort(dst)); err != nil {
		p.log.Debug("proxy: BYE not forwarded", "call_id", callID(req), "to", t.dest, "err", err)
	}
	return true
}

// statelessBranch is the branch of a statelessly forwarded request: the
// loop-detection hash (§16.6 step 8) and a keyed hash of the received
// top Via, which tells apart requests that differ only in their branch.
func (p *Proxy) statelessBranch(in *inbound) string {
	var h maphash.Hash
	h.SetSeed(p.tagSeed)
	if v := in.req.Via(); v != nil {
		b, _ := v.Params.Get("branch")
		h.WriteString(b + "\x00" + v.Host + ":" + strconv.Itoa(v.Port))
	}
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], h.Sum64())
	return statelessBranchMagic + in.loopKey() + "." + hex.EncodeToString(sum[:6])
}

// takeStatelessResponse forwards a response to a request this node
// forwarded statelessly to the next Via (§16.11, §18.2.2), from the socket
// it came to. Anything else is left to sipgo.
func (p *Proxy) takeStatelessResponse(props sip.TransportReadProps, res *sip.Response) bool {
	v := res.Via()
	if v == nil || !p.self[v.Host] || !p.ports[v.Port] {
		return false
	}
	if b, _ := v.Params.Get("branch"); !strings.HasPrefix(b, statelessBranchMagic) {
		return false
	}
	conn, ok := p.udpSocket(props.LocalAddr)
	if !ok {
		return false
	}
	res.RemoveHeader("Via")
	next := res.Via()
	if next == nil || !strings.EqualFold(next.Transport, "UDP") {
		return true // nowhere we can send it: dropped, as §16.7 step 3 says
	}
	host, port := viaDest(next)
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return true
	}
	if _, err := conn.WriteTo([]byte(res.String()), net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port)))); err != nil {
		p.log.Debug("proxy: response not forwarded", "status", res.StatusCode, "err", err)
	}
	return true
}

// wantsStateless picks, from the raw octets, what takeBye and
// takeStatelessResponse may take.
func wantsStateless(data []byte) bool {
	if bytes.HasPrefix(data, []byte("BYE ")) {
		return true
	}
	return bytes.HasPrefix(data, []byte("SIP/2.0 ")) && bytes.Contains(data, []byte("branch="+statelessBranchMagic))
}
