package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/internal/retry"
	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/rpc"
	"github.com/sipmesh/sipmesh/overlay/rpc/rpctest"
	"github.com/sipmesh/sipmesh/roles/relay"
)

// mesh is a relay node n01 serving the control API and a proxy node n02
// calling it, over the overlay RPC with mTLS.
func mesh(t *testing.T, r *relay.Relay, rpcIP netip.Addr) *relay.Remote {
	t.Helper()
	ca := rpctest.NewCA(t)
	members := rpctest.NewMembership(0)
	srv, err := rpc.NewServer(rpc.ServerConfig{Material: ca.Node("n01", "")})
	if err != nil {
		t.Fatal(err)
	}
	relay.NewService(r).Register(srv)
	addr, err := srv.Listen(netip.AddrPortFrom(rpcIP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	members.Set(overlay.Member{Name: "n01", Roles: []string{"relay"}, Services: map[string]string{overlay.ServiceRPC: addr.String()}})
	members.Set(overlay.Member{Name: "n02", Roles: []string{"proxy"}})
	cl, err := rpc.NewClient(rpc.ClientConfig{Material: ca.Node("n02", "")}, members.View("n02"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return relay.NewRemote(cl, "n01")
}

// The proxy on another node allocates, media flows, it lists and frees the
// session, refusals keep their meaning, and it is told of timeouts.
func TestControlOverRPC(t *testing.T) {
	ip := testIP(t, 20)
	r := newRelay(t, []netip.Addr{ip}, func(c *relay.Config) {
		c.MaxSessions = 2
		c.InactivityTimeout = 2 * time.Second
		c.SetupTimeout = 2 * time.Second
		c.SweepInterval = 20 * time.Millisecond
	})
	remote := mesh(t, r, ip)
	tctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Watch from the start: "second" below times out 2 s after it is
	// allocated, the owner must be told.
	events := make(chan relay.SessionInfo, 1)
	wctx, wcancel := context.WithCancel(tctx)
	done := make(chan error, 1)
	go func() { done <- remote.Watch(wctx, func(si relay.SessionInfo) { events <- si }) }()

	a, b := newEndpoint(t, ip), newEndpoint(t, ip)
	// The proxy's flow: a's offer gives a's address; b's answer gives b's.
	offer := crlf("v=0\no=a 1 1 IN IP4 " + a.addr().Addr().String() + "\ns=-\nc=IN IP4 " + a.addr().Addr().String() +
		"\nt=0 0\nm=audio " + strconv.Itoa(int(a.addr().Port())) + " RTP/AVP 0\n")
	media, err := relay.ParseSDP(offer)
	if err != nil {
		t.Fatal(err)
	}
	al := allocate(t, remote, "rpc-call", relay.StreamSpec{A: media[0].Peer()})
	toB, err := relay.RewriteSDP(offer, al.ForB())
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := relay.ParseSDP(toB); m[0].RTP != al.Streams[0].B.RTP {
		t.Fatalf("offer sent to b names %s, want the relay's %s", m[0].RTP, al.Streams[0].B.RTP)
	}
	if _, err := remote.Update(tctx, relay.UpdateRequest{CallID: "rpc-call", Streams: []relay.StreamSpec{{B: relay.Peer{RTP: b.addr()}}}}); err != nil {
		t.Fatal(err)
	}
	if toA, err := relay.RewriteSDP(offer, al.ForA()); err != nil || !bytes.Contains(toA, []byte(strconv.Itoa(int(al.Streams[0].A.RTP.Port())))) {
		t.Fatalf("answer to a: %v\n%s", err, toA)
	}
	p := rtpPacket(5, 1, "over rpc")
	a.send(al.Streams[0].A.RTP, p)
	b.expect(p, al.Streams[0].B.RTP)
	b.send(al.Streams[0].B.RTP, p)
	a.expect(p, al.Streams[0].A.RTP)

	up, err := remote.Update(tctx, relay.UpdateRequest{CallID: "rpc-call", Streams: []relay.StreamSpec{{}, {B: relay.Peer{Family: "IP4"}}}, Relatch: true})
	if err != nil || len(up.Streams) != 2 || up.Streams[0] != al.Streams[0] {
		t.Fatalf("update: %+v %v", up, err)
	}
	list, err := remote.Sessions(tctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %+v %v", list, err)
	}
	si := list[0]
	if si.CallID != "rpc-call" || si.Owner != "n02" || len(si.Streams) != 2 || si.Streams[0].A.Packets != 1 || si.Streams[0].B.Bytes != uint64(len(p)) {
		t.Fatalf("listed %+v", si)
	}
	if si.Streams[0].A.Peer.IsValid() {
		t.Fatalf("relatch over RPC did not forget %s", si.Streams[0].A.Peer)
	}

	// Refusals keep their sentinel across the RPC.
	_, err = remote.Allocate(tctx, relay.AllocateRequest{CallID: "v6", Streams: []relay.StreamSpec{{A: relay.Peer{RTP: netip.MustParseAddrPort("[2001:db8::1]:5000")}}}})
	if !errors.Is(err, relay.ErrUnsupported) || relay.SIPStatus(err) != 488 {
		t.Fatalf("unsupported: %v", err)
	}
	allocate(t, remote, "second", relay.StreamSpec{})
	_, err = remote.Allocate(tctx, relay.AllocateRequest{CallID: "third", Streams: []relay.StreamSpec{{}}})
	if !errors.Is(err, relay.ErrCapacity) || relay.SIPStatus(err) != 503 {
		t.Fatalf("over capacity: %v", err)
	}
	if _, err := remote.Update(tctx, relay.UpdateRequest{CallID: "nope"}); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("update unknown: %v", err)
	}

	fin, err := remote.Free(tctx, "rpc-call")
	if err != nil || fin.Freed != relay.FreedByRequest || fin.Streams[0].A.Packets != 1 {
		t.Fatalf("free: %+v %v", fin, err)
	}
	if _, err := remote.Free(tctx, "rpc-call"); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("second free: %v", err)
	}

	// "second" times out: the owner is told over Watch.
	select {
	case ev := <-events:
		if ev.CallID != "second" || ev.Freed != relay.FreedTimeout || ev.Owner != "n02" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no timeout event")
	}
	wcancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("watch ended with %v", err)
	}
	if st := r.Stats(); st.Sessions != 0 || st.PortPairs != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// An unreachable relay node gives an error that is none of the refusals,
// so the proxy tries another relay.
func TestRemoteUnknownNode(t *testing.T) {
	other := relay.NewRemote(connsFunc(func(string) error { return rpc.ErrUnknownNode }), "n09")
	_, err := other.Allocate(context.Background(), relay.AllocateRequest{CallID: "x", Streams: []relay.StreamSpec{{}}})
	if !errors.Is(err, rpc.ErrUnknownNode) || errors.Is(err, relay.ErrCapacity) || relay.SIPStatus(err) != 500 {
		t.Fatalf("unknown node: %v", err)
	}
}

// The JSON of `sipmesh relay sessions --json` has the documented names.
func TestSessionJSON(t *testing.T) {
	ip := testIP(t, 22)
	r := newRelay(t, []netip.Addr{ip}, nil)
	a := newEndpoint(t, ip)
	al := allocate(t, r, "json", relay.StreamSpec{A: relay.Peer{RTP: a.addr()}})
	a.send(al.Streams[0].A.RTP, rtpPacket(1, 1, "j"))
	retry.Eventually(t, 5*time.Second, func() error {
		if session(t, r, "json").Streams[0].A.Packets != 1 {
			return errNotYet
		}
		return nil
	})
	all, _ := r.Sessions(context.Background())
	raw, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	var generic []map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil || len(generic) != 1 {
		t.Fatal(err)
	}
	keys := func(m map[string]any) []string {
		var k []string
		for key := range m {
			k = append(k, key)
		}
		sort.Strings(k)
		return k
	}
	if got, want := keys(generic[0]), []string{"call_id", "created", "idle_seconds", "last_activity", "owner", "streams"}; !slices.Equal(got, want) {
		t.Fatalf("session keys %v, want %v", got, want)
	}
	legA := generic[0]["streams"].([]any)[0].(map[string]any)["a"].(map[string]any)
	if got, want := keys(legA), []string{"advertised", "bytes", "dropped", "expected", "lost", "packets", "peer", "peer_rtcp", "relay", "relay_rtcp", "rtcp_bytes", "rtcp_packets"}; !slices.Equal(got, want) {
		t.Fatalf("leg keys %v, want %v", got, want)
	}
	if legA["peer"] != a.addr().String() || legA["relay"] != al.Streams[0].A.RTP.String() || legA["packets"] != 1.0 {
		t.Fatalf("leg %v", legA)
	}
	var back []relay.SessionInfo
	if err := json.Unmarshal(raw, &back); err != nil || back[0].Streams[0].A.Peer != a.addr() {
		t.Fatalf("round trip: %v %+v", err, back)
	}
}

func TestWriteTable(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	si := relay.SessionInfo{
		CallID: "abc@host", Owner: "n02", Created: now.Add(-90 * time.Second), IdleSeconds: 0.25,
		Streams: []relay.StreamInfo{{
			A: relay.LegInfo{Peer: netip.MustParseAddrPort("192.0.2.1:4000"), Relay: netip.MustParseAddrPort("198.51.100.1:40000"), Packets: 10, Lost: 1},
			B: relay.LegInfo{Relay: netip.MustParseAddrPort("198.51.100.1:40002")},
		}},
	}
	var buf strings.Builder
	if err := relay.WriteTable(&buf, []relay.SessionInfo{si}, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%q", buf.String())
	}
	if f := strings.Fields(lines[1]); !slices.Equal(f, []string{"abc@host", "n02", "1m30s", "300ms", "0", "192.0.2.1:4000", "198.51.100.1:40000", "10", "1", "-", "198.51.100.1:40002", "0", "0"}) {
		t.Fatalf("row %q", f)
	}
}
