package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipmesh/sipmesh/overlay/ring"
	"github.com/sipmesh/sipmesh/roles/proxy"
	"github.com/sipmesh/sipmesh/roles/relay"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// The relay of a call: the ring's order for its Call-ID, this node's
// datacenter first, relays that just failed last.
func TestRelayOrder(t *testing.T) {
	now := time.Now()
	ringOrder := []ring.Node{{Name: "r1", Datacenter: "dc2"}, {Name: "r2", Datacenter: "dc1"}, {Name: "r3", Datacenter: "dc2"}, {Name: "r4", Datacenter: "dc1"}}
	cases := []struct {
		dc     string
		failed map[string]time.Time
		want   []string
	}{
		{"dc1", nil, []string{"r2", "r4", "r1", "r3"}},
		{"dc2", nil, []string{"r1", "r3", "r2", "r4"}},
		{"dc3", nil, []string{"r1", "r2", "r3", "r4"}},
		{"dc1", map[string]time.Time{"r2": now.Add(-time.Second)}, []string{"r4", "r1", "r3", "r2"}},
		{"dc1", map[string]time.Time{"r2": now.Add(-time.Hour)}, []string{"r2", "r4", "r1", "r3"}},
	}
	for _, c := range cases {
		if got := relayOrder(ringOrder, c.dc, c.failed, now); !reflect.DeepEqual(got, c.want) {
			t.Errorf("dc %s, failed %v: %v, want %v", c.dc, c.failed, got, c.want)
		}
	}
}

// An SDP updates its sender's side only; a hold address is no address.
func TestStreamSpecs(t *testing.T) {
	media, err := relay.ParseSDP([]byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
		"m=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	prev := []relay.StreamSpec{{A: relay.Peer{Family: "IP4"}, B: relay.Peer{Family: "IP6"}}}
	specs, merged := streamSpecs(proxy.SideA, media, prev)
	if len(specs) != 2 || specs[0].A.RTP.String() != "192.0.2.1:4000" || specs[0].B != (relay.Peer{}) ||
		specs[1].A.RTP.IsValid() || specs[1].A.Family != "IP4" {
		t.Errorf("specs %+v", specs)
	}
	if len(merged) != 2 || merged[0].B.Family != "IP6" || merged[0].A.RTP.String() != "192.0.2.1:4000" {
		t.Errorf("merged %+v", merged)
	}
}

// testRelays are real relay engines named r1 (dc1) and r2 (dc2), each on
// its own loopback address of 127.0.52.0/24.
func testRelays(t *testing.T) map[string]*relay.Relay {
	t.Helper()
	out := map[string]*relay.Relay{}
	for i, name := range []string{"r1", "r2"} {
		cfg := relay.DefaultConfig()
		cfg.Interfaces = []relay.Interface{{Bind: netip.AddrFrom4([4]byte{127, 0, 52, byte(201 + i)})}}
		cfg.PortMin, cfg.PortMax = 23000, 23099
		r, err := relay.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		out[name] = r
	}
	return out
}

func testMedia(t *testing.T, relays map[string]*relay.Relay, nodes []ring.Node) *relayMedia {
	return &relayMedia{
		mode: relay.ModeAlways, self: "p1", dc: "dc1",
		relays:   func(string) []ring.Node { return nodes },
		ctl:      func(node string) relay.Controller { return relays[node] },
		log:      slog.New(slog.DiscardHandler),
		sessions: map[string]*mediaSession{}, failed: map[string]time.Time{}, watching: map[string]bool{},
		failovers: prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}),
	}
}

const (
	offerSDP  = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=candidate:1 1 UDP 1 192.0.2.1 4000 typ host\r\n"
	answerSDP = "v=0\r\no=- 2 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"
)

// The relay of the call: dc1's r1; its offer and answer point at r1's ports
// of the side that receives them; a dead relay's call moves to r2 on its
// next offer; a full relay gives way to the next; none left is 503.
func TestRelayMediaSessions(t *testing.T) {
	rs := testRelays(t)
	nodes := []ring.Node{{Name: "r2", Datacenter: "dc2"}, {Name: "r1", Datacenter: "dc1"}}
	m := testMedia(t, rs, nil)
	m.relays = func(string) []ring.Node { return nodes }
	ctx := context.Background()
	out, err := m.SDP(ctx, proxy.SDPUpdate{CallID: "c1", From: proxy.SideA, Body: []byte(offerSDP)})
	if err != nil {
		t.Fatal(err)
	}
	si, ok := rs["r1"].Session("c1")
	if !ok {
		t.Fatalf("no session on r1 (dc1)")
	}
	b := si.Streams[0].B.Relay
	if !strings.Contains(string(out), "c=IN IP4 127.0.52.201") || !strings.Contains(string(out), fmt.Sprintf("m=audio %d ", b.Port())) ||
		strings.Contains(string(out), "candidate") || strings.Contains(string(out), "192.0.2.1") {
		t.Errorf("offer toward b:\n%s\nwant r1's b port %s, no candidate, no caller address", out, b)
	}
	if adv := si.Streams[0].A.Advertised.String(); adv != "192.0.2.1:4000" {
		t.Errorf("a advertised %s", adv)
	}
	out, err = m.SDP(ctx, proxy.SDPUpdate{CallID: "c1", From: proxy.SideB, Body: []byte(answerSDP)})
	if err != nil {
		t.Fatal(err)
	}
	si, _ = rs["r1"].Session("c1")
	if a := si.Streams[0].A.Relay; !strings.Contains(string(out), fmt.Sprintf("m=audio %d ", a.Port())) || si.Streams[0].B.Advertised.String() != "198.51.100.1:5000" {
		t.Errorf("answer toward a:\n%s\nsession %+v", out, si)
	}
	// A 2xx of a losing fork branch: rewritten, the relay untouched.
	other := strings.ReplaceAll(answerSDP, "198.51.100.1", "198.51.100.9")
	if out, err = m.SDP(ctx, proxy.SDPUpdate{CallID: "c1", From: proxy.SideB, Body: []byte(other), RewriteOnly: true}); err != nil || strings.Contains(string(out), "198.51.100.9") {
		t.Errorf("rewrite only: %v\n%s", err, out)
	}
	if si, _ = rs["r1"].Session("c1"); si.Streams[0].B.Advertised.String() != "198.51.100.1:5000" {
		t.Errorf("rewrite only changed the relay: %+v", si.Streams[0].B)
	}

	// r1 dies: the call is lost until its next offer, which goes to r2
	// with both parties' last addresses.
	nodes = nodes[:1]
	m.relayGone("r1")
	m.Free(ctx, "nothing") // no session: nothing happens
	reoffer := strings.ReplaceAll(offerSDP, "o=- 1 1", "o=- 1 2")
	if _, err = m.SDP(ctx, proxy.SDPUpdate{CallID: "c1", From: proxy.SideA, Body: []byte(reoffer), Relatch: true}); err != nil {
		t.Fatal(err)
	}
	si, ok = rs["r2"].Session("c1")
	if !ok || si.Streams[0].A.Advertised.String() != "192.0.2.1:4000" || si.Streams[0].B.Advertised.String() != "198.51.100.1:5000" {
		t.Fatalf("after r1 died, the re-offer's session on r2: %+v %v", si, ok)
	}
	m.Free(ctx, "c1")
	if _, ok := rs["r2"].Session("c1"); ok {
		t.Errorf("session on r2 not freed")
	}

	// r1 refuses (closed): r2 takes the call; both closed: 503.
	nodes = []ring.Node{{Name: "r2", Datacenter: "dc2"}, {Name: "r1", Datacenter: "dc1"}}
	rs["r1"].Close()
	if _, err = m.SDP(ctx, proxy.SDPUpdate{CallID: "c2", From: proxy.SideA, Body: []byte(offerSDP)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := rs["r2"].Session("c2"); !ok {
		t.Errorf("c2 not on r2 after r1 closed")
	}
	rs["r2"].Close()
	_, err = m.SDP(ctx, proxy.SDPUpdate{CallID: "c3", From: proxy.SideA, Body: []byte(offerSDP)})
	if st := sipstatus.Of(err); st.Code != 503 || !errors.Is(err, relay.ErrNoRelay) {
		t.Errorf("no relay left: %v (status %d), want 503 and ErrNoRelay", err, st.Code)
	}
	// An SDP that does not parse is 488; no relay on the ring, no relaying.
	if _, err = m.SDP(ctx, proxy.SDPUpdate{CallID: "c4", From: proxy.SideA, Body: []byte("v=1\r\n")}); sipstatus.Of(err).Code != 488 {
		t.Errorf("bad SDP: %v", err)
	}
	if testMedia(t, rs, nil).Wanted(proxy.Party{}, nil) {
		t.Errorf("relayed without a relay on the ring")
	}
}

// relay.mode nat: a caller whose Contact is not where its SIP comes from.
func TestRelayMediaWanted(t *testing.T) {
	m := testMedia(t, nil, []ring.Node{{Name: "r1", Datacenter: "dc1"}})
	m.mode = relay.ModeNAT
	public := proxy.Party{Source: netip.MustParseAddrPort("203.0.113.5:5060"), Contact: netip.MustParseAddrPort("203.0.113.5:5060"), Datagram: true}
	natted := public
	natted.Contact = netip.MustParseAddrPort("192.168.1.20:5060")
	if m.Wanted(public, []proxy.Party{public}) {
		t.Errorf("nat mode relayed two public parties")
	}
	if !m.Wanted(natted, []proxy.Party{public}) || !m.Wanted(public, []proxy.Party{natted}) {
		t.Errorf("nat mode did not relay a party behind NAT")
	}
	webrtc := public
	webrtc.SDP = []byte("v=0\r\no=- 1 1 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")
	if m.Wanted(webrtc, []proxy.Party{natted}) {
		t.Errorf("a WebRTC offer was relayed")
	}
	m.mode = relay.ModeAlways
	if !m.Wanted(public, []proxy.Party{public}) {
		t.Errorf("always mode did not relay")
	}
}
