package proxy

import (
	"net"
	"strings"
	"testing"
	"time"
)

// The sockets of one listener share its address, all of them receive,
// and a second listener on the same address is refused as before.
func TestListenUDPSpreads(t *testing.T) {
	conns, err := listenUDP("127.0.0.1:0")
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
	if _, err := listenUDP(addr); err == nil || !strings.Contains(err.Error(), "address already in use") {
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
