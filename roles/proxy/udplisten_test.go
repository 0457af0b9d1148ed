package proxy

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sipmesh/sipmesh/internal/retry"
)

// The sockets of one listener share its address, all of them receive,
// and a second listener on the same address is refused as before.
func TestListenUDPSpreads(t *testing.T) {
	conns, _, err := listenUDP("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if len(conns) < 2 {
		t.Skipf("SO_REUSEPORT unavailable: %d socket", len(conns))
	}
	addr := conns[0].LocalAddr().String()
	for _, c := range conns[1:] {
		if c.LocalAddr().String() != addr {
			t.Fatalf("sockets on %s and %s", addr, c.LocalAddr())
		}
	}
	if _, _, err := listenUDP(addr, nil); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("a second listener on %s: %v, want address already in use", addr, err)
	}

	got := make(chan int, 1000)
	for i, c := range conns {
		go func() {
			buf := make([]byte, 100)
			for {
				if _, _, err := c.ReadFrom(buf); err != nil {
					return
				}
				got <- i
			}
		}()
	}
	// One source, as SIPp or an SBC is: the datagrams still reach every
	// socket (random spread, not a hash of the source).
	src, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	const sent = 200
	for range sent {
		src.Write([]byte("x"))
	}
	per := map[int]int{}
	deadline := time.After(5 * time.Second)
	for n := 0; n < sent; n++ {
		select {
		case i := <-got:
			per[i]++
		case <-deadline:
			t.Fatalf("%d of %d datagrams arrived: %v", n, sent, per)
		}
	}
	if len(per) != len(conns) {
		t.Fatalf("datagrams per socket %v: not every one of %d sockets received", per, len(conns))
	}
	t.Logf("datagrams per socket: %v", per)
}

// A burst of 3 MB that nobody reads meanwhile, far beyond the kernel's
// default receive buffer, is all there when the readers come back: what a
// node needs to ride out a pause without losing datagrams.
func TestListenUDPHoldsBursts(t *testing.T) {
	limit, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Skip(err)
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(string(limit))); n < udpReadBuffer {
		t.Skipf("net.core.rmem_max is %d: the buffer cannot be had here", n)
	}
	conns, rcvbuf, err := listenUDP("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if rcvbuf < udpReadBuffer {
		t.Fatalf("receive buffer %d, want %d", rcvbuf, udpReadBuffer)
	}
	src, err := net.Dial("udp", conns[0].LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	const sent, size = 3000, 1000
	msg := make([]byte, size)
	for range sent {
		if _, err := src.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	received := 0
	buf := make([]byte, 2*size)
	for _, c := range conns {
		for {
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, _, err := c.ReadFrom(buf); err != nil {
				break
			}
			received++
		}
	}
	if received != sent {
		t.Fatalf("%d of %d datagrams kept", received, sent)
	}
}

// TestListenUDPSender: the listener's answers leave from the socket that
// joins its group to send (udpSender), from the listener's address, for
// each kind of listener (IPv4, IPv6, dual stack with an IPv4 peer), and
// the sender takes none of the datagrams that arrive. When one reader is
// closed the sender leaves the group (else it would take the closed one's
// place there and its share of the datagrams, unread): the other readers
// still get every datagram and answer from the listener's address, from
// their own sockets, and a send on the closed reader fails.
func TestListenUDPSender(t *testing.T) {
	for _, tc := range []struct{ name, listen, peer string }{
		{"ipv4", "127.0.0.1:0", "127.0.0.1:0"},
		{"ipv6", "[::1]:0", "[::1]:0"},
		{"dual stack, ipv4 peer", ":0", "127.0.0.1:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conns, _, err := listenUDP(tc.listen, nil)
			if err != nil {
				t.Skipf("no %s here: %v", tc.listen, err)
			}
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			if len(conns) < 2 {
				t.Skipf("SO_REUSEPORT unavailable: %d socket", len(conns))
			}
			out := conns[0].(*rawUDPConn).out
			if out == nil {
				t.Fatal("a listener of several sockets has no sender")
			}
			var st unix.Stat_t
			if err := unix.Fstat(out.fd, &st); err != nil {
				t.Fatal(err)
			}
			port := conns[0].LocalAddr().(*net.UDPAddr).Port
			for _, c := range conns {
				if c.(*rawUDPConn).out != out {
					t.Fatal("the sockets of one listener have different senders")
				}
				go func() {
					buf := make([]byte, 100)
					for {
						n, from, err := c.ReadFrom(buf)
						if err != nil {
							return
						}
						c.WriteTo(append([]byte("re:"), buf[:n]...), from)
					}
				}()
			}
			peer, err := net.ListenPacket("udp", tc.peer)
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			to := &net.UDPAddr{IP: peer.LocalAddr().(*net.UDPAddr).IP, Port: port}
			exchange := func(round string) {
				t.Helper()
				const sent = 100
				for i := range sent {
					if _, err := peer.WriteTo([]byte(round+strconv.Itoa(i)), to); err != nil {
						t.Fatal(err)
					}
				}
				peer.SetReadDeadline(time.Now().Add(5 * time.Second))
				seen := map[string]bool{}
				buf := make([]byte, 100)
				for len(seen) < sent {
					n, from, err := peer.ReadFrom(buf)
					if err != nil {
						t.Fatalf("%s: %d of %d answers: %v", round, len(seen), sent, err)
					}
					if from.(*net.UDPAddr).Port != port {
						t.Fatalf("%s: answer from %s, want port %d", round, from, port)
					}
					if a := string(buf[:n]); strings.HasPrefix(a, "re:"+round) {
						seen[a] = true
					}
				}
			}
			exchange("a")

			conns[len(conns)-1].Close()
			// A send under way may hold it a moment longer.
			retry.Eventually(t, 5*time.Second, func() error {
				var now unix.Stat_t
				if err := unix.Fstat(out.fd, &now); err == nil && now.Ino == st.Ino {
					return errors.New("the sender's socket is open after a reader closed")
				}
				return nil
			})
			exchange("b")
			if _, err := conns[len(conns)-1].WriteTo([]byte("x"), peer.LocalAddr()); err == nil {
				t.Fatal("a send on a closed reader succeeded")
			}
		})
	}
}
