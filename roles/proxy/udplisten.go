package proxy

import (
	"context"
	"net"
	"runtime"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// listenUDP opens a UDP listener as two readers per core, each with a
// socket of its own in one SO_REUSEPORT group, and a classic BPF program
// that hands each datagram to a socket at random.
//
// sipgo reads a socket with one goroutine, and the read filter (pike,
// sipmsg's checks, the stateless REGISTER path) runs in it: one core for a
// node's whole UDP traffic. Several goroutines reading one socket serialize
// on its lock and wake each other for every datagram, where Kamailio's
// processes each block in recvfrom on the socket they share. A socket per
// reader comes closest to that, and the kernel's spread, random rather than by source address, keeps both
// cores busy when all load comes from one peer, as it does from an SBC or
// SIPp. Datagrams from one source may then be processed out of order, which
// UDP allows anyway. Where SO_REUSEPORT cannot be had, one socket is used.
//
// Two per core, not one: a reader runs on a thread that the kernel may
// take off its core for another process (SIPp, on the bench's two cores),
// and the reader's socket waits until it comes back, while Kamailio's
// other processes go on reading the socket they share. With one socket per
// core that was half the traffic: REGISTER-auth at 8,000/s had p99 24-28
// ms against Kamailio's 4. With twice the sockets, at least half the
// readers wait in the poller, not on a thread, and any free core serves
// them: p99 8 ms, and no more CPU (0.074-0.075 ms per REGISTER pair
// against 0.078-0.082). Four per core did no better.
//
// Each socket asks for a receive buffer of udpReadBuffer; the returned
// size is the smallest the kernel granted (it caps the request at
// net.core.rmem_max), for the caller to report. stale, when not nil,
// drops requests that waited in a socket too long (stale.go).
//
// When the program spreads the datagrams, a last socket joins the group to
// send for all of them (udpSender); else each sends from its own.
func listenUDP(addr string, stale *staleRequests) (conns []net.PacketConn, readBuffer int, err error) {
	conns, spread, err := listenUDPGroup(addr)
	var raws []*rawUDPConn
	for i, c := range conns {
		if got := setReadBuffer(c, udpReadBuffer); i == 0 || got < readBuffer {
			readBuffer = got
		}
		conns[i] = newRawUDPConn(c, stale)
		if r, ok := conns[i].(*rawUDPConn); ok {
			raws = append(raws, r)
		}
	}
	if spread && len(raws) == len(conns) {
		if out, err := newUDPSender(raws[0]); err == nil {
			for _, r := range raws {
				r.out = out
			}
		}
	}
	return conns, readBuffer, err
}

// udpReadBuffer is the receive buffer asked for each UDP socket. The
// default (208 KB on Linux) holds a hundred-odd datagrams, some 10 ms of
// traffic at 1,700 calls a second, and the bench saw a node drop hundreds
// of datagrams a second at that rate while its heap grew (each lost one
// costs the caller a 500 ms retransmission), though its readers kept up
// on average. 4 MB rides out such stalls; staleRequests keeps it from
// holding seconds of work when the load is more than the node can serve.
const udpReadBuffer = 4 << 20

// setReadBuffer asks for a receive buffer of size bytes and returns what
// the socket has (Linux reports twice the usable size; halved here).
func setReadBuffer(c net.PacketConn, size int) int {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return 0
	}
	uc.SetReadBuffer(size)
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0
	}
	got := 0
	rc.Control(func(fd uintptr) { got, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	return got / 2
}

// listenUDPGroup opens the readers' sockets; spread reports that the
// group's program picks among them all.
func listenUDPGroup(addr string) (conns []net.PacketConn, spread bool, err error) {
	n := 2 * runtime.GOMAXPROCS(0)
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); err != nil {
			return err
		}
		return serr
	}}
	// A plain bind first: it fails, with the error operators know, when
	// anything holds the address, another SO_REUSEPORT group included,
	// which a second node started by mistake would otherwise join.
	probe, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, false, err
	}
	laddr := probe.LocalAddr().String() // addr may say port 0
	probe.Close()
	first, err := lc.ListenPacket(context.Background(), "udp", laddr)
	if err != nil {
		// No SO_REUSEPORT here: one socket.
		c, err := net.ListenPacket("udp", laddr)
		if err != nil {
			return nil, false, err
		}
		return []net.PacketConn{c}, false, nil
	}
	conns = []net.PacketConn{first}
	if err := spreadRandomly(first, n); err != nil {
		return conns, false, nil
	}
	for len(conns) < n {
		c, err := lc.ListenPacket(context.Background(), "udp", laddr)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	return conns, len(conns) == n, nil
}

// spreadRandomly attaches to c's SO_REUSEPORT group a program that picks
// the group's socket for each datagram at random among the first n.
func spreadRandomly(c net.PacketConn, n int) error {
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtRand},
		bpf.ALUOpConstant{Op: bpf.ALUOpMod, Val: uint32(n)},
		bpf.RetA{},
	})
	if err != nil {
		return err
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return net.UnknownNetworkError("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]})
	})
	if err != nil {
		return err
	}
	return serr
}
