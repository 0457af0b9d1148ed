package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// maxDatagram is the largest datagram forwarded; larger ones (never RTP in
// practice: RTP stays below the path MTU) are dropped, not truncated.
const maxDatagram = 4096

const (
	kindRTP  = 0
	kindRTCP = 1
)

// leg is the relay's side of one party of one media stream: the port pair
// that party sends to and receives from (symmetric RTP, RFC 4961), the
// party's latched and advertised addresses, and the counters of what it
// sent.
type leg struct {
	sess  *session
	side  string // "a" or "b"
	pool  *portPool
	iface Interface
	port  int // RTP; RTCP is port+1
	conns [2]*net.UDPConn
	other *leg

	// latched is the source the party's packets come from, learnt from
	// the first packet after allocation or after relatch; nil = not yet.
	latched [2]atomic.Pointer[netip.AddrPort]
	// advertised is where the party said (SDP) it receives; used until
	// the party's first packet has been seen.
	advertised [2]atomic.Pointer[netip.AddrPort]

	stats legStats
}

// relayAddr is the advertised address of the leg's port of kind.
func (l *leg) relayAddr(kind int) netip.AddrPort {
	return netip.AddrPortFrom(l.iface.advertised(), uint16(l.port+kind))
}

// setPeer records where the party says it receives media. An address of
// another family than the leg's is ignored for sending (the party can
// still be reached once it is latched).
func (l *leg) setPeer(rtpAddr, rtcpAddr netip.AddrPort) {
	is4 := l.iface.Bind.Unmap().Is4()
	set := func(kind int, a netip.AddrPort) {
		if !a.IsValid() || a.Port() == 0 || a.Addr().Unmap().Is4() != is4 {
			return
		}
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		l.advertised[kind].Store(&a)
	}
	set(kindRTP, rtpAddr)
	if !rtcpAddr.IsValid() && rtpAddr.IsValid() && rtpAddr.Port() != 0 && rtpAddr.Port() < 65535 {
		rtcpAddr = netip.AddrPortFrom(rtpAddr.Addr(), rtpAddr.Port()+1)
	}
	set(kindRTCP, rtcpAddr)
}

// relatch forgets the latched sources.
func (l *leg) relatch() {
	l.latched[kindRTP].Store(nil)
	l.latched[kindRTCP].Store(nil)
}

// accept reports whether a packet from src on the port of kind comes from
// the party: the first source after (re)latching is learnt, later ones
// must match it.
func (l *leg) accept(kind int, src netip.AddrPort) bool {
	p := l.latched[kind].Load()
	if p != nil {
		return *p == src
	}
	s := src
	if l.latched[kind].CompareAndSwap(nil, &s) {
		l.sess.relay.log.Debug("relay: latched", "call_id", l.sess.callID, "side", l.side, "kind", kindName(kind), "source", src)
		return true
	}
	return *l.latched[kind].Load() == src
}

// dest is where packets of kind for this party go: its latched source
// (symmetric RTP); else what its SDP said, if the party is not latched on
// RTP or its SDP names the IP it sends RTP from; else for RTCP its latched
// RTP source with port+1 (the usual NAT mapping).
func (l *leg) dest(kind int) netip.AddrPort {
	if p := l.latched[kind].Load(); p != nil {
		return *p
	}
	adv := l.advertised[kind].Load()
	if kind == kindRTP {
		if adv != nil {
			return *adv
		}
		return netip.AddrPort{}
	}
	lr := l.latched[kindRTP].Load()
	switch {
	case adv != nil && (lr == nil || lr.Addr() == adv.Addr()):
		return *adv
	case lr != nil && lr.Port() < 65535:
		return netip.AddrPortFrom(lr.Addr(), lr.Port()+1)
	}
	return netip.AddrPort{}
}

// serve forwards what the party sends to the port of kind to the other
// party, until the socket is closed. One buffer and one header per
// goroutine: nothing is allocated per packet.
func (l *leg) serve(kind int) {
	defer l.sess.wg.Done()
	conn := l.conns[kind]
	out := l.other.conns[kind]
	buf := make([]byte, maxDatagram+1)
	var (
		rh   rtp.Header
		ch   rtcp.Header
		seqs seqTracker
	)
	st := &l.stats
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if n > maxDatagram || !l.accept(kind, src) {
			st.dropped.Add(1)
			continue
		}
		l.sess.touch()
		pkt := buf[:n]
		// Stats only: what does not parse is forwarded all the same
		// (SRTP, STUN, DTLS, keep-alives).
		switch {
		case kind == kindRTCP || isRTCP(pkt):
			// RFC 5761 §4: on a muxed port, packet types 192-223 are RTCP.
			if ch.Unmarshal(pkt) == nil || kind == kindRTCP {
				st.rtcpPackets.Add(1)
				st.rtcpBytes.Add(uint64(n))
			}
		default:
			st.packets.Add(1)
			st.bytes.Add(uint64(n))
			if n >= 12 && pkt[0]>>6 == 2 {
				if _, err := rh.Unmarshal(pkt); err == nil {
					seqs.update(rh.SSRC, rh.SequenceNumber)
					st.publish(&seqs)
				}
			}
		}
		dst := l.other.dest(kind)
		if !dst.IsValid() {
			st.dropped.Add(1)
			continue
		}
		if _, err := out.WriteToUDPAddrPort(pkt, dst); err != nil {
			st.dropped.Add(1)
		}
	}
}

// isRTCP tells RTCP from RTP on a muxed port (RFC 5761 §4).
func isRTCP(pkt []byte) bool {
	return len(pkt) >= 8 && pkt[0]>>6 == 2 && pkt[1] >= 192 && pkt[1] <= 223
}

func kindName(kind int) string {
	if kind == kindRTCP {
		return "rtcp"
	}
	return "rtp"
}
