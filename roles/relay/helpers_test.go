package relay_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/sipmesh/sipmesh/roles/relay"
)

// Every test binds its own loopback address in 127.0.50.0/24, so tests of
// this package never share ports with each other or other packages.
func testIP(t testing.TB, last byte) netip.Addr {
	t.Helper()
	return netip.AddrFrom4([4]byte{127, 0, 50, last})
}

const (
	testPortMin = 22000
	testPortMax = 22999
)

func newRelay(t testing.TB, ifaces []netip.Addr, mod func(*relay.Config)) *relay.Relay {
	t.Helper()
	cfg := relay.DefaultConfig()
	for _, a := range ifaces {
		cfg.Interfaces = append(cfg.Interfaces, relay.Interface{Bind: a})
	}
	cfg.PortMin, cfg.PortMax = testPortMin, testPortMax
	if mod != nil {
		mod(&cfg)
	}
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// endpoint is a fake phone: one UDP socket.
type endpoint struct {
	t    testing.TB
	conn *net.UDPConn
	buf  []byte
}

func newEndpoint(t testing.TB, ip netip.Addr) *endpoint {
	t.Helper()
	network := "udp4"
	if ip.Is6() {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &endpoint{t: t, conn: c, buf: make([]byte, 65536)}
}

func (e *endpoint) addr() netip.AddrPort { return e.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (e *endpoint) send(to netip.AddrPort, pkt []byte) {
	e.t.Helper()
	if _, err := e.conn.WriteToUDPAddrPort(pkt, to); err != nil {
		e.t.Fatalf("send to %s: %v", to, err)
	}
}

// recv returns the next datagram and its source, failing after 5 s.
func (e *endpoint) recv() ([]byte, netip.AddrPort) {
	e.t.Helper()
	p, src, err := e.tryRecv(5 * time.Second)
	if err != nil {
		e.t.Fatalf("%s: no packet: %v", e.addr(), err)
	}
	return p, src
}

func (e *endpoint) tryRecv(d time.Duration) ([]byte, netip.AddrPort, error) {
	e.conn.SetReadDeadline(time.Now().Add(d))
	n, src, err := e.conn.ReadFromUDPAddrPort(e.buf)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	return bytes.Clone(e.buf[:n]), netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), nil
}

// expect receives the next datagram and checks its bytes and source.
func (e *endpoint) expect(want []byte, from netip.AddrPort) {
	e.t.Helper()
	got, src := e.recv()
	if !bytes.Equal(got, want) {
		e.t.Fatalf("%s received %x, want %x", e.addr(), got, want)
	}
	if src != from {
		e.t.Fatalf("%s received from %s, want %s (symmetric RTP: from the relay port it sends to)", e.addr(), src, from)
	}
}

// rtpPacket builds an RTP packet (RFC 3550 §5.1) with PT 0.
func rtpPacket(ssrc uint32, seq uint16, payload string) []byte {
	p := make([]byte, 12, 12+len(payload))
	p[0] = 0x80
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[4:], uint32(seq)*160)
	binary.BigEndian.PutUint32(p[8:], ssrc)
	return append(p, payload...)
}

// rtcpRR builds an empty RTCP receiver report (RFC 3550 §6.4.2).
func rtcpRR(ssrc uint32) []byte {
	p := []byte{0x80, 201, 0, 1, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(p[4:], ssrc)
	return p
}

func allocate(t testing.TB, r relay.Controller, callID string, specs ...relay.StreamSpec) relay.Allocation {
	t.Helper()
	al, err := r.Allocate(context.Background(), relay.AllocateRequest{CallID: callID, Streams: specs})
	if err != nil {
		t.Fatalf("allocate %s: %v", callID, err)
	}
	if len(al.Streams) != len(specs) {
		t.Fatalf("allocate %s: %d streams, want %d", callID, len(al.Streams), len(specs))
	}
	return al
}

func session(t testing.TB, r *relay.Relay, callID string) relay.SessionInfo {
	t.Helper()
	si, ok := r.Session(callID)
	if !ok {
		t.Fatalf("no session %s", callID)
	}
	return si
}

// canBind reports whether every port of [lo, hi] on ip is free.
func canBind(ip netip.Addr, lo, hi int) error {
	for p := lo; p <= hi; p++ {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(p))))
		if err != nil {
			return fmt.Errorf("port %d: %w", p, err)
		}
		c.Close()
	}
	return nil
}

func ipv6Loopback(t testing.TB) netip.Addr {
	t.Helper()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("IPv6 loopback unavailable: %v", err)
		}
		t.Skipf("IPv6 loopback unavailable: %v", err)
	}
	c.Close()
	return netip.IPv6Loopback()
}

var errNotYet = errors.New("not yet")

// connsFunc is a relay.Conns that fails with f's error.
type connsFunc func(string) error

func (f connsFunc) Conn(name string) (grpc.ClientConnInterface, error) { return nil, f(name) }
