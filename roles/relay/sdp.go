package relay

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// ErrSDP is wrapped by errors of ParseSDP and RewriteSDP about a body that
// cannot be read or relayed; it is an ErrUnsupported (488).
var ErrSDP = fmt.Errorf("relay: SDP: %w", ErrUnsupported)

// iceAttributes are the ICE attributes RewriteSDP removes, at session and
// media level (RFC 8839 §5; a=remote-candidates and a=ice-mismatch too).
var iceAttributes = map[string]bool{
	"candidate":         true,
	"remote-candidates": true,
	"end-of-candidates": true,
	"ice-ufrag":         true,
	"ice-pwd":           true,
	"ice-options":       true,
	"ice-lite":          true,
	"ice-mismatch":      true,
	"ice-pacing":        true,
}

// Media is what the relay needs of one m-line of an SDP body.
type Media struct {
	Type  string // m= media: audio, video, …
	Proto string // m= proto, e.g. RTP/AVP
	// RTP is the connection address (media-level c=, else session-level)
	// with the m= port; its address is invalid when c= holds a host name,
	// and its port is 0 for a rejected or disabled stream (RFC 3264 §6).
	RTP netip.AddrPort
	// RTCP is from a=rtcp (RFC 3605), zero when absent (= RTP port + 1).
	RTCP netip.AddrPort
	// Family is the c= addrtype, "IP4" or "IP6".
	Family  string
	RTCPMux bool // a=rtcp-mux (RFC 5761)
	ICE     bool // the m-line carries ICE candidates
}

// Peer is the Peer to give Allocate or Update for this m-line.
func (m Media) Peer() Peer { return Peer{RTP: m.RTP, RTCP: m.RTCP, Family: m.Family} }

// ParseSDP returns the media of an SDP body (RFC 8866), one per m-line in
// order, so that a proxy can build the StreamSpecs of a call.
func ParseSDP(body []byte) ([]Media, error) {
	d, err := parseSDP(body)
	if err != nil {
		return nil, err
	}
	out := make([]Media, 0, len(d.MediaDescriptions))
	for i, md := range d.MediaDescriptions {
		ci := md.ConnectionInformation
		if ci == nil {
			ci = d.ConnectionInformation
		}
		if ci == nil {
			return nil, fmt.Errorf("%w: m-line %d has no c= line at media or session level (RFC 8866 §5.7)", ErrSDP, i)
		}
		m := Media{Type: md.MediaName.Media, Proto: strings.Join(md.MediaName.Protos, "/"), Family: ci.AddressType}
		var ip netip.Addr
		if ci.Address != nil {
			ip, _ = netip.ParseAddr(ci.Address.Address)
			ip = ip.Unmap()
		}
		port := md.MediaName.Port.Value
		if port < 0 || port > 65535 {
			return nil, fmt.Errorf("%w: m-line %d: port %d out of range", ErrSDP, i, port)
		}
		m.RTP = netip.AddrPortFrom(ip, uint16(port))
		for _, a := range md.Attributes {
			switch {
			case a.Key == "rtcp":
				m.RTCP = parseRTCPAttr(a.Value, ip)
			case a.Key == "rtcp-mux":
				m.RTCPMux = true
			case a.Key == "candidate":
				m.ICE = true
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// Relayable reports whether the media of an SDP body can be sent through
// the relay by rewriting it (RewriteSDP). Not when an m-line runs over
// DTLS (UDP/TLS/RTP/SAVPF, UDP/DTLS/SCTP, TCP/DTLS/…; RFC 5764, RFC 8841):
// those are WebRTC endpoints, which require ICE (RFC 8829 §5.1.1) and
// would refuse an answer without candidates. SRTP keyed in SDP (RTP/SAVP
// with a=crypto) is relayable: the relay forwards packets as they are.
func Relayable(media []Media) bool {
	for _, m := range media {
		if strings.Contains(strings.ToUpper(m.Proto), "TLS") {
			return false
		}
	}
	return true
}

// parseRTCPAttr reads "port [nettype addrtype address]" (RFC 3605 §2.1).
func parseRTCPAttr(v string, def netip.Addr) netip.AddrPort {
	f := strings.Fields(v)
	if len(f) == 0 {
		return netip.AddrPort{}
	}
	port, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil {
		return netip.AddrPort{}
	}
	ip := def
	if len(f) >= 4 {
		if a, err := netip.ParseAddr(f[3]); err == nil {
			ip = a.Unmap()
		}
	}
	return netip.AddrPortFrom(ip, uint16(port))
}

// RewriteSDP returns body with media sent to the relay: endpoints[i] is
// the relay port pair for m-line i (Allocation.Streams[i].A for the SDP
// sent to party a, .B for party b). It rewrites
//
//   - c= at session level (to the first relayed m-line's address) and at
//     media level (RFC 8866 §5.7), with addrtype IP4 or IP6, and the o=
//     unicast address (§5.2);
//   - the m= port (RFC 8866 §5.14), dropping a port count "/n";
//   - a=rtcp (RFC 3605) to the relay's RTCP port, with its address when
//     the original carried one;
//
// and removes every ICE attribute (a=candidate, a=ice-ufrag, a=ice-pwd,
// a=ice-options, a=ice-lite, a=end-of-candidates, a=remote-candidates, …;
// RFC 8839). The relay is then the only address the other party can reach,
// and it does not answer STUN, so candidates of the party would either be
// unreachable or bypass the relay; without ICE attributes both parties fall
// back to plain RTP to c=/m= (RFC 8445 §2: ICE is used only when both
// sides offer it). Endpoints that require ICE (WebRTC: UDP/TLS/RTP/SAVPF)
// therefore cannot be relayed this way; the proxy should not relay them.
//
// The o= unicast address becomes the relay's too, so that the SDP a party
// receives names no address of the other party (topology hiding); o=
// username, session id and version are kept. A rejected or disabled
// m-line (port 0) keeps its port 0 and gets the relay's c= address.
// Everything else (codecs, a=rtcp-mux, crypto, direction, bandwidth) is
// kept, in order. The o= version is not changed: RewriteSDP is
// deterministic, so the same body rewritten with the same endpoints gives
// the same result, the o= tuple of a party stays the same across its
// offers, and a party that re-sends an unchanged SDP (RFC 3264 §8) still
// sends an unchanged one after rewriting. There must be an endpoint for
// every m-line.
func RewriteSDP(body []byte, endpoints []Endpoint) ([]byte, error) {
	d, err := parseSDP(body)
	if err != nil {
		return nil, err
	}
	if len(d.MediaDescriptions) > len(endpoints) {
		return nil, fmt.Errorf("relay: SDP has %d m-lines but %d relay endpoints were given: %w", len(d.MediaDescriptions), len(endpoints), ErrInvalid)
	}
	for i, ep := range endpoints[:len(d.MediaDescriptions)] {
		if !ep.RTP.IsValid() || ep.RTP.Port() == 0 {
			return nil, fmt.Errorf("relay: endpoint %d (%v) is not an address: %w", i, ep.RTP, ErrInvalid)
		}
	}
	d.Attributes = stripICE(d.Attributes)

	// The session-level c= follows the first relayed m-line.
	var sessionAddr netip.Addr
	for i, md := range d.MediaDescriptions {
		if md.MediaName.Port.Value != 0 {
			sessionAddr = endpoints[i].RTP.Addr()
			break
		}
	}
	if !sessionAddr.IsValid() && len(endpoints) > 0 {
		sessionAddr = endpoints[0].RTP.Addr()
	}
	if sessionAddr.IsValid() {
		if d.ConnectionInformation != nil {
			d.ConnectionInformation = connection(sessionAddr)
		}
		d.Origin.AddressType = addrType(sessionAddr)
		d.Origin.UnicastAddress = sessionAddr.Unmap().String()
	}
	for i, md := range d.MediaDescriptions {
		md.Attributes = stripICE(md.Attributes)
		if md.MediaName.Port.Value == 0 {
			// Rejected or disabled: no media, but no party address either.
			if md.ConnectionInformation != nil {
				md.ConnectionInformation = connection(endpoints[i].RTP.Addr())
			}
			continue
		}
		ep := endpoints[i]
		md.MediaName.Port = sdp.RangedPort{Value: int(ep.RTP.Port())}
		if md.ConnectionInformation != nil || d.ConnectionInformation == nil || ep.RTP.Addr() != sessionAddr {
			md.ConnectionInformation = connection(ep.RTP.Addr())
		}
		rtcp := ep.RTCP
		if !rtcp.IsValid() {
			rtcp = netip.AddrPortFrom(ep.RTP.Addr(), ep.RTP.Port()+1)
		}
		for j, a := range md.Attributes {
			if a.Key != "rtcp" {
				continue
			}
			v := strconv.Itoa(int(rtcp.Port()))
			if len(strings.Fields(a.Value)) >= 4 {
				v += " IN " + addrType(rtcp.Addr()) + " " + rtcp.Addr().String()
			}
			md.Attributes[j].Value = v
		}
	}
	out, err := d.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSDP, err)
	}
	// What pion accepts it does not always write back readably (e.g. an
	// empty o=); never send what the other party cannot parse.
	if _, err := parseSDP(out); err != nil {
		return nil, fmt.Errorf("%w: the rewritten body would not parse: %w", ErrSDP, err)
	}
	return out, nil
}

// parseSDP reads a body with pion/sdp, which requires v=, o=, s= and t= in
// order (RFC 8866 §5) but accepts an empty body.
func parseSDP(body []byte) (*sdp.SessionDescription, error) {
	if !bytes.HasPrefix(body, []byte("v=")) {
		return nil, fmt.Errorf("%w: the body does not start with v= (RFC 8866 §5)", ErrSDP)
	}
	// RFC 8866 §9: no field may hold NUL or a CR that does not end a line.
	for i, c := range body {
		if c == 0 || (c == '\r' && (i+1 == len(body) || body[i+1] != '\n')) {
			return nil, fmt.Errorf("%w: NUL or bare CR at byte %d", ErrSDP, i)
		}
	}
	var d sdp.SessionDescription
	if err := d.Unmarshal(body); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSDP, err)
	}
	return &d, nil
}

func stripICE(attrs []sdp.Attribute) []sdp.Attribute {
	out := attrs[:0]
	for _, a := range attrs {
		if !iceAttributes[a.Key] {
			out = append(out, a)
		}
	}
	return out
}

func connection(ip netip.Addr) *sdp.ConnectionInformation {
	return &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType(ip), Address: &sdp.Address{Address: ip.Unmap().String()}}
}

func addrType(ip netip.Addr) string {
	if ip.Unmap().Is4() {
		return "IP4"
	}
	return "IP6"
}
