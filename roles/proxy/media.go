package proxy

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipmsg"
)

// Side is one party of a relayed call; RFC 3264 offer/answer runs between
// the two.
type Side int

const (
	// SideA sent the initial INVITE: the caller.
	SideA Side = iota
	// SideB is the party the INVITE reached: the callee (whichever branch
	// of a fork answers).
	SideB
)

// Other is the party that is not s.
func (s Side) Other() Side { return 1 - s }

func (s Side) String() string {
	if s == SideA {
		return "a"
	}
	return "b"
}

// Party is what the anchoring proxy knows of a party when it decides
// whether a call is relayed (Media.Wanted).
type Party struct {
	// Source is where the party's SIP comes from: the caller's flow, or
	// for a callee the flow its edge holds (read from the flow token of
	// its Path). Zero when not known.
	Source netip.AddrPort
	// Contact is the host and port of the party's Contact URI when the
	// host is an IP address; zero otherwise. Port 0 is the default port.
	Contact netip.AddrPort
	// Datagram: the party's SIP flow is UDP.
	Datagram bool
	// SDP is the party's session description; nil when it sent none yet
	// (a callee before its answer, a caller making a late offer).
	SDP []byte
}

// SDPUpdate is one session description sent by a party of a relayed call.
type SDPUpdate struct {
	CallID string
	// From sent Body; it goes to From.Other().
	From Side
	Body []byte
	// Relatch says the party may have moved: a new offer in a re-INVITE or
	// UPDATE (RFC 3264 §8), or the answer of another fork branch than the
	// one early media came from. The relay learns both parties' sources
	// again from their next packets.
	Relatch bool
	// RewriteOnly points Body at the relay without telling the relay where
	// From receives: the 2xx of a fork branch that lost to an earlier 2xx
	// (the caller acknowledges and ends that dialog, RFC 3261 §13.2.2.4).
	RewriteOnly bool
}

// Media anchors the media of calls on an RTP relay (roles/relay, adapted
// by the node, which picks the relay on the relay ring). Config.Media nil
// means no relay: SDP passes untouched.
type Media interface {
	// Wanted reports whether a call from caller to callees (one per
	// branch) is relayed: always, or only when a party looks to be behind
	// NAT (relay.mode); never when the mesh has no relay.
	Wanted(caller Party, callees []Party) bool
	// SDP hands the media session of a call an SDP body and returns the
	// body to forward to the other party, its media pointed at the
	// relay. The first body of a call allocates the session. An error
	// carries the response to send (roles/sipstatus: 488 for media that
	// cannot be relayed, 503 when no relay takes the call).
	SDP(ctx context.Context, u SDPUpdate) ([]byte, error)
	// Free ends the media session of a call, if it has one.
	Free(ctx context.Context, callID string)
}

// mediaTimeout bounds one Media call on the signalling path (the node
// tries the relays of the ring in turn within it).
const mediaTimeout = 5 * time.Second

// mediaCall is what the node anchoring a call keeps of it: which party is
// which in later requests, told by the dialog's tags (RFC 3261 §12.2).
type mediaCall struct {
	callID string
	aTag   string // From tag of the initial INVITE

	mu sync.Mutex
	// bTag is the To tag of the first 2xx to the initial INVITE: the
	// dialog the call goes on with.
	bTag string
	// earlyTag is the To tag of the first provisional response whose SDP
	// was applied (early media latches on that branch).
	earlyTag string
	// answer is the last SDP of a 2xx to an INVITE and its rewriting, for
	// the UAS's retransmissions of that 2xx (RFC 3261 §13.3.1.4).
	answer struct{ in, out []byte }
}

// mediaCalls are the calls this node anchors, by Call-ID.
type mediaCalls struct {
	mu sync.Mutex
	m  map[string]*mediaCall
}

func (c *mediaCalls) get(callID string) *mediaCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[callID]
}

func (c *mediaCalls) put(mc *mediaCall) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[mc.callID] = mc
}

func (c *mediaCalls) remove(callID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[callID]
	delete(c.m, callID)
	return ok
}

// Len is the number of calls this node anchors.
func (c *mediaCalls) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// RelayedCalls is the number of calls whose media this node anchors now.
func (p *Proxy) RelayedCalls() int { return p.media.Len() }

// MediaEnded makes the proxy forget a relayed call whose media session
// ended without it: the relay freed it after its inactivity timeout, or
// the relay is gone. Later requests of the call pass as if it was never
// relayed; the call itself goes on (the parties end it, e.g. on their own
// RTP timeout).
func (p *Proxy) MediaEnded(callID string) {
	if p.media.remove(callID) {
		p.log.Info("proxy: relayed call forgotten: its media session ended", "call_id", callID)
	}
}

// sdpBody returns the SDP body of a message (Content-Type application/sdp,
// RFC 3264 §5), nil when it has none. Multipart bodies are not looked into.
func sdpBody(m interface {
	sipmsg.Fields
	Body() []byte
}) []byte {
	b := m.Body()
	if len(b) == 0 {
		return nil
	}
	ct := sipmsg.Header(m, "Content-Type")
	if ct == nil {
		return nil
	}
	mt, _, _ := strings.Cut(ct.Value(), ";")
	if !strings.EqualFold(strings.TrimSpace(mt), "application/sdp") {
		return nil
	}
	return b
}

func tagOf(params sip.HeaderParams) string {
	t, _ := params.Get("tag")
	return t
}

func fromTag(m sip.Message) string {
	if f := m.From(); f != nil {
		return tagOf(f.Params)
	}
	return ""
}

func toTag(m sip.Message) string {
	if t := m.To(); t != nil {
		return tagOf(t.Params)
	}
	return ""
}

// carriesOffer reports whether a request method takes part in offer/answer
// (RFC 3261 §13, RFC 3262, RFC 3311); an SDP in, say, an OPTIONS answer
// describes capabilities and is left alone.
func carriesOffer(m sip.RequestMethod) bool {
	switch m {
	case sip.INVITE, sip.ACK, sip.UPDATE, sip.PRACK:
		return true
	}
	return false
}

// sender is the side that sent a request of the call mc.
func (mc *mediaCall) sender(req *sip.Request) Side {
	if fromTag(req) == mc.aTag {
		return SideA
	}
	return SideB
}

// inDialog reports whether a request of side s belongs to the dialog the
// call went on with (not to the dialog of a losing fork branch).
func (mc *mediaCall) inDialog(req *sip.Request, s Side) bool {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	tag := toTag(req)
	if s == SideB {
		tag = fromTag(req)
	}
	return mc.bTag == "" || tag == mc.bTag
}

// addrPort reads "host:port" where host is an IP; port 0 when absent.
func addrPort(host string, port int) netip.AddrPort {
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil || port < 0 || port > 65535 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port))
}

func flowParty(f flow) (netip.AddrPort, bool) {
	a, err := netip.ParseAddrPort(f.remote)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), f.transport == "udp"
}

// callerParty describes the party that sent an initial INVITE.
func callerParty(in *inbound) Party {
	pt := Party{SDP: sdpBody(in.req)}
	pt.Source, pt.Datagram = flowParty(in.flow)
	if c := in.req.Contact(); c != nil {
		pt.Contact = addrPort(c.Address.Host, c.Address.Port)
	}
	return pt
}

// calleeParty describes the party a branch goes to: its Contact (the
// Request-URI) and the flow its edge holds, from our own flow or the flow
// token in the edge's Path entry (read only to describe the party, never
// to route: only the edge that signed it routes on it).
func (p *Proxy) calleeParty(t target) Party {
	pt := Party{Contact: addrPort(t.ruri.Host, t.ruri.Port)}
	if t.out != nil {
		pt.Source, pt.Datagram = flowParty(*t.out)
		return pt
	}
	for _, h := range t.routes {
		if r, ok := h.(*sip.RouteHeader); ok {
			if f, ok := peekToken(r.Address.User); ok {
				pt.Source, pt.Datagram = flowParty(f)
			}
		}
	}
	return pt
}

// mediaSDP hands one body to the Media within mediaTimeout.
func (p *Proxy) mediaSDP(ctx context.Context, u SDPUpdate) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, mediaTimeout)
	defer cancel()
	out, err := p.cfg.Media.SDP(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("proxy: media of %s (SDP from side %s): %w", u.CallID, u.From, err)
	}
	return out, nil
}

// mediaRequest runs before a request is forwarded. For an initial INVITE
// from a party (not from a mesh peer: exactly one node on the path, the
// one where the caller's INVITE enters the mesh, anchors a call) it
// decides whether the call is relayed and rewrites the offer it carries;
// for a request of a call this node anchors it rewrites the SDP it carries
// (a re-INVITE or UPDATE offer relatches; a late offer's answer comes in
// the ACK, see mediaAck). It returns the call (nil: not relayed here) and
// the side that sent req. A body that cannot be relayed fails the request
// (488, or 503 when no relay takes it).
func (p *Proxy) mediaRequest(ctx context.Context, in *inbound, targets []target) (*mediaCall, Side, error) {
	if p.cfg.Media == nil {
		return nil, SideA, nil
	}
	req := in.req
	id := callID(req)
	if mc := p.media.get(id); mc != nil {
		side := mc.sender(req)
		body := sdpBody(req)
		if body == nil || !carriesOffer(req.Method) || !mc.inDialog(req, side) {
			return mc, side, nil
		}
		// RFC 3264 §8: a new offer may move a party (another address,
		// a phone that took the call over): learn sources again.
		relatch := req.Method == sip.INVITE || req.Method == sip.UPDATE
		out, err := p.mediaSDP(ctx, SDPUpdate{CallID: id, From: side, Body: body, Relatch: relatch})
		if err != nil {
			// RFC 3261 §14.2: a refused re-offer leaves the session as
			// it was; the offerer gets 488 or 503.
			return nil, side, err
		}
		req.SetBody(out)
		return mc, side, nil
	}
	if in.peer || req.Method != sip.INVITE || toTag(req) != "" || fromTag(req) == "" {
		return nil, SideA, nil
	}
	callees := make([]Party, len(targets))
	for i, t := range targets {
		callees[i] = p.calleeParty(t)
	}
	if !p.cfg.Media.Wanted(callerParty(in), callees) {
		return nil, SideA, nil
	}
	mc := &mediaCall{callID: id, aTag: fromTag(req)}
	if body := sdpBody(req); body != nil {
		out, err := p.mediaSDP(ctx, SDPUpdate{CallID: id, From: SideA, Body: body})
		if err != nil {
			return nil, SideA, err
		}
		req.SetBody(out)
	}
	// Without a body this is a late offer (RFC 3261 §13.2.1): the offer
	// comes in the 2xx and the answer in the ACK.
	p.media.put(mc)
	return mc, SideA, nil
}

// mediaResponse returns res with its SDP pointed at the relay when it
// answers a request of reqSide in a call this node anchors: an answer (or
// a late offer) in a 18x or 2xx to an INVITE, a 2xx to an UPDATE or PRACK.
// A failure is logged and the body passed as it is: the response cannot be
// refused, and media may still flow.
func (p *Proxy) mediaResponse(ctx context.Context, mc *mediaCall, reqSide Side, req *sip.Request, res *sip.Response) *sip.Response {
	if mc == nil || res.StatusCode < 101 || res.StatusCode >= 300 || !carriesOffer(req.Method) {
		return res
	}
	body := sdpBody(res)
	initial := req.Method == sip.INVITE && toTag(req) == ""
	tag := toTag(res)
	u := SDPUpdate{CallID: mc.callID, From: reqSide.Other(), Body: body}
	mc.mu.Lock()
	if initial {
		switch {
		case res.StatusCode < 200:
			if body != nil && mc.earlyTag == "" {
				mc.earlyTag = tag
			}
		case mc.bTag == "":
			mc.bTag = tag
			// Early media may have latched another branch of a fork.
			u.Relatch = mc.earlyTag != "" && mc.earlyTag != tag
		case tag != mc.bTag:
			u.RewriteOnly = true // a second answered branch
		}
	}
	mc.mu.Unlock()
	if body == nil {
		return res
	}
	out, err := p.mediaSDP(ctx, u)
	if err != nil {
		p.log.Warn("proxy: SDP of a response not relayed; passed as it is", "call_id", mc.callID, "status", res.StatusCode, "err", err)
		return res
	}
	if req.Method == sip.INVITE && res.StatusCode >= 200 {
		mc.mu.Lock()
		mc.answer.in, mc.answer.out = body, out
		mc.mu.Unlock()
	}
	res = res.Clone()
	res.SetBody(out)
	return res
}

// mediaAck rewrites the SDP of an ACK in a call this node anchors: the
// answer to an offer made in the 2xx (late offer, RFC 3264 §4).
func (p *Proxy) mediaAck(in *inbound) {
	if p.cfg.Media == nil {
		return
	}
	mc := p.media.get(callID(in.req))
	body := sdpBody(in.req)
	if mc == nil || body == nil {
		return
	}
	side := mc.sender(in.req)
	if !mc.inDialog(in.req, side) {
		return
	}
	ctx := p.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	out, err := p.mediaSDP(ctx, SDPUpdate{CallID: mc.callID, From: side, Body: body})
	if err != nil {
		p.log.Warn("proxy: SDP of an ACK not relayed; passed as it is", "call_id", mc.callID, "err", err)
		return
	}
	in.req.SetBody(out)
}

// mediaStray rewrites a retransmitted 2xx to an INVITE (one that no client
// transaction matches any longer) as its first copy was: from the copy
// kept, without asking the relay again.
func (p *Proxy) mediaStray(res *sip.Response) *sip.Response {
	if p.cfg.Media == nil {
		return res
	}
	mc := p.media.get(messageCallID(res))
	body := sdpBody(res)
	if mc == nil || body == nil {
		return res
	}
	mc.mu.Lock()
	in, out := mc.answer.in, mc.answer.out
	mc.mu.Unlock()
	if !bytes.Equal(in, body) {
		p.log.Debug("proxy: a retransmitted 2xx with another SDP than the first; passed as it is", "call_id", mc.callID)
		return res
	}
	res.SetBody(out)
	return res
}

func messageCallID(m sip.Message) string {
	if c := m.CallID(); c != nil {
		return c.Value()
	}
	return ""
}

// mediaFree ends the media session of a call this node anchors and
// forgets the call.
func (p *Proxy) mediaFree(mc *mediaCall, why string) {
	if !p.media.remove(mc.callID) {
		return // already freed (a retransmitted BYE, the relay timed out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), mediaTimeout)
	defer cancel()
	p.cfg.Media.Free(ctx, mc.callID)
	p.log.Debug("proxy: media of a relayed call freed", "call_id", mc.callID, "why", why)
}
