package proxy

import (
	"bytes"
	"log/slog"
	"sync/atomic"
	"time"
)

// defaultQueueDelay is Config.QueueDelay's default: half of T1, so that a
// request that gets in is answered before its client's first
// retransmission (RFC 3261 §17.1.1.2), and far above the pauses the
// buffer is for. 100 ms also dropped requests in passing bursts near a
// node's limit: at 10,000 REGISTER-auth/s p99 was 504 ms (retransmissions)
// against 216 ms with 250.
const defaultQueueDelay = 250 * time.Millisecond

// staleRequests drops, as they are read, requests that waited in a UDP
// socket's receive queue longer than max: the kernel stamps each datagram
// on arrival (SO_TIMESTAMPNS) and the reader compares.
//
// Why: the 4 MB receive buffers (udpReadBuffer) that let a node ride out
// a pause also let a node under more load than it can serve queue seconds
// of it. Every request then waits past T1 (500 ms), its client
// retransmits, and the node spends what it has on requests already sent
// again: the bench's REGISTER-auth ramp went from 9,800/s answered at
// 10,000/s offered to 7,450/s and 8,600 failures at 12,500/s, with 7 MB
// queued on a socket. Kamailio keeps the kernel's small buffer and so
// loses the excess at once; this keeps the big buffer for pauses and
// sheds only what has waited too long to be answered in time. The queue
// then holds at most max of work, a request that gets in is answered
// before its client retransmits, and one that was dropped is sent again
// by its client (RFC 3261 §17.1.1.2, §17.1.2.2), as after any loss.
//
// Only requests that open a transaction are dropped: responses, ACK and
// CANCEL finish work already done, and dropping them would make more.
type staleRequests struct {
	max     time.Duration
	now     func() time.Time
	waited  func(time.Duration) // Config.QueueWait; nil: none
	log     *slog.Logger
	dropped atomic.Uint64
	warned  onceEvery
}

func newStaleRequests(max time.Duration, log *slog.Logger) *staleRequests {
	return &staleRequests{max: max, now: time.Now, log: log, warned: onceEvery{every: time.Second}}
}

// drop reports whether datagram b, stamped by the kernel at received (unix
// nanoseconds; 0 when the socket gave no stamp), is to be dropped unread.
func (s *staleRequests) drop(b []byte, received int64) bool {
	if received == 0 || !opensTransaction(b) {
		return false
	}
	now := s.now()
	waited := time.Duration(now.UnixNano() - received)
	if s.waited != nil {
		s.waited(waited)
	}
	if waited <= s.max {
		return false
	}
	s.count(now, waited, "the UDP receive queue")
	return true
}

// late reports whether a request queued at queued, inside the node, has
// waited longer than max by now, and counts it as dropped if so. The
// REGISTER queue of a mesh node (stateless.go) holds seconds of work
// under overload, as the socket's buffer did: a REGISTER its workers
// reach after max is dropped, not processed for a client that has sent it
// again or given up.
func (s *staleRequests) late(queued time.Time) bool {
	now := s.now()
	waited := now.Sub(queued)
	if waited <= s.max {
		return false
	}
	s.count(now, waited, "the REGISTER queue")
	return true
}

func (s *staleRequests) count(now time.Time, waited time.Duration, where string) {
	n := s.dropped.Add(1)
	if s.warned.due(now) {
		s.log.Warn("proxy: overloaded: dropping requests that waited too long in "+where+"; their clients will retransmit",
			"waited", waited.Round(time.Millisecond), "limit", s.max, "dropped_total", n)
	}
}

// opensTransaction reports whether datagram b is a request other than ACK
// and CANCEL: it starts with a method (RFC 3261 §7.1; methods are upper
// case tokens in practice, and anything else is left to the parser), not
// with a SIP-Version (a response, §7.2) or a keep-alive's CRLF.
func opensTransaction(b []byte) bool {
	if len(b) < 4 || b[0] < 'A' || b[0] > 'Z' || bytes.EqualFold(b[:4], []byte("SIP/")) {
		return false
	}
	return !bytes.HasPrefix(b, []byte("ACK ")) && !bytes.HasPrefix(b, []byte("CANCEL "))
}

// onceEvery rate-limits a recurring log line: due is true at most once per
// every, safe for concurrent use.
type onceEvery struct {
	every time.Duration
	last  atomic.Int64 // unix nanoseconds of the last due
}

func (o *onceEvery) due(now time.Time) bool {
	t, last := now.UnixNano(), o.last.Load()
	return t-last >= int64(o.every) && o.last.CompareAndSwap(last, t)
}
