package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/retry"
)

// newTestTransport starts a bare transport on 127.0.0.1.
func newTestTransport(t *testing.T, m *certs.Material, port int, log *logBuf) *transport {
	t.Helper()
	met, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := newTransport(transportConfig{
		Material:         m,
		BindAddr:         "127.0.0.1",
		Port:             port,
		Name:             m.Self.Name,
		Logger:           log.logger(),
		Metrics:          met,
		Refusals:         newRefusals(log.logger(), met, time.Second),
		HandshakeTimeout: 5 * time.Second,
		RedialBackoff:    20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown() })
	return tr
}

func recvPacket(t *testing.T, tr *transport, timeout time.Duration) *memberlist.Packet {
	t.Helper()
	select {
	case p := <-tr.PacketCh():
		return p
	case <-time.After(timeout):
		t.Fatalf("no packet within %s", timeout)
		return nil
	}
}

// Packets to one peer share one connection, arrive whole and in order, and
// name the sender's gossip listener as From.
func TestTransportPacketsShareOneConnection(t *testing.T) {
	ca := newTestCA(t, "example.test")
	var la, lb logBuf
	a := newTestTransport(t, ca.material("a", "dc1"), 0, &la)
	b := newTestTransport(t, ca.material("b", "dc1"), 0, &lb)
	const n = 200 // within the per-peer queue (256): a burst memberlist never sends
	for i := 0; i < n; i++ {
		msg := bytes.Repeat([]byte{byte(i)}, 1+i*37%5000)
		if _, err := a.WriteToAddress(msg, memberlist.Address{Addr: b.advAddr, Name: "b"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		p := recvPacket(t, b, 5*time.Second)
		want := bytes.Repeat([]byte{byte(i)}, 1+i*37%5000)
		if !bytes.Equal(p.Buf, want) {
			t.Fatalf("packet %d: got %d bytes, want %d", i, len(p.Buf), len(want))
		}
		if p.From.String() != a.advAddr {
			t.Fatalf("packet %d from %s, want the sender's listener %s", i, p.From, a.advAddr)
		}
	}
	if got := a.openConns(); got != 1 {
		t.Fatalf("sender has %d connections after %d packets, want 1", got, n)
	}
	if got := b.openConns(); got != 1 {
		t.Fatalf("receiver has %d connections, want 1", got)
	}
}

func TestTransportStreamAndExpectedName(t *testing.T) {
	ca := newTestCA(t, "example.test")
	var la, lb logBuf
	a := newTestTransport(t, ca.material("a", "dc1"), 0, &la)
	b := newTestTransport(t, ca.material("b", "dc1"), 0, &lb)

	c, err := a.DialAddressTimeout(memberlist.Address{Addr: b.advAddr, Name: "b"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var s net.Conn
	select {
	case s = <-b.StreamCh():
	case <-time.After(5 * time.Second):
		t.Fatal("no stream")
	}
	defer s.Close()
	if id := s.(*tconn).id; id.Name != "a" {
		t.Fatalf("stream peer is %q, want a", id.Name)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q %v", buf, err)
	}
	if _, err := s.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q %v", buf, err)
	}

	// Dialing b's address expecting another node is refused by the dialer.
	_, err = a.DialAddressTimeout(memberlist.Address{Addr: b.advAddr, Name: "c"}, 2*time.Second)
	if certs.ReasonOf(err) != certs.ReasonNameMismatch {
		t.Fatalf("dial expecting c at b's address: %v, want a name_mismatch refusal", err)
	}
	mustContain(t, la.String(), "dialer's refusal", "level=WARN", "reason=name_mismatch", "remote="+b.advAddr, `peer="node \"b\"`)
}

// A peer that goes away is redialed on the next packet, here as a new
// process on the same address.
func TestTransportRedialsAfterPeerRestart(t *testing.T) {
	ca := newTestCA(t, "example.test")
	var la, lb logBuf
	a := newTestTransport(t, ca.material("a", "dc1"), 0, &la)
	bm := ca.material("b", "dc1")
	b := newTestTransport(t, bm, 0, &lb)
	to := memberlist.Address{Addr: b.advAddr, Name: "b"}
	if _, err := a.WriteToAddress([]byte("one"), to); err != nil {
		t.Fatal(err)
	}
	recvPacket(t, b, 5*time.Second)
	port := b.boundPort()
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	// The sender notices the closed connection without writing into it.
	retry.Eventually(t, 5*time.Second, func() error {
		if n := a.openConns(); n != 0 {
			return fmt.Errorf("sender still has %d connections", n)
		}
		return nil
	})
	b2 := newTestTransport(t, bm, port, &lb)
	retry.Eventually(t, 5*time.Second, func() error {
		if _, err := a.WriteToAddress([]byte("two"), to); err != nil {
			return err
		}
		select {
		case p := <-b2.PacketCh():
			if string(p.Buf) != "two" {
				return fmt.Errorf("got %q", p.Buf)
			}
			return nil
		case <-time.After(100 * time.Millisecond):
			return fmt.Errorf("restarted peer got nothing")
		}
	})
}

// Installing a revocation list closes connections, both ways, of the peer
// it revokes, and the peer cannot come back.
func TestTransportClosesRevokedPeer(t *testing.T) {
	ca := newTestCA(t, "example.test")
	var la, lb logBuf
	am := ca.material("a", "dc1")
	a := newTestTransport(t, am, 0, &la)
	b := newTestTransport(t, ca.material("b", "dc1"), 0, &lb)
	if _, err := a.WriteToAddress([]byte("x"), memberlist.Address{Addr: b.advAddr, Name: "b"}); err != nil {
		t.Fatal(err)
	}
	recvPacket(t, b, 5*time.Second)
	// b answers on the connection a opened: one handshake per pair.
	if _, err := b.WriteToAddress([]byte("y"), memberlist.Address{Addr: a.advAddr, Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if p := recvPacket(t, a, 5*time.Second); p.From.String() != b.advAddr {
		t.Fatalf("a got b's packet from %s, want %s", p.From, b.advAddr)
	}
	if na, nb := a.openConns(), b.openConns(); na != 1 || nb != 1 {
		t.Fatalf("a has %d connections and b %d, want one shared both ways", na, nb)
	}
	// A stream is a connection of its own, to be closed as well.
	st, err := b.DialAddressTimeout(memberlist.Address{Addr: a.advAddr, Name: "a"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ast net.Conn
	select {
	case ast = <-a.StreamCh():
		defer ast.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no stream")
	}
	if _, err := ca.ca.Revoke("b"); err != nil {
		t.Fatal(err)
	}
	crl, err := os.ReadFile(ca.crlPath())
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := am.UpdateCRL(crl); !changed || err != nil {
		t.Fatalf("UpdateCRL: %v %v", changed, err)
	}
	closed := a.closeRevoked()
	if len(closed) != 2 || closed[0].Name != "b" || closed[1].Name != "b" {
		t.Fatalf("closed %v, want b's two connections (packets, stream)", closed)
	}
	if _, err := ast.Read(make([]byte, 1)); err == nil {
		t.Fatal("a's end of b's stream still readable after the revocation")
	}
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := st.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("b's end of its stream: %v, want closed by a", err)
	}
	st.Close() // as memberlist does when a stream fails
	retry.Eventually(t, 5*time.Second, func() error {
		if na, nb := a.openConns(), b.openConns(); na+nb != 0 {
			return fmt.Errorf("connections left: a %d, b %d", na, nb)
		}
		return nil
	})
	if _, err := b.WriteToAddress([]byte("z"), memberlist.Address{Addr: a.advAddr, Name: "a"}); err != nil {
		t.Fatal(err)
	}
	retry.Eventually(t, 5*time.Second, func() error {
		if !bytes.Contains([]byte(la.String()), []byte("reason=revoked")) {
			return fmt.Errorf("a has not refused b")
		}
		return nil
	})
	select {
	case p := <-a.PacketCh():
		t.Fatalf("a got a packet from revoked b: %q", p.Buf)
	case <-time.After(200 * time.Millisecond):
	}
	mustContain(t, la.String(), "refusal", "reason=revoked", `peer="node \"b\"`, "remote=127.0.0.1:")
}

// Garbage after a good handshake (a frame too large) closes the connection
// instead of allocating it.
func TestTransportRejectsOversizedFrame(t *testing.T) {
	ca := newTestCA(t, "example.test")
	var la, lb logBuf
	a := newTestTransport(t, ca.material("a", "dc1"), 0, &la)
	b := newTestTransport(t, ca.material("b", "dc1"), 0, &lb)
	c, err := a.dial(b.advAddr, "b", kindPacket, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{0xff, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after an oversized frame")
	}
	mustContain(t, lb.String(), "frame log", "bad packet frame", "length="+strconv.Itoa(0xffffffff))
}
