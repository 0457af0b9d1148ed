package relay

import (
	"fmt"
	"net/netip"
)

// Mode says when a proxy relays a call's media (node config relay.mode).
type Mode string

const (
	// ModeAlways relays every call: media always flows through the mesh
	// (predictable, and the only choice that hides parties' addresses).
	ModeAlways Mode = "always"
	// ModeNAT relays a call only when a party looks to be behind NAT; see
	// BehindNAT.
	ModeNAT Mode = "nat"
	// ModeNever never relays.
	ModeNever Mode = "never"
)

// ParseMode reads a Mode; "" is ModeAlways.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "":
		return ModeAlways, nil
	case ModeAlways, ModeNAT, ModeNever:
		return Mode(s), nil
	}
	return "", fmt.Errorf("relay: mode %q: want always, nat or never: %w", s, ErrInvalid)
}

// Party is what the proxy knows of one party of a call.
type Party struct {
	// Source is where the party's SIP request or response came from
	// (for a response: the received address of its flow).
	Source netip.AddrPort
	// Contact is the host and port of the party's Contact URI when the
	// host is an IP literal; zero when it is a name or absent. Port 0 is
	// the transport's default port.
	Contact netip.AddrPort
	// Datagram is true when the party's SIP came over UDP: only then do
	// the Contact port and the source port have to match.
	Datagram bool
	// Media are the c= addresses of the party's SDP (ParseSDP).
	Media []netip.Addr
}

// sharedAddressSpace is RFC 6598 carrier-grade NAT space.
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// isPrivate reports whether ip is not globally reachable: RFC 1918, RFC
// 4193 ULA, RFC 6598 shared, or link-local.
func isPrivate(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsPrivate() || sharedAddressSpace.Contains(ip) || ip.IsLinkLocalUnicast()
}

// BehindNAT reports whether a party looks to be behind NAT, and why:
//
//   - its Contact IP differs from the source IP of its SIP (it does not
//     know its public address), or over UDP the Contact port differs
//     from the source port (a port-mapping NAT; 5060 when absent);
//   - its SDP names a private address (RFC 1918, RFC 4193, RFC 6598,
//     link-local) other than its source IP: media sent there would not
//     arrive. A private address equal to the source is a party on the
//     proxy's own private network and is not NAT.
//
// Hold addresses (0.0.0.0, ::) and Contact host names are ignored.
func BehindNAT(p Party) (bool, string) {
	src := p.Source.Addr().Unmap()
	if p.Contact.IsValid() && p.Source.IsValid() {
		if c := p.Contact.Addr().Unmap(); c != src {
			return true, fmt.Sprintf("Contact address %s differs from the source %s", c, src)
		}
		port := p.Contact.Port()
		if port == 0 {
			port = 5060
		}
		if p.Datagram && port != p.Source.Port() {
			return true, fmt.Sprintf("Contact port %d differs from the source port %d", port, p.Source.Port())
		}
	}
	for _, m := range p.Media {
		m = m.Unmap()
		if !m.IsValid() || m.IsUnspecified() {
			continue
		}
		if isPrivate(m) && m != src {
			return true, fmt.Sprintf("SDP address %s is private and not the source %s", m, src)
		}
	}
	return false, ""
}

// NeedsRelay decides whether a call between parties is relayed under
// mode: always, never, or (ModeNAT) when any party is BehindNAT. An
// unknown mode relays (the safe choice for reachability).
func NeedsRelay(mode Mode, parties ...Party) bool {
	switch mode {
	case ModeNever:
		return false
	case ModeNAT:
		for _, p := range parties {
			if nat, _ := BehindNAT(p); nat {
				return true
			}
		}
		return false
	default:
		return true
	}
}
