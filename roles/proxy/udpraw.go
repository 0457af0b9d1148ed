package proxy

import (
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawUDPConn is a UDP socket whose reads and writes make their system call
// without entering the Go scheduler's syscall state (RawSyscall through
// the socket's RawConn), and wait on the network poller, as the standard
// library does, only when the non-blocking call says EAGAIN.
//
// Why: a datagram socket's recvfrom and sendto never block (the socket is
// non-blocking), but each costs 5-20 µs on loopback, longer in a VM, and
// the standard path's entersyscall lets sysmon take the P away from a
// goroutine in a call of over 20 µs, hand it to another thread and wake
// it, and wakes a sleeping sysmon on every call after the process idled.
// On two cores at thousands of datagrams a second that was a seventh of
// the node's CPU (perf, REGISTER at 3,000/s), work Kamailio's processes,
// blocked in recvfrom, do not do.
//
// Reads are recvmsg with the kernel's arrival stamp (SO_TIMESTAMPNS), so
// that stale, when set, can drop requests that waited too long in the
// socket's queue (stale.go).
type rawUDPConn struct {
	*net.UDPConn
	rc    syscall.RawConn
	inet6 bool // the socket's family is AF_INET6 (dual stack): IPv4 peers as v4-mapped
	stale *staleRequests
	ops   sync.Pool
	out   *udpSender               // when not nil, sends the datagrams (udpsend.go)
	peer  atomic.Pointer[peerAddr] // the last datagram's source
}

var _ net.PacketConn = (*rawUDPConn)(nil)

// newRawUDPConn wraps c, or returns it as it is when it is not a UDP socket
// whose descriptor can be had. stale may be nil: every datagram is read.
func newRawUDPConn(c net.PacketConn, stale *staleRequests) net.PacketConn {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return c
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return c
	}
	domain := -1
	if err := rc.Control(func(fd uintptr) {
		domain, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if stale != nil {
			// Without it datagrams come unstamped and none is dropped.
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		}
	}); err != nil || (domain != unix.AF_INET && domain != unix.AF_INET6) {
		return c
	}
	return &rawUDPConn{UDPConn: uc, rc: rc, inet6: domain == unix.AF_INET6, stale: stale}
}

// rawOp is one system call's arguments and results. Its recv and send
// are bound once, when the op is made: a closure over the call's own
// variables, handed to RawConn.Read or Write, would move them to the heap
// on every datagram.
type rawOp struct {
	buf   []byte
	sa    unix.RawSockaddrAny // recvmsg fills it; sendto reads it
	salen uint32
	// What recvmsg needs besides: its header, the one buffer, and room for
	// a control message carrying a struct timespec (SCM_TIMESTAMPNS).
	msg        unix.Msghdr
	iov        unix.Iovec
	oob        [64]byte
	n          int
	errno      syscall.Errno
	recv, send func(fd uintptr) bool
}

func (c *rawUDPConn) op(b []byte) *rawOp {
	o, _ := c.ops.Get().(*rawOp)
	if o == nil {
		o = &rawOp{}
		o.recv, o.send = o.recvmsg, o.sendto
	}
	o.buf = b
	return o
}

// done returns o to the pool with its results.
func (c *rawUDPConn) done(o *rawOp) (int, syscall.Errno) {
	n, errno := o.n, o.errno
	o.buf, o.iov.Base = nil, nil // the pool must not keep the caller's buffer
	c.ops.Put(o)
	return n, errno
}

func (o *rawOp) recvmsg(fd uintptr) bool {
	o.iov.Base = &o.buf[0]
	o.iov.SetLen(len(o.buf))
	for {
		o.msg = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&o.sa)), Namelen: unix.SizeofSockaddrAny,
			Iov: &o.iov, Iovlen: 1, Control: &o.oob[0]}
		o.msg.SetControllen(len(o.oob))
		r, _, e := unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&o.msg)), 0)
		if e == unix.EINTR {
			continue
		}
		o.n, o.errno, o.salen = int(r), e, o.msg.Namelen
		return e != unix.EAGAIN
	}
}

// received is the kernel's arrival stamp of the datagram just read (unix
// nanoseconds), 0 when it came without one.
func (o *rawOp) received() int64 {
	if int(o.msg.Controllen) < unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))) {
		return 0
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&o.oob[0]))
	if h.Level != unix.SOL_SOCKET || h.Type != unix.SCM_TIMESTAMPNS {
		return 0
	}
	return (*unix.Timespec)(unsafe.Pointer(&o.oob[unix.CmsgLen(0)])).Nano()
}

func (o *rawOp) sendto(fd uintptr) bool {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&o.buf[0])), uintptr(len(o.buf)), 0,
			uintptr(unsafe.Pointer(&o.sa)), uintptr(o.salen))
		if e == unix.EINTR {
			continue
		}
		o.n, o.errno = int(r), e
		return e != unix.EAGAIN
	}
}

// ReadFrom reads one datagram, as net.UDPConn.ReadFrom does.
func (c *rawUDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if len(b) == 0 {
		return c.UDPConn.ReadFrom(b)
	}
	// Yield before every read. sipgo hands each datagram it reads to a
	// new goroutine, which waits on this P while the reader goes on
	// reading: after the node was descheduled (two vCPUs shared with
	// SIPp), the reader drained the backlog of its socket before any of
	// those goroutines ran, and each message waited for all that came
	// after it. At 1,600 calls/s yielding took the p99 time a message
	// spent in the node (bench: server hop) from 3.4-10.6 ms to 2.1-6.2
	// ms. The same holds between readers: a REGISTER that a node alone
	// answers in the reading goroutine (stateless.go) gave the others
	// nothing to run on, and with a backlog in every socket, four readers
	// on two Ps took turns only at the runtime's 10 ms preemption, so a
	// datagram in the other sockets waited 10-30 ms (runtime trace:
	// REGISTER-auth at 16,000/s). The yields cost no CPU that the bench
	// could see: REGISTER at 16,000/s, 8.91 CPU-s over three runs against
	// Kamailio's 8.88.
	runtime.Gosched()
	o := c.op(b)
	var err error
	for {
		err = c.rc.Read(o.recv)
		if err == nil && o.errno != 0 {
			err = o.errno
		}
		if err != nil || c.stale == nil || !c.stale.drop(b[:o.n], o.received()) {
			break
		}
	}
	var from net.Addr
	if err == nil {
		from = c.peerOf(o)
	}
	n, _ := c.done(o)
	if err != nil {
		return 0, nil, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: err}
	}
	return n, from, nil
}

// WriteTo sends one datagram to addr, as net.UDPConn.WriteTo does.
func (c *rawUDPConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := asUDPAddr(addr)
	if !ok {
		return c.UDPConn.WriteTo(b, addr)
	}
	if len(b) == 0 {
		return c.UDPConn.WriteTo(b, ua)
	}
	ap := ua.AddrPort()
	ip := ap.Addr()
	v4 := !c.inet6 && ip.Unmap().Is4()
	if !v4 && (!c.inet6 || ua.Zone != "") {
		// An IPv6 peer on an IPv4 socket (its error), or a scope ID:
		// the standard path.
		return c.UDPConn.WriteTo(b, ua)
	}
	o := c.op(b)
	if v4 {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&o.sa))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.Unmap().As4()}
		putPort(&sa.Port, ap.Port())
		o.salen = unix.SizeofSockaddrInet4
	} else {
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&o.sa))
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()} // an IPv4 address comes out v4-mapped
		putPort(&sa.Port, ap.Port())
		o.salen = unix.SizeofSockaddrInet6
	}
	var err error
	if c.out == nil || !c.out.send(o) {
		err = c.rc.Write(o.send)
	}
	n, errno := c.done(o)
	if err == nil && errno != 0 {
		err = errno
	}
	if err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Addr: addr, Err: err}
	}
	return n, nil
}

// Close closes the socket, after retiring the listener's sender, which
// must leave the group first (udpSender).
func (c *rawUDPConn) Close() error {
	if c.out != nil {
		c.out.retire()
	}
	return c.UDPConn.Close()
}

// putPort stores port in network byte order.
func putPort(dst *uint16, port uint16) {
	p := (*[2]byte)(unsafe.Pointer(dst))
	p[0], p[1] = byte(port>>8), byte(port)
}

// peerAddr is where a datagram came from, as ReadFrom returns it: the UDP
// address, with its text and its IP's text made once per peer rather than
// once per datagram. A socket's datagrams mostly come from one peer (an
// SBC, a trunk, SIPp), and sipgo, pike and the stateless path each wrote
// the address out again: eight allocations a REGISTER. Code that wants the
// *net.UDPAddr gets it with asUDPAddr.
type peerAddr struct {
	net.UDPAddr
	text, ip string
	// sa is the socket address it was made from (its first salen octets).
	sa    [unix.SizeofSockaddrInet6]byte
	salen uint32
	// token is the peer's flow token, once signed (flowToken).
	token atomic.Pointer[peerToken]
}

// peerToken is a flow token and the keys that signed it.
type peerToken struct {
	keys *flowKeys
	text string
}

func (a *peerAddr) String() string { return a.text }

// asUDPAddr returns the UDP address a is, or holds.
func asUDPAddr(a net.Addr) (*net.UDPAddr, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a, true
	case *peerAddr:
		return &a.UDPAddr, true
	}
	return nil, false
}

// peerOf returns the source of the datagram o read: the one of the last
// datagram when it is the same socket address. It is called by the
// socket's one reader; the returned address is shared and never modified.
func (c *rawUDPConn) peerOf(o *rawOp) net.Addr {
	n := min(o.salen, uint32(unix.SizeofSockaddrInet6))
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&o.sa)), n)
	if p := c.peer.Load(); p != nil && p.salen == n && string(p.sa[:n]) == string(raw) {
		return p
	}
	p := &peerAddr{UDPAddr: *sockaddrToUDP(&o.sa), salen: n}
	copy(p.sa[:], raw)
	p.text, p.ip = p.UDPAddr.String(), p.UDPAddr.IP.String()
	c.peer.Store(p)
	return p
}

// sockaddrToUDP converts a socket address filled in by recvmsg.
func sockaddrToUDP(sa *unix.RawSockaddrAny) *net.UDPAddr {
	switch sa.Addr.Family {
	case unix.AF_INET:
		s := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&s.Port))
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4(s.Addr), uint16(p[0])<<8|uint16(p[1])))
	case unix.AF_INET6:
		s := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&s.Port))
		// v4-mapped peers of a dual-stack socket read as IPv4, as the
		// standard library gives them.
		a := netip.AddrFrom16(s.Addr).Unmap()
		ua := net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(p[0])<<8|uint16(p[1])))
		if s.Scope_id != 0 && a.Is6() {
			if ifi, err := net.InterfaceByIndex(int(s.Scope_id)); err == nil {
				ua.Zone = ifi.Name
			}
		}
		return ua
	}
	return &net.UDPAddr{}
}
