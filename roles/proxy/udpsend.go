package proxy

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// udpSender sends the datagrams of one UDP listener from a socket of its
// own: bound to the listener's address, in its SO_REUSEPORT group, but
// never picked by the group's program to read (spreadRandomly picks among
// the readers, which joined first), and not registered with Go's network
// poller.
//
// Why: the runtime registers each socket for reading and writing, edge
// triggered. A datagram sent on loopback is freed as soon as it is
// delivered, and its freed send buffer is a write-space event on the socket
// (sock_wfree): every answer sent from a reader's socket made the poller's
// epoll ready, to wake a thread for a write no one waits for. Kamailio's
// sockets are in no epoll set. On the bench, 4 s of REGISTERs at 15,000/s
// (perf stat -p): epoll_pwait 14,976 -> 5,829 calls, context switches
// 12,410 -> 4,465, CPU 2.00 -> 1.89 s.
//
// It leaves the group as soon as one of the readers is closed: the group
// then moves its last socket, the sender, into the closed one's place,
// where the program would pick it, and datagrams would wait there unread.
// The readers then send from their own sockets.
type udpSender struct {
	fd int
	// refs is one for the listener until a reader closes (retired), plus
	// the sends under way; the socket is closed when it reaches zero, so
	// that no send uses a descriptor number reused by then.
	refs    atomic.Int64
	retired atomic.Bool
}

// newUDPSender opens the sender of the SO_REUSEPORT group that member
// belongs to. It must join last, after every reader.
func newUDPSender(member *rawUDPConn) (*udpSender, error) {
	domain := unix.AF_INET
	if member.inet6 {
		domain = unix.AF_INET6
	}
	var (
		v6only int
		sa     unix.Sockaddr
		serr   error
	)
	if err := member.rc.Control(func(fd uintptr) {
		if member.inet6 {
			if v6only, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); serr != nil {
				return
			}
		}
		sa, serr = unix.Getsockname(int(fd))
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, err
	}
	err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	if err == nil && domain == unix.AF_INET6 {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only)
	}
	if err == nil {
		err = unix.Bind(fd, sa)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	s := &udpSender{fd: fd}
	s.refs.Store(1)
	return s, nil
}

// send makes o's sendto on the sender's socket. It reports false when it
// could not: the socket is closed, or its buffer is full (EAGAIN), and the
// caller then sends from its own socket, which can wait for room.
func (s *udpSender) send(o *rawOp) bool {
	for {
		n := s.refs.Load()
		if n <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			break
		}
	}
	sent := o.sendto(uintptr(s.fd))
	s.release()
	return sent
}

// retire takes the sender out of use, for good: a reader is closing.
func (s *udpSender) retire() {
	if s.retired.CompareAndSwap(false, true) {
		s.release()
	}
}

// release drops a reference: the listener's, or a send's.
func (s *udpSender) release() {
	if s.refs.Add(-1) == 0 {
		unix.Close(s.fd)
	}
}
