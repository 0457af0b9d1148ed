package relay

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Why a session ended (SessionInfo.Freed).
const (
	FreedByRequest = "free"     // Free was called (BYE, CANCEL, failure)
	FreedTimeout   = "timeout"  // inactivity or setup timeout
	FreedShutdown  = "shutdown" // the relay closed
)

// session is the relay state of one call.
type session struct {
	relay   *Relay
	callID  string
	owner   string
	created time.Time
	streams []*stream // appended under relay.mu only

	lastActivity atomic.Int64 // monotonic ns since relay.epoch
	seenMedia    atomic.Bool
	wg           sync.WaitGroup
}

// stream is one m-line: a leg per party.
type stream struct{ a, b *leg }

// activityGranularity is the resolution of session.lastActivity: a packet
// writes it only when it moved this much, so that the four goroutines of
// a stream do not contend for one cache line on every packet.
const activityGranularity = int64(10 * time.Millisecond)

// touch records activity: a packet accepted from a party.
func (s *session) touch() {
	now := int64(time.Since(s.relay.epoch))
	if now-s.lastActivity.Load() >= activityGranularity {
		s.lastActivity.Store(now)
	}
	if !s.seenMedia.Load() {
		s.seenMedia.Store(true)
	}
}

// SessionInfo is a snapshot of a session. It is also the JSON shape of
// `sipmesh relay sessions --json` (an array of these); the field names are
// stable:
//
//	call_id        the Call-ID the session was allocated for
//	owner          the node that allocated it (the proxy to tell), "" if local
//	created        RFC 3339 time of allocation
//	last_activity  RFC 3339 time of the last packet accepted from either party (created if none)
//	idle_seconds   seconds since last_activity when the snapshot was taken
//	freed          "" while live; "free", "timeout" or "shutdown" in a final snapshot
//	streams        one per m-line: {"a": leg, "b": leg}
//
// where a leg is what one party (a: the caller, b: the callee) sees and sent:
//
//	relay, relay_rtcp  the relay's address the party sends to ("ip:port")
//	peer, peer_rtcp    the party's latched source, "" until its first packet
//	advertised         where the party's SDP said it receives RTP, "" if not known
//	packets, bytes     RTP packets/bytes received from the party (accepted)
//	rtcp_packets, rtcp_bytes  the same for RTCP (incl. RTCP muxed on the RTP port)
//	dropped            packets received on the party's ports and not forwarded
//	                   (another source after latching, no destination yet, oversize)
//	expected, lost     RTP packets expected from sequence numbers and lost
//	                   (RFC 3550 A.3), over every SSRC the party used
type SessionInfo struct {
	CallID       string       `json:"call_id"`
	Owner        string       `json:"owner"`
	Created      time.Time    `json:"created"`
	LastActivity time.Time    `json:"last_activity"`
	IdleSeconds  float64      `json:"idle_seconds"`
	Freed        string       `json:"freed,omitempty"`
	Streams      []StreamInfo `json:"streams"`
}

// StreamInfo is one media stream of a SessionInfo.
type StreamInfo struct {
	A LegInfo `json:"a"`
	B LegInfo `json:"b"`
}

// LegInfo is one party's side of a stream; see SessionInfo.
type LegInfo struct {
	Relay       netip.AddrPort `json:"relay"`
	RelayRTCP   netip.AddrPort `json:"relay_rtcp"`
	Peer        netip.AddrPort `json:"peer"`
	PeerRTCP    netip.AddrPort `json:"peer_rtcp"`
	Advertised  netip.AddrPort `json:"advertised"`
	Packets     uint64         `json:"packets"`
	Bytes       uint64         `json:"bytes"`
	RTCPPackets uint64         `json:"rtcp_packets"`
	RTCPBytes   uint64         `json:"rtcp_bytes"`
	Dropped     uint64         `json:"dropped"`
	Expected    uint64         `json:"expected"`
	Lost        uint64         `json:"lost"`
}

// Packets is the number of RTP and RTCP packets accepted from both parties
// over all streams.
func (s SessionInfo) Packets() uint64 {
	var n uint64
	for _, st := range s.Streams {
		n += st.A.Packets + st.A.RTCPPackets + st.B.Packets + st.B.RTCPPackets
	}
	return n
}

func load(p *atomic.Pointer[netip.AddrPort]) netip.AddrPort {
	if a := p.Load(); a != nil {
		return *a
	}
	return netip.AddrPort{}
}

func (l *leg) info() LegInfo {
	return LegInfo{
		Relay:       l.relayAddr(kindRTP),
		RelayRTCP:   l.relayAddr(kindRTCP),
		Peer:        load(&l.latched[kindRTP]),
		PeerRTCP:    load(&l.latched[kindRTCP]),
		Advertised:  load(&l.advertised[kindRTP]),
		Packets:     l.stats.packets.Load(),
		Bytes:       l.stats.bytes.Load(),
		RTCPPackets: l.stats.rtcpPackets.Load(),
		RTCPBytes:   l.stats.rtcpBytes.Load(),
		Dropped:     l.stats.dropped.Load(),
		Expected:    l.stats.expected.Load(),
		Lost:        l.stats.lost(),
	}
}

// info snapshots the session; the caller holds relay.mu or owns the
// session (removed from the map).
func (s *session) info(now time.Time, freed string) SessionInfo {
	last := s.relay.epochWall.Add(time.Duration(s.lastActivity.Load()))
	si := SessionInfo{
		CallID:       s.callID,
		Owner:        s.owner,
		Created:      s.created,
		LastActivity: last,
		IdleSeconds:  max(0, now.Sub(last).Seconds()),
		Freed:        freed,
		Streams:      make([]StreamInfo, len(s.streams)),
	}
	for i, st := range s.streams {
		si.Streams[i] = StreamInfo{A: st.a.info(), B: st.b.info()}
	}
	return si
}

// Allocation says, per media stream, which relay port pair each party
// sends to. Streams[i].A goes into the SDP sent to party a (the caller),
// Streams[i].B into the SDP sent to party b (the callee).
type Allocation struct {
	CallID  string
	Streams []StreamAllocation
}

// ForA returns the endpoints to write into SDP sent to party a (the
// caller), one per stream: the argument of RewriteSDP.
func (a Allocation) ForA() []Endpoint {
	out := make([]Endpoint, len(a.Streams))
	for i, s := range a.Streams {
		out[i] = s.A
	}
	return out
}

// ForB returns the endpoints to write into SDP sent to party b (the
// callee), one per stream.
func (a Allocation) ForB() []Endpoint {
	out := make([]Endpoint, len(a.Streams))
	for i, s := range a.Streams {
		out[i] = s.B
	}
	return out
}

// StreamAllocation is the relay's port pairs of one media stream.
type StreamAllocation struct{ A, B Endpoint }

// Endpoint is a relay port pair as written into SDP.
type Endpoint struct{ RTP, RTCP netip.AddrPort }

func (s *session) allocation() Allocation {
	al := Allocation{CallID: s.callID, Streams: make([]StreamAllocation, len(s.streams))}
	for i, st := range s.streams {
		al.Streams[i] = StreamAllocation{
			A: Endpoint{RTP: st.a.relayAddr(kindRTP), RTCP: st.a.relayAddr(kindRTCP)},
			B: Endpoint{RTP: st.b.relayAddr(kindRTP), RTCP: st.b.relayAddr(kindRTCP)},
		}
	}
	return al
}
