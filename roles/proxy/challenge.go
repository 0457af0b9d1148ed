package proxy

import (
	"bytes"
	"context"
	"hash/maphash"
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipmsg"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// A subscriber's INVITE or MESSAGE over UDP that carries no credentials
// gets its 407 from a stateless UAS (RFC 3261 §8.2.7), as Kamailio's
// auth_challenge without a transaction gives it: no server transaction,
// no 100 Trying, no retransmissions of the 407 (a lost one is answered
// again when the client retransmits its request), a To tag that is a hash
// of the request so that every copy of it gets the same one, and the ACK
// of the 407 recognised by that tag and ignored. §8.2.7 gives the reason:
// unauthenticated requests must not create transaction state. It also
// spares nearly every call one transaction of the proxy's own.
//
// Anything the stateful path would answer otherwise (483, 482, a Route
// elsewhere, an in-dialog request, another domain, a mesh peer, presence)
// is left to it.

// challengeTagPrefix starts the To tag of a stateless 407.
const challengeTagPrefix = "sm-sl."

// statelessPaths is the proxy's fast path in front of sipgo: the REGISTER
// answers of stateless.go, the challenges here, and the BYEs and their
// responses of indialog.go.
type statelessPaths struct{ p *Proxy }

var _ sipmsg.Taker = statelessPaths{}

func (s statelessPaths) Take(props sip.TransportReadProps, data []byte, msg sip.Message) bool {
	switch m := msg.(type) {
	case *sip.Request:
		return s.p.takeRegister(props, data, m) || s.p.takeChallenge(props, m) || s.p.ackOfChallenge(m) || s.p.takeBye(props, m)
	case *sip.Response:
		return s.p.takeStatelessResponse(props, m)
	}
	return false
}

// Wants picks, from the raw octets, the INVITEs and MESSAGEs without
// credentials that are not from a mesh peer, what takeChallenge may take,
// ACKs that may be for a stateless 407, which are dropped here rather
// than after sipgo has looked for their transaction, and what the
// stateless forwarding of indialog.go may take.
func (s statelessPaths) Wants(props sip.TransportReadProps, data []byte) bool {
	p := s.p
	if props.RemoteAddr == nil || !strings.EqualFold(props.Transport, "udp") {
		return false
	}
	if wantsStateless(data) {
		return true
	}
	if p.cfg.Auth == nil {
		return false
	}
	if bytes.HasPrefix(data, []byte("ACK ")) {
		return bytes.Contains(data, []byte(";tag="+challengeTagPrefix))
	}
	if !bytes.HasPrefix(data, []byte("INVITE ")) && !bytes.HasPrefix(data, []byte("MESSAGE ")) {
		return false
	}
	return !sipmsg.HasFieldRaw(data, "proxy-authorization") && !p.cfg.Mesh.IsPeer(remoteIP(props.RemoteAddr))
}

// takeChallenge answers req with a stateless 407 when the stateful path
// would challenge it.
func (p *Proxy) takeChallenge(props sip.TransportReadProps, req *sip.Request) bool {
	if p.cfg.Auth == nil || (req.Method != sip.INVITE && req.Method != sip.MESSAGE) ||
		props.RemoteAddr == nil || !strings.EqualFold(props.Transport, "udp") {
		return false
	}
	to, from := req.To(), req.From()
	if to == nil || to.Params.Has("tag") || from == nil || !strings.EqualFold(from.Address.Host, p.cfg.Domain) ||
		req.Recipient.User == "" || sipmsg.Header(req, "Proxy-Authorization") != nil ||
		p.isPresence(req) || p.cfg.Mesh.IsPeer(remoteIP(props.RemoteAddr)) || !p.statelessOK(req) {
		return false
	}
	req.SetTransport("UDP")
	req.SetSource(props.RemoteAddr.String())
	in := p.inbound(req, nil)
	ctx := p.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	err := p.verify(ctx, in)
	if err == nil {
		return false // cannot be without credentials; the stateful path decides
	}
	p.logFailure(in, err)
	res := sipstatus.Response(req, err)
	if res == nil {
		return true
	}
	if to := res.To(); to != nil {
		to.Params.Add("tag", p.challengeTag(req))
	}
	p.writeUDP(props, req, []byte(res.String()))
	return true
}

// challengeTag is the To tag of the stateless 407 to req (RFC 3261 §8.2.7:
// the same for the same request): a keyed hash of what the request and the
// ACK of its non-2xx response share (§17.1.1.3), the Call-ID, From tag,
// CSeq number and top Via branch.
func (p *Proxy) challengeTag(req *sip.Request) string {
	var h maphash.Hash
	h.SetSeed(p.tagSeed)
	if c := req.CallID(); c != nil {
		h.WriteString(c.Value())
	}
	if f := req.From(); f != nil {
		t, _ := f.Params.Get("tag")
		h.WriteString("\x00" + t)
	}
	if c := req.CSeq(); c != nil {
		h.WriteString("\x00" + strconv.FormatUint(uint64(c.SeqNo), 10))
	}
	if v := req.Via(); v != nil {
		b, _ := v.Params.Get("branch")
		h.WriteString("\x00" + b)
	}
	return challengeTagPrefix + strconv.FormatUint(h.Sum64(), 36)
}

// ackOfChallenge reports whether req is the ACK of a stateless 407, which
// a stateless UAS ignores (RFC 3261 §8.2.7).
func (p *Proxy) ackOfChallenge(req *sip.Request) bool {
	if !req.IsAck() {
		return false
	}
	to := req.To()
	if to == nil {
		return false
	}
	tag, _ := to.Params.Get("tag")
	return strings.HasPrefix(tag, challengeTagPrefix) && tag == p.challengeTag(req)
}

// remoteIP is the IP of a datagram's source, as Mesh.IsPeer wants it.
func remoteIP(a net.Addr) string {
	if p, ok := a.(*peerAddr); ok {
		return p.ip
	}
	if u, ok := a.(*net.UDPAddr); ok {
		return u.IP.String()
	}
	host, _, _ := net.SplitHostPort(a.String())
	return host
}
