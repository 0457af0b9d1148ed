package dnsprov

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sipmesh/sipmesh/internal/retry"
	"github.com/sipmesh/sipmesh/overlay"
)

func TestDiscoverSeeds(t *testing.T) {
	mesh := threeNodes()
	gossipOnly := member("n4", "dc1", "127.0.0.104")
	gossipOnly.Roles = []string{"registrar"}
	gossipOnly.Address = "127.0.0.104:7000"
	mesh.update(func(ms []overlay.Member) []overlay.Member { return append(ms, gossipOnly) })
	s := startServer(t, testConfig(), mesh.view("n1"))
	ctx := context.Background()

	seeds, err := DiscoverSeeds(ctx, s.Addr().String(), testCluster)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(seeds)
	if want := []string{"127.0.0.101:7946", "127.0.0.102:7946", "127.0.0.103:7946", "127.0.0.104:7000"}; !slices.Equal(seeds, want) {
		t.Fatalf("seeds %q, want %q", seeds, want)
	}

	mesh.setState("n2", overlay.StateDead)
	retry.Eventually(t, 5*time.Second, func() error {
		seeds, err = DiscoverSeeds(ctx, s.Addr().String(), testCluster+".")
		if err == nil && len(seeds) != 3 {
			err = fmt.Errorf("seeds after n2 died: %q", seeds)
		}
		return err
	})

	_, err = DiscoverSeeds(ctx, s.Addr().String(), "other.test")
	if err == nil || !strings.Contains(err.Error(), "REFUSED") {
		t.Errorf("foreign cluster: err = %v, want the server's REFUSED", err)
	}
	for _, n := range []string{"n1", "n3", "n4"} {
		mesh.setState(n, overlay.StateDead)
	}
	retry.Eventually(t, 5*time.Second, func() error {
		_, err := DiscoverSeeds(ctx, s.Addr().String(), testCluster)
		if err == nil || !strings.Contains(err.Error(), "set overlay.join") {
			return fmt.Errorf("no alive node: err = %v, want advice to set overlay.join", err)
		}
		return nil
	})
}

func TestResolveSIPOrdersByNAPTRThenSRV(t *testing.T) {
	n1 := member("n1", "dc1", "127.0.0.101")
	n1.Services[overlay.ServiceSIPWS] = "127.0.0.101:8080"
	mesh := newMesh(n1, member("n2", "dc2", "127.0.0.102"), member("n3", "dc2", "127.0.0.103"))
	s := startServer(t, testConfig(), mesh.view("n2")) // the server of dc2
	ts, err := ResolveSIP(context.Background(), s.Addr().String(), testCluster)
	if err != nil {
		t.Fatal(err)
	}
	var transports []string
	for _, tg := range ts {
		if len(transports) == 0 || transports[len(transports)-1] != tg.Transport {
			transports = append(transports, tg.Transport)
		}
	}
	if want := []string{"tls", "tcp", "udp", "ws"}; !slices.Equal(transports, want) {
		t.Fatalf("transport order %v, want %v (NAPTR preference)", transports, want)
	}
	for i, tg := range ts {
		if tg.Transport != "udp" {
			continue
		}
		// Within a transport, priority order: dc2's nodes (10) before n1 (20).
		if near := tg.Priority == 10; near != (tg.Host != "n1."+testCluster) {
			t.Errorf("target %d %+v: wrong priority for its datacenter", i, tg)
		}
		if i > 0 && ts[i-1].Transport == "udp" && ts[i-1].Priority > tg.Priority {
			t.Errorf("targets out of priority order: %+v then %+v", ts[i-1], tg)
		}
	}
	if got := ts[0]; got.Transport != "tls" || got.Priority != 10 || !strings.HasSuffix(got.Addr, ":5061") {
		t.Errorf("first target %+v", got)
	}
	ws := ts[len(ts)-1]
	if ws != (Target{Transport: "ws", Host: "n1.example.test", Addr: "127.0.0.101:8080", Priority: 20, Weight: 10}) {
		t.Errorf("ws target %+v", ws)
	}
}

func TestResolveSIPFallbacks(t *testing.T) {
	// A zone with SRV but no NAPTR, and a name with only an address: the
	// §4.1/§4.2 fallbacks, served by a hand-written handler on the real
	// embedded server's index.
	recs := []Record{
		{Name: "srv.test.", Type: "SOA", TTL: 30, Data: "ns.srv.test. h.srv.test. 1 3600 600 86400 30"},
		{Name: "_sip._tcp.srv.test.", Type: "SRV", TTL: 30, Data: "10 10 5070 host.srv.test."},
		{Name: "_sip._udp.srv.test.", Type: "SRV", TTL: 30, Data: "0 0 5060 ."},
		{Name: "host.srv.test.", Type: "A", TTL: 30, Data: "192.0.2.10"},
		{Name: "plain.srv.test.", Type: "A", TTL: 30, Data: "192.0.2.20"},
	}
	addr := serveIndex(t, newIndex(Zone{Origin: "srv.test.", Records: recs}))
	ctx := context.Background()
	for _, c := range []struct {
		domain string
		want   []Target
	}{
		{"srv.test", []Target{{Transport: "tcp", Host: "host.srv.test", Addr: "192.0.2.10:5070", Priority: 10, Weight: 10}}},
		{"plain.srv.test", []Target{{Transport: "udp", Host: "plain.srv.test", Addr: "192.0.2.20:5060"}}},
		{"plain.srv.test:5080", []Target{{Transport: "udp", Host: "plain.srv.test", Addr: "192.0.2.20:5080"}}},
		{"192.0.2.99", []Target{{Transport: "udp", Host: "192.0.2.99", Addr: "192.0.2.99:5060"}}},
		{"[2001:db8::1]:5062", []Target{{Transport: "udp", Host: "2001:db8::1", Addr: "[2001:db8::1]:5062"}}},
	} {
		got, err := ResolveSIP(ctx, addr, c.domain)
		if err != nil {
			t.Errorf("%s: %v", c.domain, err)
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.domain, got, c.want)
		}
	}
	if _, err := ResolveSIP(ctx, addr, "missing.srv.test"); err == nil || !strings.Contains(err.Error(), "no SIP servers found for missing.srv.test") ||
		!errors.Is(err, ErrNoSIPServers) {
		t.Errorf("missing name: err = %v, want one wrapping ErrNoSIPServers", err)
	}
	// A server that does not answer is a failure, not an answer.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := ResolveSIP(tctx, dead.LocalAddr().String(), "srv.test"); err == nil || errors.Is(err, ErrNoSIPServers) {
		t.Errorf("silent server: err = %v, want a failure that is not ErrNoSIPServers", err)
	}
}

// serveIndex answers from idx on a loopback UDP port.
func serveIndex(t *testing.T, idx *index) string {
	t.Helper()
	pc, l, err := listenBoth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) { w.WriteMsg(idx.answer(r, true)) })}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestOrderSRVFollowsPriorityAndWeight(t *testing.T) {
	mk := func(prio, weight uint16, target string) dns.RR {
		return &dns.SRV{Hdr: dns.RR_Header{Rrtype: dns.TypeSRV}, Priority: prio, Weight: weight, Target: target}
	}
	rrs := []dns.RR{mk(20, 10, "c."), mk(10, 90, "a."), mk(10, 10, "b."), mk(10, 0, "z.")}
	first := map[string]int{}
	for range 2000 {
		o := orderSRV(rrs)
		if len(o) != 4 || o[3].Target != "c." {
			t.Fatalf("priority 20 not last: %v", o)
		}
		first[o[0].Target]++
	}
	// RFC 2782: a has 90 of 100 weight units; z (weight 0) is rarely first.
	if first["a."] < 1600 || first["a."] > 1990 || first["b."] < 100 || first["z."] > 60 {
		t.Errorf("first picks %v: not weighted 90:10:0", first)
	}
}
