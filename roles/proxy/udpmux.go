package proxy

import (
	"errors"
	"net"
	"runtime"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// sipgo reads a UDP listener with one goroutine, and everything the read
// filter does (rate limiting, sipmsg's checks, the stateless REGISTER
// path's parsing) runs in it: one core for a node's whole UDP traffic. So
// the proxy reads its UDP sockets itself, with a reader per core as
// Kamailio has a process per core, runs the filter there, and hands sipgo
// what is left through a muxConn. Datagrams from one source may be
// processed out of order, which UDP allows anyway.

// datagram is one message handed to sipgo.
type datagram struct {
	b    []byte
	from net.Addr
}

// muxConn is what sipgo serves: reads come from the proxy's readers,
// everything else (writes, addresses, deadlines) is the real socket's.
type muxConn struct {
	net.PacketConn
	in     chan datagram
	closed chan struct{}
	once   sync.Once
}

var _ net.PacketConn = (*muxConn)(nil)

func newMuxConn(c net.PacketConn) *muxConn {
	return &muxConn{PacketConn: c, in: make(chan datagram, 1024), closed: make(chan struct{})}
}

// ReadFrom implements net.PacketConn.
func (m *muxConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case d := <-m.in:
		return copy(p, d.b), d.from, nil
	case <-m.closed:
		return 0, nil, net.ErrClosed
	}
}

// Close implements net.PacketConn.
func (m *muxConn) Close() error {
	m.once.Do(func() { close(m.closed) })
	return m.PacketConn.Close()
}

// readers is how many goroutines read each UDP listener.
func readers() int { return max(2, runtime.GOMAXPROCS(0)) }

// readUDP reads c until it is closed, filters each datagram and passes
// what sipgo must see to m.
func (p *Proxy) readUDP(c net.PacketConn, m *muxConn, filter sip.TransportReadFilter) {
	buf := make([]byte, 65535)
	local := c.LocalAddr()
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Error("proxy: UDP read failed", "addr", local.String(), "err", err)
			}
			m.Close()
			return
		}
		out, _ := filter(sip.TransportReadProps{Transport: "UDP", LocalAddr: local, RemoteAddr: from}, buf[:n])
		if len(out) == 0 {
			continue
		}
		if &out[0] == &buf[0] {
			out = append([]byte(nil), out...) // the buffer is reused
		}
		select {
		case m.in <- datagram{b: out, from: from}:
		case <-m.closed:
			return
		}
	}
}
