package proxy

import (
	"context"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Media anchors calls' media on RTP relays (roles/relay). The node that
// a call's initial INVITE enters from the caller anchors it (Anchor); from
// then on every SDP body of the call that passes through that node is
// rewritten to the relay (SDP), whichever party sent it, and the session
// is freed when the call ends (End). Other nodes on the path pass SDP
// unchanged: SDP returns relayed false for calls they did not anchor.
type Media interface {
	// Anchor decides whether the call's media is relayed, and if so
	// makes this node the call's anchor.
	Anchor(ctx context.Context, call MediaCall) bool
	// SDP rewrites body, sent by the party whose dialog tag is
	// senderTag, into the body to give the other party (RFC 3264 offer
	// or answer), allocating or updating the relay session. relatch says
	// the sender may have moved (a re-INVITE or UPDATE). relayed is false
	// when the call is not anchored here (body returned as is). An error
	// maps to the request's response (503 without relay capacity, 488
	// for SDP the relay cannot take).
	SDP(ctx context.Context, callID, senderTag string, body []byte, relatch bool) (out []byte, relayed bool, err error)
	// End frees the call's relay session, if the call is anchored here.
	End(ctx context.Context, callID string)
}

// MediaCall is what the anchor knows of a call when its INVITE arrives.
type MediaCall struct {
	CallID    string
	CallerTag string
	// Source is the caller's SIP source ("ip:port"), Datagram whether it
	// came over UDP, Contact the host:port of its Contact URI.
	Source   string
	Datagram bool
	Contact  string
	// SDP is the offer, if the INVITE has one.
	SDP []byte
	// Callee are the Contact URIs the INVITE is forked to.
	Callee []string
}

// sdpOf returns the SDP body of m, nil when it has none (no body, another
// content type: multipart bodies are not relayed).
func sdpOf(m sip.Message) []byte {
	body := m.Body()
	if len(body) == 0 {
		return nil
	}
	cts := m.GetHeaders("Content-Type")
	if len(cts) != 1 {
		return nil
	}
	mt, _, _ := strings.Cut(cts[0].Value(), ";")
	if !strings.EqualFold(strings.TrimSpace(mt), "application/sdp") {
		return nil
	}
	return body
}

// fromTag and toTag are the dialog tags of a message's parties.
func fromTag(m sip.Message) string {
	if f := m.From(); f != nil {
		t, _ := f.Params.Get("tag")
		return t
	}
	return ""
}

func toTag(m sip.Message) string {
	if t := m.To(); t != nil {
		v, _ := t.Params.Get("tag")
		return v
	}
	return ""
}

// anchor runs at the start of proxying a request: it anchors an initial
// INVITE that entered the mesh here, ends the relay session on BYE, and
// rewrites the request's SDP when the call is anchored here. The body to
// forward is left in in.sdp.
func (p *Proxy) anchor(ctx context.Context, in *inbound, targets []target) error {
	m := p.cfg.Media
	if m == nil {
		return nil
	}
	req := in.req
	callID := callID(req)
	if req.Method == sip.BYE {
		m.End(ctx, callID)
		return nil
	}
	if req.IsInvite() && dialogForming(req) && !in.peer {
		call := MediaCall{CallID: callID, CallerTag: fromTag(req), Source: in.flow.remote,
			Datagram: !sip.IsReliable(in.flow.transport), SDP: sdpOf(req)}
		if c := req.Contact(); c != nil {
			call.Contact = c.Address.HostPort()
		}
		for _, t := range targets {
			call.Callee = append(call.Callee, t.ruri.String())
		}
		if m.Anchor(ctx, call) {
			if err := p.rewriteRequest(ctx, in); err != nil {
				m.End(ctx, callID) // the INVITE is refused: no call
				return err
			}
			return nil
		}
	}
	return p.rewriteRequest(ctx, in)
}

// rewriteRequest puts the relayed SDP of an offer or answer carried by a
// request (INVITE, UPDATE, PRACK, ACK) into in.sdp.
func (p *Proxy) rewriteRequest(ctx context.Context, in *inbound) error {
	req := in.req
	body := sdpOf(req)
	if body == nil || p.cfg.Media == nil {
		return nil
	}
	relatch := req.Method == sip.UPDATE || req.IsInvite() && !dialogForming(req)
	out, relayed, err := p.cfg.Media.SDP(ctx, callID(req), fromTag(req), body, relatch)
	if err != nil {
		return err
	}
	if relayed {
		in.sdp = out
	}
	return nil
}

// rewriteResponse rewrites the SDP of a response going upstream (an
// answer, or the offer of a 2xx to an INVITE without one) and ends the
// relay session when an initial INVITE failed. The responder's tag is the
// To tag.
func (p *Proxy) rewriteResponse(ctx context.Context, in *inbound, res *sip.Response) {
	m := p.cfg.Media
	if m == nil {
		return
	}
	if res.StatusCode >= 300 && in != nil && in.req.IsInvite() && dialogForming(in.req) {
		m.End(ctx, callID(in.req))
		return
	}
	body := sdpOf(res)
	if body == nil {
		return
	}
	out, relayed, err := m.SDP(ctx, callID(res), toTag(res), body, false)
	if err != nil {
		p.log.Warn("proxy: answer not relayed", "call_id", callID(res), "status", res.StatusCode, "err", err)
		return
	}
	if relayed {
		res.SetBody(out)
	}
}
