package relay

import "sync/atomic"

// Sequence tracking constants of RFC 3550 Appendix A.1.
const (
	maxDropout  = 3000
	maxMisorder = 100
	seqMod      = 1 << 16
)

// seqTracker estimates packet loss of the RTP packets one party sends,
// following RFC 3550 Appendix A.1 (extended highest sequence number, with
// wrap-around, reordering and restart detection) and A.3 (expected and
// lost). A change of SSRC starts a new source whose counts add to those of
// the previous ones. It is owned by one goroutine.
type seqTracker struct {
	started  bool
	ssrc     uint32
	maxSeq   uint16
	cycles   uint64
	baseSeq  uint64
	badSeq   uint64
	received uint64

	prevExpected, prevReceived uint64
}

func (t *seqTracker) restart(ssrc uint32, seq uint16) {
	if t.started {
		t.prevExpected += t.expectedCurrent()
		t.prevReceived += t.received
	}
	t.started = true
	t.ssrc = ssrc
	t.maxSeq = seq
	t.baseSeq = uint64(seq)
	t.cycles = 0
	t.badSeq = seqMod + 1
	t.received = 1
}

// update records one packet.
func (t *seqTracker) update(ssrc uint32, seq uint16) {
	if !t.started || ssrc != t.ssrc {
		t.restart(ssrc, seq)
		return
	}
	udelta := seq - t.maxSeq
	switch {
	case udelta < maxDropout:
		// In order, with a permissible gap.
		if seq < t.maxSeq {
			t.cycles += seqMod
		}
		t.maxSeq = seq
	case int(udelta) <= seqMod-maxMisorder:
		// A very large jump: a restarted source if the next packet
		// follows it, else a stray packet that is not counted.
		if uint64(seq) == t.badSeq {
			t.restart(ssrc, seq)
			return
		}
		t.badSeq = uint64(seq+1) & (seqMod - 1)
		return
	default:
		// Duplicate or reordered packet.
	}
	t.received++
}

func (t *seqTracker) expectedCurrent() uint64 {
	if !t.started {
		return 0
	}
	return t.cycles + uint64(t.maxSeq) - t.baseSeq + 1
}

// counts returns the packets expected and received over all sources.
func (t *seqTracker) counts() (expected, received uint64) {
	return t.prevExpected + t.expectedCurrent(), t.prevReceived + t.received
}

// legStats are the counters of what one party sent to the relay. They are
// written by the leg's goroutines and read by snapshots.
type legStats struct {
	packets, bytes         atomic.Uint64 // RTP (and muxed RTCP) accepted from the party
	rtcpPackets, rtcpBytes atomic.Uint64
	dropped                atomic.Uint64 // not forwarded: wrong source, no destination, oversize, send error
	expected, received     atomic.Uint64 // from seqTracker, RTP only
}

func (s *legStats) publish(t *seqTracker) {
	e, r := t.counts()
	s.expected.Store(e)
	s.received.Store(r)
}

// lost is the cumulative number of packets lost (RFC 3550 §6.4.1), floored
// at zero (duplicates can make it negative).
func (s *legStats) lost() uint64 {
	e, r := s.expected.Load(), s.received.Load()
	if r >= e {
		return 0
	}
	return e - r
}
