package sipstatus

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// NewResponse is the response with code to req, a request this node
// received, as RFC 3261 §8.2.6 builds it: the request's Via values in
// order, From, Call-ID and CSeq; Record-Route in an 18x or 2xx to any
// method but REGISTER and ACK, and in an INVITE's 1xx (§12.1.1); Timestamp
// in a 100 (§8.2.6.1); and To, with a tag of 64 random bits (§8.2.6.2,
// §19.3) added unless the response is a 100 or the request's To has one.
// An empty reason is the phrase of [ReasonPhrase]. It writes what sipgo's
// NewResponseFromRequest writes, in the same order.
//
// Unlike NewResponseFromRequest it shares the request's header values
// instead of cloning each: To is the response's own (it gets the tag),
// though its URI is shared, and so is the top Via when RFC 3581's rport
// has to be filled in; the other values must not be changed in place
// afterwards in either message, only replaced or added to. Cloning them, and drawing a UUID for the tag, was
// a third of a REGISTER's time in the registrar.
func NewResponse(req *sip.Request, code int, reason string) *sip.Response {
	if reason == "" {
		reason = ReasonPhrase(code)
	}
	res := sip.NewResponse(code, reason)
	res.SipVersion = req.SipVersion
	dialog := req.Method != sip.REGISTER && !req.IsAck() &&
		(code >= 180 && code < 190 || code >= 200 && code < 300 || req.IsInvite() && code > 100 && code < 200)
	if dialog {
		for _, h := range req.Headers() {
			if strings.EqualFold(h.Name(), "Record-Route") {
				res.AppendHeader(h)
			}
		}
	}
	top := true
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), "Via") {
			continue
		}
		if v, ok := h.(*sip.ViaHeader); ok && top {
			h = withRport(v, req.Source())
		}
		top = false
		res.AppendHeader(h)
	}
	if h := req.From(); h != nil {
		res.AppendHeader(h)
	}
	if h := req.To(); h != nil {
		// The To header is new, its parameters too (with room for the
		// tag); the URI is shared.
		to := &sip.ToHeader{DisplayName: h.DisplayName, Address: h.Address, Params: make(sip.HeaderParams, len(h.Params), len(h.Params)+1)}
		copy(to.Params, h.Params)
		if code != 100 && !to.Params.Has("tag") {
			to.Params.Add("tag", newTag())
		}
		res.AppendHeader(to)
	}
	if h := req.CallID(); h != nil {
		res.AppendHeader(h)
	}
	if h := req.CSeq(); h != nil {
		res.AppendHeader(h)
	}
	if code == 100 {
		for _, h := range req.Headers() {
			if strings.EqualFold(h.Name(), "Timestamp") {
				res.AppendHeader(h)
			}
		}
	}
	res.SetBody(nil)
	res.SetTransport(req.Transport())
	res.SetDestination(req.Source())
	return res
}

// withRport is v, or a copy of it with rport and received filled in from
// the request's source when the client asked for rport (RFC 3581 §4).
func withRport(v *sip.ViaHeader, source string) sip.Header {
	if rport, ok := v.Params.Get("rport"); !ok || rport != "" {
		return v
	}
	host, port, err := net.SplitHostPort(source)
	if err != nil {
		return v
	}
	c := v.Clone()
	c.Params.Add("rport", port)
	c.Params.Add("received", host)
	return c
}

// newTag is a To tag: 64 bits from crypto/rand, in hex.
func newTag() string {
	var b [8]byte
	var h [16]byte
	rand.Read(b[:]) // never fails (Go 1.24+)
	hex.Encode(h[:], b[:])
	return string(h[:])
}
