package proxy

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestRawUDPConn sends datagrams both ways between a rawUDPConn and a
// plain socket, for each kind of socket a listener can be (IPv4, IPv6, and
// dual stack with an IPv4 peer): what arrives, and the address each side
// sees, are what the standard library gives.
func TestRawUDPConn(t *testing.T) {
	for _, tc := range []struct {
		name, network, listen, peer string
	}{
		{"ipv4", "udp4", "127.0.0.1:0", "127.0.0.1:0"},
		{"ipv6", "udp6", "[::1]:0", "[::1]:0"},
		{"dual stack, ipv4 peer", "udp", ":0", "127.0.0.1:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lc, err := net.ListenPacket(tc.network, tc.listen)
			if err != nil {
				t.Skipf("no %s here: %v", tc.network, err)
			}
			raw := newRawUDPConn(lc, nil)
			if _, ok := raw.(*rawUDPConn); !ok {
				t.Fatalf("newRawUDPConn(%T) did not wrap it", lc)
			}
			defer raw.Close()
			peer, err := net.ListenPacket("udp", tc.peer)
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			port := raw.LocalAddr().(*net.UDPAddr).Port
			to := &net.UDPAddr{IP: peer.LocalAddr().(*net.UDPAddr).IP, Port: port}

			if _, err := peer.WriteTo([]byte("ping"), to); err != nil {
				t.Fatal(err)
			}
			raw.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			n, from, err := raw.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			if string(buf[:n]) != "ping" || from.String() != peer.LocalAddr().String() {
				t.Fatalf("read %q from %s, want ping from %s", buf[:n], from, peer.LocalAddr())
			}

			// A second datagram from the peer has the same source, made
			// once; another peer's is its own.
			if _, err := peer.WriteTo([]byte("ping"), to); err != nil {
				t.Fatal(err)
			}
			if _, again, err := raw.ReadFrom(buf); err != nil || again != from {
				t.Fatalf("second datagram from %v (%v), want the same address as the first, %p", again, err, from)
			}
			other, err := net.ListenPacket("udp", tc.peer)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if _, err := other.WriteTo([]byte("ping"), to); err != nil {
				t.Fatal(err)
			}
			if _, o, err := raw.ReadFrom(buf); err != nil || o == from || o.String() != other.LocalAddr().String() {
				t.Fatalf("datagram of another peer from %v (%v), want %s", o, err, other.LocalAddr())
			}
			if ip := remoteIP(from); ip != peer.LocalAddr().(*net.UDPAddr).IP.String() {
				t.Fatalf("remoteIP = %s, want %s", ip, peer.LocalAddr().(*net.UDPAddr).IP)
			}

			if n, err := raw.WriteTo([]byte("pong!"), from); err != nil || n != 5 {
				t.Fatalf("WriteTo = %d, %v", n, err)
			}
			peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, back, err := peer.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			if string(buf[:n]) != "pong!" || back.(*net.UDPAddr).Port != port {
				t.Fatalf("peer read %q from %s, want pong! from port %d", buf[:n], back, port)
			}
			// A send allocates nothing (under the race detector the
			// pool drops items at random, so only without it).
			if !raceEnabled {
				x := []byte("x")
				if a := testing.AllocsPerRun(50, func() { raw.WriteTo(x, from) }); a != 0 {
					t.Errorf("WriteTo: %.0f allocations a datagram, want 0", a)
				}
			}
		})
	}
}

// TestRawUDPConnDeadlineAndClose: a read waits on the poller like the
// standard one: its deadline ends it with a timeout, Close with ErrClosed.
func TestRawUDPConnDeadlineAndClose(t *testing.T) {
	lc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raw := newRawUDPConn(lc, nil)
	raw.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := raw.ReadFrom(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	raw.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, _, err := raw.ReadFrom(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the read park on the poller
	raw.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting read")
	}
}
