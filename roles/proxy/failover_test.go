package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// Table tests of relaying to foreign domains, GRUU routing and flow
// failover against a real Proxy on loopback (127.0.64.0/24), with the
// resolver, the GRUU service and the location service faked.

type fakeResolver map[string][]Hop

func (f fakeResolver) ResolveSIP(_ context.Context, domain string) ([]Hop, error) {
	hops, ok := f[domain]
	if !ok {
		return nil, fmt.Errorf("resolver: %s: %w", domain, ErrNoSuchDomain)
	}
	return hops, nil
}

type fakeGRUUs map[string][]Target // Request-URI -> contacts; absent: invalid

func (f fakeGRUUs) LocateGRUU(_ context.Context, u sip.Uri) (string, []Target, error) {
	ts, ok := f[u.String()]
	if !ok {
		return "", nil, sipstatus.NotFound(fmt.Errorf("fake: %s is no GRUU of ours", u.String()))
	}
	return u.User + "@example.test", ts, nil
}

// uas answers every request on a UDP socket with code and counts them.
type uas struct {
	conn net.PacketConn
	got  atomic.Int32
}

func startUAS(t *testing.T, addr string, code int) *uas {
	t.Helper()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	u := &uas{conn: c}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(buf[:n])
			req, ok := m.(*sip.Request)
			if err != nil || !ok || req.IsAck() {
				continue
			}
			u.got.Add(1)
			c.WriteTo([]byte(sip.NewResponseFromRequest(req, code, sipstatus.ReasonPhrase(code), nil).String()), from)
		}
	}()
	return u
}

func (u *uas) addr() string { return u.conn.LocalAddr().String() }

// closedTCP is an address nothing listens on: connecting fails at once.
func closedTCP(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.64.9:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestRelayDomains(t *testing.T) {
	p := &Proxy{cfg: Config{RelayDomains: []string{"partner.test", "*.carrier.test."}}}
	for host, want := range map[string]bool{
		"partner.test": true, "PARTNER.test.": true, "a.carrier.test": true, "b.a.carrier.test": true,
		"carrier.test": false, "xpartner.test": false, "partner.test.evil": false, "evilcarrier.test": false,
	} {
		if got := p.relays(host); got != want {
			t.Errorf("relays(%q) = %v, want %v", host, got, want)
		}
	}
	if (&Proxy{cfg: Config{RelayDomains: []string{"*"}}}).relays("any.where") != true {
		t.Error(`"*" must relay any domain`)
	}
	if (&Proxy{}).relays("partner.test") {
		t.Error("no relay domains must relay nothing")
	}
}

// Relaying (RFC 3263): the servers are tried in order, the next one when a
// server cannot be reached or answers 503; only the domain's subscribers
// may relay; domains not allowed, and domains without servers, are
// refused.
func TestForeignRelay(t *testing.T) {
	busy := startUAS(t, "127.0.64.10:0", 503)
	good := startUAS(t, "127.0.64.11:0", 200)
	_, addr, _ := startProxy(t, Config{
		Listen:       []Listen{{Transport: "udp", Addr: "127.0.64.1:0"}},
		RelayDomains: []string{"foreign.test", "gone.test"},
		Resolver: fakeResolver{
			"foreign.test": {{Transport: "tcp", Addr: closedTCP(t)}, {Transport: "udp", Addr: busy.addr()},
				{Transport: "ws", Addr: good.addr()}, {Transport: "udp", Addr: good.addr()}},
		},
	})
	conn, err := net.ListenPacket("udp", "127.0.64.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cases := []struct {
		name, msg, want string
	}{
		{"subscriber to an allowed domain", request("MESSAGE", "sip:bob@foreign.test", "sip:alice@example.test"), "200"},
		{"stranger to an allowed domain", request("MESSAGE", "sip:bob@foreign.test", "sip:mallory@elsewhere.test"), "403"},
		{"subscriber to a domain not allowed", request("MESSAGE", "sip:bob@other.test", "sip:alice@example.test"), "403"},
		{"allowed domain without servers", request("MESSAGE", "sip:bob@gone.test", "sip:alice@example.test"), "404"},
		{"transport the servers do not offer", request("MESSAGE", "sip:bob@foreign.test;transport=tls", "sip:alice@example.test"), "404"},
	}
	for _, c := range cases {
		res := roundTrip(t, conn, addr, c.msg)
		if !strings.HasPrefix(res, "SIP/2.0 "+c.want) {
			t.Errorf("%s: want %s, got %q", c.name, c.want, firstLine(res))
		}
	}
	if busy.got.Load() != 1 || good.got.Load() != 1 {
		t.Errorf("the 503 server got %d requests, the good one %d: want 1 each", busy.got.Load(), good.got.Load())
	}
}

// GRUUs (RFC 5627 §5.3) reach their instance only; an instance's flows are
// tried one at a time and a dead TCP flow gives way to the next (RFC 5626
// §5.3); endpoints never see 430.
func TestGRUUAndFlowFailover(t *testing.T) {
	a := startUAS(t, "127.0.64.20:0", 200)
	other := startUAS(t, "127.0.64.21:0", 200)
	// The Paths name the proxy, so its address and flow key come first.
	key := []byte("0123456789abcdef0123456789abcdef")
	addr := freeUDP(t, "127.0.64.1")
	dead := "<sip:" + (&flowKeys{key: key}).token(flow{transport: "tcp", remote: closedTCP(t)}) + "@" + addr + ";transport=udp;lr>"
	forged := "<sip:" + (&flowKeys{key: []byte("not this node's key.............")}).token(flow{transport: "udp", remote: a.addr()}) + "@" + addr + ";transport=udp;lr>"
	inst := "<urn:uuid:1>"
	startProxy(t, Config{
		Listen:  []Listen{{Transport: "udp", Addr: addr}},
		FlowKey: key,
		GRUUs: fakeGRUUs{
			"sip:ann@example.test;gr=urn:uuid:1": {
				{URI: "sip:ann@127.0.64.99:9", Path: []string{dead}, Instance: inst, RegID: 1},
				{URI: "sip:ann@" + a.addr(), Instance: inst, RegID: 2},
			},
			"sip:ann@example.test;gr=urn:uuid:2": nil,
			"sip:cat@example.test;gr=urn:uuid:3": {{URI: "sip:cat@127.0.64.99:9", Path: []string{dead}, Instance: "<urn:uuid:3>", RegID: 1}},
			"sip:eve@example.test;gr=urn:uuid:4": {{URI: "sip:eve@" + a.addr(), Path: []string{forged}, Instance: "<urn:uuid:4>", RegID: 1}},
		},
		Locator: fakeLocator{"ann@example.test": {
			{URI: "sip:ann@" + other.addr()},
			{URI: "sip:ann@127.0.64.99:9", Path: []string{dead}, Instance: inst, RegID: 1},
			{URI: "sip:ann@" + a.addr(), Instance: inst, RegID: 2},
		}},
		Users: fakeUsers{"ann": true, "cat": true},
	})
	conn, err := net.ListenPacket("udp", "127.0.64.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	from := "sip:x@elsewhere.test"
	cases := []struct {
		name, msg, want string
		a, other        int32 // requests each UAS has had after the case
	}{
		{"pub-gruu: the dead flow, then the next", request("MESSAGE", "sip:ann@example.test;gr=urn:uuid:1", from), "200", 1, 0},
		{"GRUU of an instance without binding", request("MESSAGE", "sip:ann@example.test;gr=urn:uuid:2", from), "480", 1, 0},
		{"GRUU not issued here", request("MESSAGE", "sip:ann@example.test;gr=urn:uuid:9", from), "404", 1, 0},
		{"only flow dead: 480, not 430", request("MESSAGE", "sip:cat@example.test;gr=urn:uuid:3", from), "480", 1, 0},
		{"forged flow token in the Path: binding unusable", request("MESSAGE", "sip:eve@example.test;gr=urn:uuid:4", from), "480", 1, 0},
		{"AOR: both the instance and the plain contact", request("MESSAGE", "sip:ann@example.test", from), "200", 2, 1},
		{"Route to our dead flow: 430", request("MESSAGE", "sip:ann@127.0.64.99:9", from, "Route: "+dead+"\r\n"), "430", 2, 1},
		{"Route with a forged token: 403", request("MESSAGE", "sip:ann@127.0.64.99:9", from, "Route: "+forged+"\r\n"), "403", 2, 1},
	}
	for _, c := range cases {
		res := roundTrip(t, conn, addr, c.msg)
		if !strings.HasPrefix(res, "SIP/2.0 "+c.want) {
			t.Errorf("%s: want %s, got %q", c.name, c.want, firstLine(res))
		}
		deadline := time.Now().Add(time.Second)
		for (a.got.Load() != c.a || other.got.Load() != c.other) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if a.got.Load() != c.a || other.got.Load() != c.other {
			t.Errorf("%s: the instance's UAS has %d requests, the other contact %d; want %d, %d", c.name, a.got.Load(), other.got.Load(), c.a, c.other)
		}
	}
}

// freeUDP returns "ip:port" with a port free on ip just now.
func freeUDP(t *testing.T, ip string) string {
	t.Helper()
	c, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\r\n"); return l }
