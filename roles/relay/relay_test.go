package relay_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/internal/retry"
	"github.com/sipmesh/sipmesh/roles/relay"
)

var ctx = context.Background()

// Two parties whose SDP addresses are right exchange RTP and RTCP both
// ways through the relay, each receiving from the relay port it sends to.
func TestForwardBothWays(t *testing.T) {
	ip := testIP(t, 1)
	r := newRelay(t, []netip.Addr{ip}, nil)
	a, b := newEndpoint(t, ip), newEndpoint(t, ip)
	al := allocate(t, r, "call-1", relay.StreamSpec{A: relay.Peer{RTP: a.addr()}, B: relay.Peer{RTP: b.addr()}})
	st := al.Streams[0]
	for _, ep := range []relay.Endpoint{st.A, st.B} {
		if ep.RTP.Addr() != ip || ep.RTP.Port()%2 != 0 || ep.RTCP.Port() != ep.RTP.Port()+1 ||
			ep.RTP.Port() < testPortMin || ep.RTCP.Port() > testPortMax {
			t.Fatalf("endpoint %+v: want an even RTP port of %d-%d on %s and RTCP = RTP+1", ep, testPortMin, testPortMax, ip)
		}
	}
	if st.A.RTP == st.B.RTP {
		t.Fatalf("both parties got port %s", st.A.RTP)
	}

	for i := range 5 {
		p := rtpPacket(1111, uint16(100+i), "from-a")
		a.send(st.A.RTP, p)
		b.expect(p, st.B.RTP)
		q := rtpPacket(2222, uint16(7+i), "from-b-longer")
		b.send(st.B.RTP, q)
		a.expect(q, st.A.RTP)
	}

	// RTCP goes to RTP+1 of each party's address; here the parties'
	// RTCP sockets are separate endpoints whose addresses the SDP named.
	ac, bc := newEndpoint(t, ip), newEndpoint(t, ip)
	if _, err := r.Update(ctx, relay.UpdateRequest{CallID: "call-1", Streams: []relay.StreamSpec{{
		A: relay.Peer{RTP: a.addr(), RTCP: ac.addr()}, B: relay.Peer{RTP: b.addr(), RTCP: bc.addr()},
	}}}); err != nil {
		t.Fatal(err)
	}
	ac.send(st.A.RTCP, rtcpRR(1111))
	bc.expect(rtcpRR(1111), st.B.RTCP)
	bc.send(st.B.RTCP, rtcpRR(2222))
	ac.expect(rtcpRR(2222), st.A.RTCP)

	si := session(t, r, "call-1")
	la, lb := si.Streams[0].A, si.Streams[0].B
	if la.Packets != 5 || la.Bytes != 5*18 || lb.Packets != 5 || lb.Bytes != 5*25 {
		t.Errorf("RTP counters a=%d/%d b=%d/%d, want 5/90 and 5/125", la.Packets, la.Bytes, lb.Packets, lb.Bytes)
	}
	if la.RTCPPackets != 1 || lb.RTCPPackets != 1 || la.RTCPBytes != 8 {
		t.Errorf("RTCP counters a=%d b=%d bytes=%d, want 1, 1, 8", la.RTCPPackets, lb.RTCPPackets, la.RTCPBytes)
	}
	if la.Peer != a.addr() || lb.Peer != b.addr() || la.PeerRTCP != ac.addr() {
		t.Errorf("latched a=%s b=%s a-rtcp=%s, want %s %s %s", la.Peer, lb.Peer, la.PeerRTCP, a.addr(), b.addr(), ac.addr())
	}
	if la.Lost != 0 || la.Expected != 5 || la.Dropped != 0 {
		t.Errorf("a: expected %d lost %d dropped %d, want 5 0 0", la.Expected, la.Lost, la.Dropped)
	}
	if la.Relay != st.A.RTP || lb.RelayRTCP != st.B.RTCP {
		t.Errorf("info relay addresses %s %s, want %s %s", la.Relay, lb.RelayRTCP, st.A.RTP, st.B.RTCP)
	}
}

// A party behind NAT advertises an address that is not where its packets
// come from; once it has sent, media for it goes to its real source.
// Before either side is known, media has nowhere to go and is dropped.
func TestLatchingLearnsRealSource(t *testing.T) {
	ip := testIP(t, 2)
	r := newRelay(t, []netip.Addr{ip}, nil)
	a, b := newEndpoint(t, ip), newEndpoint(t, ip)
	wrong := newEndpoint(t, ip) // b's "private" SDP address: must receive nothing once b is latched
	al := allocate(t, r, "nat", relay.StreamSpec{A: relay.Peer{}, B: relay.Peer{RTP: wrong.addr()}})
	st := al.Streams[0]

	// b sends first; a is unknown: dropped.
	b.send(st.B.RTP, rtpPacket(2, 1, "lost"))
	retry.Eventually(t, 5*time.Second, func() error {
		if d := session(t, r, "nat").Streams[0].B.Dropped; d != 1 {
			return fmt.Errorf("b dropped %d, want 1", d)
		}
		return nil
	})
	// a sends: goes to b's real source, not to its advertised address.
	p := rtpPacket(1, 1, "hello")
	a.send(st.A.RTP, p)
	b.expect(p, st.B.RTP)
	q := rtpPacket(2, 2, "back")
	b.send(st.B.RTP, q)
	a.expect(q, st.A.RTP)
	if _, _, err := wrong.tryRecv(50 * time.Millisecond); err == nil {
		t.Fatal("the advertised address received media after the party was latched")
	}
	si := session(t, r, "nat")
	if si.Streams[0].B.Advertised != wrong.addr() || si.Streams[0].B.Peer != b.addr() {
		t.Fatalf("b advertised %s peer %s", si.Streams[0].B.Advertised, si.Streams[0].B.Peer)
	}
}

// After latching, a third source's packets are dropped, not forwarded,
// and do not move the latch; Update with Relatch learns a new source.
func TestLatchingIgnoresThirdSource(t *testing.T) {
	ip := testIP(t, 3)
	r := newRelay(t, []netip.Addr{ip}, nil)
	a, b, evil := newEndpoint(t, ip), newEndpoint(t, ip), newEndpoint(t, ip)
	al := allocate(t, r, "latch", relay.StreamSpec{A: relay.Peer{RTP: a.addr()}, B: relay.Peer{RTP: b.addr()}})
	st := al.Streams[0]

	p1 := rtpPacket(1, 1, "a1")
	a.send(st.A.RTP, p1)
	b.expect(p1, st.B.RTP)
	// The relay reads a socket in order: b's next packet after evil's
	// shows whether evil's was forwarded.
	for i := range 3 {
		evil.send(st.A.RTP, rtpPacket(666, uint16(i), "evil"))
		evil.send(st.A.RTCP, rtcpRR(666))
	}
	p2 := rtpPacket(1, 2, "a2")
	a.send(st.A.RTP, p2)
	b.expect(p2, st.B.RTP)
	si := session(t, r, "latch")
	if la := si.Streams[0].A; la.Dropped != 3 || la.Peer != a.addr() || la.Packets != 2 {
		t.Fatalf("a leg: dropped %d peer %s packets %d, want 3 (evil's RTP), %s, 2", la.Dropped, la.Peer, la.Packets, a.addr())
	}
	// RTCP latched on evil (a never sent RTCP): that is the latching rule.

	// A re-INVITE moved a to a new address.
	if _, err := r.Update(ctx, relay.UpdateRequest{CallID: "latch", Relatch: true}); err != nil {
		t.Fatal(err)
	}
	moved := newEndpoint(t, ip)
	p3 := rtpPacket(1, 3, "moved")
	moved.send(st.A.RTP, p3)
	b.expect(p3, st.B.RTP)
	a.send(st.A.RTP, rtpPacket(1, 4, "old"))
	p5 := rtpPacket(1, 5, "moved2")
	moved.send(st.A.RTP, p5)
	b.expect(p5, st.B.RTP)
	// b's answer goes to the new source.
	q := rtpPacket(2, 1, "b")
	b.send(st.B.RTP, q)
	moved.expect(q, st.A.RTP)
}

// A session without media is freed after the setup timeout, one whose
// media stopped after the inactivity timeout; both are reported with
// their counters, and their ports are free again.
func TestInactivityTimeout(t *testing.T) {
	ip := testIP(t, 4)
	var mu sync.Mutex
	var got []relay.SessionInfo
	r := newRelay(t, []netip.Addr{ip}, func(c *relay.Config) {
		c.InactivityTimeout = time.Second
		c.SetupTimeout = 1500 * time.Millisecond
		c.SweepInterval = 20 * time.Millisecond
		c.OnTimeout = func(si relay.SessionInfo) { mu.Lock(); got = append(got, si); mu.Unlock() }
	})
	watched := make(chan relay.SessionInfo, 4)
	defer r.Watch(func(si relay.SessionInfo) { watched <- si })()
	a, b := newEndpoint(t, ip), newEndpoint(t, ip)
	start := time.Now()
	al := allocate(t, r, "active", relay.StreamSpec{A: relay.Peer{RTP: a.addr()}, B: relay.Peer{RTP: b.addr()}})
	allocate(t, r, "silent", relay.StreamSpec{})

	// Keep "active" alive for well over its inactivity timeout.
	var sent int
	var lastSend time.Time
	for time.Since(start) < 1300*time.Millisecond && sent < 200 {
		p := rtpPacket(1, uint16(sent), "x")
		lastSend = time.Now()
		a.send(al.Streams[0].A.RTP, p)
		b.expect(p, al.Streams[0].B.RTP)
		sent++
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := r.Session("active"); !ok {
		t.Fatalf("session with media freed after %s", time.Since(start))
	}
	if _, ok := r.Session("silent"); !ok && time.Since(start) < 1500*time.Millisecond {
		t.Fatal("silent session freed before its setup timeout")
	}
	retry.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 2 {
			return fmt.Errorf("%d timeouts reported", len(got))
		}
		return nil
	})
	if d := time.Since(lastSend); d < time.Second {
		t.Fatalf("active session freed %s after its last packet, timeout 1s", d)
	}
	mu.Lock()
	defer mu.Unlock()
	byID := map[string]relay.SessionInfo{got[0].CallID: got[0], got[1].CallID: got[1]}
	if si := byID["active"]; si.Freed != relay.FreedTimeout || si.Streams[0].A.Packets != uint64(sent) {
		t.Fatalf("active: freed %q packets %d, want timeout and %d", si.Freed, si.Streams[0].A.Packets, sent)
	}
	if si := byID["silent"]; si.Freed != relay.FreedTimeout || si.Packets() != 0 {
		t.Fatalf("silent: %+v", si)
	}
	for range 2 {
		select {
		case <-watched:
		case <-time.After(5 * time.Second):
			t.Fatal("watcher not told")
		}
	}
	if st := r.Stats(); st.Sessions != 0 || st.PortPairs != 0 {
		t.Fatalf("after timeouts: %+v", st)
	}
	if _, err := r.Free(ctx, "active"); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("free after timeout: %v, want ErrNotFound", err)
	}
	for _, ep := range []relay.Endpoint{al.Streams[0].A, al.Streams[0].B} {
		if err := canBind(ip, int(ep.RTP.Port()), int(ep.RTCP.Port())); err != nil {
			t.Fatalf("ports still bound: %v", err)
		}
	}
}

// The session cap refuses with ErrCapacity (503) until a session ends.
func TestCapacity(t *testing.T) {
	ip := testIP(t, 5)
	r := newRelay(t, []netip.Addr{ip}, func(c *relay.Config) { c.MaxSessions = 2 })
	allocate(t, r, "c1", relay.StreamSpec{})
	allocate(t, r, "c2", relay.StreamSpec{}, relay.StreamSpec{})
	_, err := r.Allocate(ctx, relay.AllocateRequest{CallID: "c3", Streams: []relay.StreamSpec{{}}})
	if !errors.Is(err, relay.ErrCapacity) || relay.SIPStatus(err) != 503 {
		t.Fatalf("third session: %v (status %d), want ErrCapacity and 503", err, relay.SIPStatus(err))
	}
	// An existing call still gets its (idempotent) allocation.
	allocate(t, r, "c1", relay.StreamSpec{})
	if _, err := r.Free(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	allocate(t, r, "c3", relay.StreamSpec{})
	if st := r.Stats(); st.Sessions != 2 || st.PortPairs != 6 {
		t.Fatalf("stats %+v, want 2 sessions and 6 port pairs", st)
	}
}

// A range with room for one stream refuses a second with
// ErrPortsExhausted (503); a failed allocation keeps no ports.
func TestPortsExhausted(t *testing.T) {
	ip := testIP(t, 6)
	r := newRelay(t, []netip.Addr{ip}, func(c *relay.Config) { c.PortMin, c.PortMax = 22100, 22105 })
	allocate(t, r, "one", relay.StreamSpec{}) // 2 of 3 pairs
	_, err := r.Allocate(ctx, relay.AllocateRequest{CallID: "two", Streams: []relay.StreamSpec{{}}})
	if !errors.Is(err, relay.ErrPortsExhausted) || relay.SIPStatus(err) != 503 {
		t.Fatalf("second: %v, want ErrPortsExhausted", err)
	}
	if st := r.Stats(); st.Sessions != 1 || st.PortPairs != 2 || st.PairsTotal != 3 {
		t.Fatalf("stats %+v, want 1 session, 2 of 3 pairs", st)
	}
	if _, ok := r.Session("two"); ok {
		t.Fatal("failed allocation left a session")
	}
}

// A party of a family the relay has no address for is refused with
// ErrUnsupported (488), and too many streams too.
func TestUnsupported(t *testing.T) {
	ip := testIP(t, 7)
	r := newRelay(t, []netip.Addr{ip}, func(c *relay.Config) { c.MaxStreams = 2 })
	for name, specs := range map[string][]relay.StreamSpec{
		"ipv6 peer":    {{A: relay.Peer{RTP: netip.MustParseAddrPort("[2001:db8::1]:4000")}}},
		"ipv6 family":  {{}, {B: relay.Peer{Family: "IP6"}}},
		"three stream": {{}, {}, {}},
	} {
		_, err := r.Allocate(ctx, relay.AllocateRequest{CallID: name, Streams: specs})
		if !errors.Is(err, relay.ErrUnsupported) || relay.SIPStatus(err) != 488 {
			t.Errorf("%s: %v (status %d), want ErrUnsupported and 488", name, err, relay.SIPStatus(err))
		}
	}
	if st := r.Stats(); st.Sessions != 0 || st.PortPairs != 0 {
		t.Fatalf("refused allocations kept %+v", st)
	}
	if _, err := r.Allocate(ctx, relay.AllocateRequest{CallID: "x"}); !errors.Is(err, relay.ErrInvalid) {
		t.Fatalf("no streams: %v, want ErrInvalid", err)
	}
}

// 1,000 allocate/free cycles, some refused half-way and some with media,
// leave no port allocated and every port bindable.
func TestAllocateFreeCyclesLeaveNoPorts(t *testing.T) {
	ip := testIP(t, 8)
	lo, hi := 22200, 22299
	r := newRelay(t, []netip.Addr{ip}, func(c *relay.Config) { c.PortMin, c.PortMax = lo, hi; c.MaxStreams = 3 })
	a := newEndpoint(t, ip)
	b := newEndpoint(t, ip)
	for i := range 1000 {
		id := fmt.Sprintf("cycle-%d", i)
		specs := []relay.StreamSpec{{A: relay.Peer{RTP: a.addr()}, B: relay.Peer{RTP: b.addr()}}, {}}
		if i%10 == 3 {
			// The second stream's side b cannot be served: the first
			// stream's ports must be returned.
			specs[1].B.Family = "IP6"
			if _, err := r.Allocate(ctx, relay.AllocateRequest{CallID: id, Streams: specs}); !errors.Is(err, relay.ErrUnsupported) {
				t.Fatalf("cycle %d: %v", i, err)
			}
			continue
		}
		al := allocate(t, r, id, specs...)
		if i%50 == 0 {
			p := rtpPacket(1, uint16(i), "m")
			a.send(al.Streams[0].A.RTP, p)
			b.expect(p, al.Streams[0].B.RTP)
		}
		if i%7 == 0 {
			if _, err := r.Update(ctx, relay.UpdateRequest{CallID: id, Streams: append(specs, relay.StreamSpec{}), Relatch: true}); err != nil {
				t.Fatalf("cycle %d: update: %v", i, err)
			}
		}
		si, err := r.Free(ctx, id)
		if err != nil || si.Freed != relay.FreedByRequest {
			t.Fatalf("cycle %d: free: %v %q", i, err, si.Freed)
		}
	}
	if st := r.Stats(); st.Sessions != 0 || st.PortPairs != 0 {
		t.Fatalf("after 1000 cycles: %+v", st)
	}
	if err := canBind(ip, lo, hi); err != nil {
		t.Fatalf("after 1000 cycles a port is still bound: %v", err)
	}
}

// IPv6 parties, and a stream between an IPv6 and an IPv4 party.
func TestIPv6(t *testing.T) {
	v6 := ipv6Loopback(t)
	v4 := testIP(t, 9)
	r := newRelay(t, []netip.Addr{v4, v6}, nil)
	a6, b6, b4 := newEndpoint(t, v6), newEndpoint(t, v6), newEndpoint(t, v4)
	al := allocate(t, r, "v6",
		relay.StreamSpec{A: relay.Peer{RTP: a6.addr()}, B: relay.Peer{RTP: b6.addr()}},
		relay.StreamSpec{A: relay.Peer{RTP: a6.addr()}, B: relay.Peer{Family: "IP4"}})
	s0, s1 := al.Streams[0], al.Streams[1]
	if s0.A.RTP.Addr() != v6 || s0.B.RTP.Addr() != v6 || s1.A.RTP.Addr() != v6 || s1.B.RTP.Addr() != v4 {
		t.Fatalf("allocation %+v: want IPv6 ports for IPv6 parties and IPv4 for the IPv4 one", al)
	}
	p := rtpPacket(1, 1, "six")
	a6.send(s0.A.RTP, p)
	b6.expect(p, s0.B.RTP)
	b6.send(s0.B.RTP, p)
	a6.expect(p, s0.A.RTP)

	// Mixed families: b4 is latched from its first packet.
	q := rtpPacket(2, 1, "four")
	b4.send(s1.B.RTP, q)
	a6.expect(q, s1.A.RTP)
	a6.send(s1.A.RTP, p)
	b4.expect(p, s1.B.RTP)
}

// A retransmitted or spiralled INVITE allocates nothing new, and an SDP
// already pointing at the relay does not make it forward to itself.
func TestAllocateIdempotent(t *testing.T) {
	ip := testIP(t, 10)
	r := newRelay(t, []netip.Addr{ip}, nil)
	a, b := newEndpoint(t, ip), newEndpoint(t, ip)
	al := allocate(t, r, "spiral", relay.StreamSpec{A: relay.Peer{RTP: a.addr()}})
	// The second proxy sees the rewritten offer: a's address is the relay's b side.
	again := allocate(t, r, "spiral", relay.StreamSpec{A: relay.Peer{RTP: al.Streams[0].B.RTP}, B: relay.Peer{RTP: b.addr()}})
	if again.Streams[0] != al.Streams[0] {
		t.Fatalf("second allocation %+v, first %+v", again, al)
	}
	if st := r.Stats(); st.PortPairs != 2 {
		t.Fatalf("%d port pairs after a spiral, want 2", st.PortPairs)
	}
	p := rtpPacket(2, 1, "b")
	b.send(al.Streams[0].B.RTP, p)
	a.expect(p, al.Streams[0].A.RTP)
}

// Loss is estimated from sequence numbers (RFC 3550 A.3); datagrams that
// are not RTP are forwarded unchanged.
func TestLossAndOpaquePayloads(t *testing.T) {
	ip := testIP(t, 11)
	r := newRelay(t, []netip.Addr{ip}, nil)
	a, b := newEndpoint(t, ip), newEndpoint(t, ip)
	al := allocate(t, r, "loss", relay.StreamSpec{A: relay.Peer{RTP: a.addr()}, B: relay.Peer{RTP: b.addr()}})
	st := al.Streams[0]
	for _, seq := range []uint16{65530, 65531, 65534, 65535, 0, 3, 4} { // 65532, 65533, 1, 2 lost
		p := rtpPacket(9, seq, "v")
		a.send(st.A.RTP, p)
		b.expect(p, st.B.RTP)
	}
	stun := []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	a.send(st.A.RTP, stun)
	b.expect(stun, st.B.RTP)
	la := session(t, r, "loss").Streams[0].A
	if la.Expected != 11 || la.Lost != 4 || la.Packets != 8 {
		t.Fatalf("expected %d lost %d packets %d, want 11 4 8", la.Expected, la.Lost, la.Packets)
	}
}

// Update adds the streams of a new offer and refuses unknown calls.
func TestUpdate(t *testing.T) {
	ip := testIP(t, 12)
	r := newRelay(t, []netip.Addr{ip}, nil)
	al := allocate(t, r, "up", relay.StreamSpec{})
	up, err := r.Update(ctx, relay.UpdateRequest{CallID: "up", Streams: []relay.StreamSpec{{}, {}}})
	if err != nil || len(up.Streams) != 2 || up.Streams[0] != al.Streams[0] {
		t.Fatalf("update: %+v %v", up, err)
	}
	if _, err := r.Update(ctx, relay.UpdateRequest{CallID: "nope"}); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("unknown call: %v", err)
	}
	all, _ := r.Sessions(ctx)
	if len(all) != 1 || len(all[0].Streams) != 2 {
		t.Fatalf("sessions %+v", all)
	}
	r.Close()
	if _, err := r.Allocate(ctx, relay.AllocateRequest{CallID: "late", Streams: []relay.StreamSpec{{}}}); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if st := r.Stats(); st.PortPairs != 0 {
		t.Fatalf("after close %d pairs", st.PortPairs)
	}
}
