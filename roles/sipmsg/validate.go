package sipmsg

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// Validate checks the RFC 3261 rules that hold for a whole message, on a
// message read by Parse or by sipgo's own parser (whose handlers receive
// already-parsed requests): SIP version 2.0 (505); Via, To, From, Call-ID and
// CSeq present (§8.1.1, §8.2), each of To, From, Call-ID, CSeq,
// Max-Forwards, Content-Length and Content-Type at most once (RFC 4475
// §3.3.8, §3.3.9); Via protocol SIP/2.0 and no bare "z9hG4bK" branch; the CSeq
// number below 2**31 and its method equal to the request method (§8.1.1.5,
// RFC 4475 §3.1.2.17); Max-Forwards 0-255 (§20.22); Content-Length equal to
// the body length; a Request-URI without headers (§19.1.1 table 1, RFC 4475
// §3.1.2.11) whose scheme is supported (416); Require and Proxy-Require when
// configured (420). A response whose Via names the broadcast address is
// dropped (RFC 4475 §3.3.10).
//
// Syntax that sipgo accepts too liberally is only caught by Parse.
func (v *Validator) Validate(msg sip.Message) error {
	req, isReq := msg.(*sip.Request)
	res, isRes := msg.(*sip.Response)
	switch {
	case isReq:
		if !isVersion20(req.SipVersion) {
			return sipstatus.VersionNotSupported(&Defect{Field: "Request-Line", Problem: "SIP version " + safeText(req.SipVersion, 20) + " is not supported"})
		}
	case isRes:
		if !isVersion20(res.SipVersion) {
			return sipstatus.Drop(&Defect{Field: "Status-Line", Problem: "SIP version is not 2.0"})
		}
		if res.StatusCode < 100 || res.StatusCode > 699 {
			return sipstatus.Drop(&Defect{Field: "Status-Line", Problem: "status code is not 100-699"})
		}
	default:
		return sipstatus.Drop(&Defect{Field: "message", Problem: fmt.Sprintf("unexpected message type %T", msg)})
	}

	// Presence and multiplicity, counted in one pass: sipgo's GetHeaders
	// lower-cases the name and allocates on every call.
	var hs []sip.Header
	if isReq {
		hs = req.Headers()
	} else {
		hs = res.Headers()
	}
	var n [len(countedFields)]int
	for _, h := range hs {
		name := h.Name()
		for i, f := range countedFields {
			if sameName(name, f) {
				n[i]++
				break
			}
		}
	}
	var missing []string
	for i, name := range countedFields[:5] {
		if n[i] == 0 {
			missing = append(missing, name)
		}
	}
	if isReq && v.requireMaxFwd && n[5] == 0 {
		missing = append(missing, "Max-Forwards")
	}
	switch len(missing) {
	case 0:
	case 1:
		return missingField(missing[0])
	default:
		return sipstatus.BadRequest("Missing header fields: "+strings.Join(missing, ", "),
			&Defect{Field: missing[0], Problem: "missing " + strings.Join(missing, ", ")})
	}
	for i, name := range countedFields[1:] {
		if n[i+1] > 1 {
			return multipleField(name)
		}
	}
	// The fields must have been read into sipgo's types.
	switch {
	case msg.Via() == nil:
		return badField("Via", "unreadable")
	case msg.To() == nil:
		return badField("To", "unreadable")
	case msg.From() == nil:
		return badField("From", "unreadable")
	case msg.CallID() == nil:
		return badField("Call-ID", "unreadable")
	case msg.CSeq() == nil:
		return badField("CSeq", "unreadable")
	}

	for _, h := range hs {
		if !sameName(h.Name(), "Via") {
			continue
		}
		vh, ok := h.(*sip.ViaHeader)
		if !ok {
			return badField("Via", "unreadable")
		}
		if !strings.EqualFold(vh.ProtocolName, "SIP") || vh.ProtocolVersion != "2.0" {
			return badField("Via", "sent-protocol is not SIP/2.0")
		}
		if b, ok := vh.Params.Get("branch"); ok && b == branchCookie {
			return badField("Via", "branch is only the magic cookie z9hG4bK")
		}
		if isRes && isBroadcast(vh) {
			return sipstatus.Drop(&Defect{Field: "Via", Problem: "broadcast address"})
		}
	}

	cseq := msg.CSeq()
	if cseq.SeqNo > 1<<31-1 {
		return badField("CSeq", "sequence number is not below 2**31")
	}
	if isReq && string(cseq.MethodName) != string(req.Method) {
		return badField("CSeq", fmt.Sprintf("method %s does not match the request method %s",
			safeText(string(cseq.MethodName), 40), safeText(string(req.Method), 40)))
	}
	if isReq {
		if mf := req.MaxForwards(); mf != nil && *mf > 255 {
			return badField("Max-Forwards", "not a number from 0 to 255")
		}
	}
	if cl := msg.ContentLength(); cl != nil && int(*cl) != len(msg.Body()) {
		return badField("Content-Length", fmt.Sprintf("%d does not match the body length %d", *cl, len(msg.Body())))
	}

	if isReq {
		u := req.Recipient
		if u.Wildcard {
			return badField("Request-URI", "must not be *")
		}
		if len(u.Headers) > 0 {
			return badField("Request-URI", "must not contain headers")
		}
		scheme := strings.ToLower(u.Scheme)
		if scheme == "" {
			scheme = "sip"
		}
		if !v.schemes[scheme] {
			return sipstatus.UnsupportedURIScheme(&Defect{Field: "Request-URI", Problem: "scheme " + safeText(scheme, 40) + " is not supported"})
		}
		if req.Method != sip.ACK && req.Method != sip.CANCEL {
			if v.proxyRequire != nil {
				if err := checkOptionTags(req, "Proxy-Require", v.proxyRequire); err != nil {
					return err
				}
			}
			if v.require != nil {
				if err := checkOptionTags(req, "Require", v.require); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// countedFields are the fields Validate counts: the first five must be
// present (RFC 3261 §8.1.1), Max-Forwards too when required, and all but
// Via at most once.
var countedFields = [...]string{"Via", "To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type"}

// checkOptionTags answers 420 with Unsupported listing the tags of the named
// header fields that are not in supported.
func checkOptionTags(req *sip.Request, name string, supported map[string]bool) error {
	var unsupported []string
	for h := range Headers(req, name) {
		tags, err := tokenList(h.Value(), false)
		if err != nil {
			return badField(name, err.Error())
		}
		for _, t := range tags {
			if !supported[strings.ToLower(t)] {
				unsupported = append(unsupported, t)
			}
		}
	}
	if len(unsupported) == 0 {
		return nil
	}
	return sipstatus.BadExtension(unsupported, &Defect{Field: name, Problem: "unsupported option tags " + safeText(strings.Join(unsupported, ", "), 200)})
}

// isBroadcast reports a Via whose sent-by, received or maddr is the IPv4
// limited broadcast address: a response must never be sent there.
func isBroadcast(vh *sip.ViaHeader) bool {
	cands := []string{vh.Host}
	if r, ok := vh.Params.Get("received"); ok {
		cands = append(cands, r)
	}
	if m, ok := vh.Params.Get("maddr"); ok {
		cands = append(cands, m)
	}
	for _, c := range cands {
		if a, err := netip.ParseAddr(c); err == nil && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return true
		}
	}
	return false
}
