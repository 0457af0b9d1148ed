package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// portPool hands out RTP/RTCP port pairs (RTP even, RTCP = RTP+1, RFC 3550
// §11) of one interface. It is next-fit, not lowest-first, so that a pair
// just freed is reused as late as possible and stray packets of an ended
// call do not land in a new one. A pair whose ports another program holds
// is skipped, not counted as allocated.
type portPool struct {
	bind netip.Addr
	min  int

	mu    sync.Mutex
	used  []bool
	next  int
	inUse int
}

func newPortPool(bind netip.Addr, lo, hi int) *portPool {
	return &portPool{bind: bind, min: lo, used: make([]bool, (hi-lo+1)/2)}
}

// acquire binds a free pair and returns its sockets.
func (p *portPool) acquire() (rtpConn, rtcpConn *net.UDPConn, port int, err error) {
	network := "udp4"
	if !p.bind.Unmap().Is4() {
		network = "udp6"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var lastErr error
	for range len(p.used) {
		i := p.next
		p.next = (p.next + 1) % len(p.used)
		if p.used[i] {
			continue
		}
		port = p.min + 2*i
		rtpConn, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.bind, uint16(port))))
		if err != nil {
			lastErr = err
			continue
		}
		rtcpConn, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.bind, uint16(port+1))))
		if err != nil {
			rtpConn.Close()
			lastErr = err
			continue
		}
		p.used[i] = true
		p.inUse++
		return rtpConn, rtcpConn, port, nil
	}
	if lastErr != nil {
		return nil, nil, 0, fmt.Errorf("%w (%s, %d pairs from %d; last bind error: %w)", ErrPortsExhausted, p.bind, len(p.used), p.min, lastErr)
	}
	return nil, nil, 0, fmt.Errorf("%w (%s, all %d pairs from %d in use)", ErrPortsExhausted, p.bind, len(p.used), p.min)
}

// release returns a pair; its sockets must be closed already.
func (p *portPool) release(port int) {
	i := (port - p.min) / 2
	p.mu.Lock()
	defer p.mu.Unlock()
	if i < 0 || i >= len(p.used) || !p.used[i] {
		panic(errors.New("relay: released a port pair that was not allocated"))
	}
	p.used[i] = false
	p.inUse--
}

// allocated is the number of pairs in use.
func (p *portPool) allocated() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}
