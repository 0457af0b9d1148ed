package dnsprov

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sipmesh/sipmesh/overlay"
)

// BenchmarkServerUDP measures the embedded server's throughput: parallel
// Go clients, each on its own UDP socket, asking for the _sip._udp SRV set
// (3 answers + 3 additional A records) over loopback.
func BenchmarkServerUDP(b *testing.B) {
	s := startServer(b, testConfig(), threeNodes().view("n1"))
	addr := s.Addr().String()
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c := &dns.Client{Timeout: 2 * time.Second}
		conn, err := c.Dial(addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		m := new(dns.Msg)
		m.SetQuestion("_sip._udp."+testCluster+".", dns.TypeSRV)
		for pb.Next() {
			r, _, err := c.ExchangeWithConn(m, conn)
			if err != nil || len(r.Answer) != 3 || len(r.Extra) != 3 {
				b.Errorf("answer %v, err %v", r, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "queries/s")
}

// srvTargetsGo counts the SRV answers for name at server and whether any
// points at node.
func srvHas(b *testing.B, c *dns.Client, server, name, node string) (int, bool) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeSRV)
	r, _, err := c.Exchange(m, server)
	if err != nil {
		b.Fatal(err)
	}
	has := false
	for _, rr := range r.Answer {
		if strings.HasPrefix(rr.(*dns.SRV).Target, node+".") {
			has = true
		}
	}
	return len(r.Answer), has
}

// waitFor polls cond without sleeping (so the figure is not a poll
// interval) for at most 10s.
func waitFor(b *testing.B, what string, cond func() bool) {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("%s: not within 10s", what)
		}
	}
}

// BenchmarkDeathToRemovalEmbedded is the time from a member's death
// notification to the embedded server no longer handing it out.
func BenchmarkDeathToRemovalEmbedded(b *testing.B) {
	mesh := threeNodes()
	s := startServer(b, testConfig(), mesh.view("n1"))
	c := &dns.Client{Timeout: 2 * time.Second}
	name := "_sip._udp." + testCluster + "."
	gone := func() bool { _, has := srvHas(b, c, s.Addr().String(), name, "n3"); return !has }
	b.ResetTimer()
	for range b.N {
		mesh.setState("n3", overlay.StateDead)
		waitFor(b, "n3 removed", gone)
		b.StopTimer()
		mesh.setState("n3", overlay.StateAlive)
		waitFor(b, "n3 back", func() bool { return !gone() })
		b.StartTimer()
	}
}

// BenchmarkDeathToRemovalRFC2136 is the time from a member's death
// notification to a real BIND 9 no longer handing out its SRV and A
// records: the survivor's read of the zone, its prerequisite-guarded
// update, and BIND applying it.
func BenchmarkDeathToRemovalRFC2136(b *testing.B) {
	ns := startNamed(b)
	mesh := newMesh(member("n1", "dc1", "127.0.0.101"), member("n2", "dc1", "127.0.0.102"), member("n3", "dc1", "127.0.0.103"))
	ctx := context.Background()
	var survivors []*Updater
	for _, n := range []string{"n1", "n2"} {
		u, err := NewUpdater(updaterConfig(ns), mesh.view(n), nil)
		if err != nil {
			b.Fatal(err)
		}
		u.Start()
		b.Cleanup(u.Close)
		survivors = append(survivors, u)
	}
	c := &dns.Client{Timeout: 2 * time.Second}
	name := "_sip._udp." + testCluster + "."
	addrGone := func() bool {
		m := new(dns.Msg)
		m.SetQuestion("n3."+testCluster+".", dns.TypeA)
		r, _, err := c.Exchange(m, ns.Addr)
		return err == nil && r.Rcode == dns.RcodeNameError
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		// n3 (re)starts: alive in every view, its records published.
		mesh.setState("n3", overlay.StateAlive)
		for _, u := range survivors {
			if err := u.Sync(ctx); err != nil {
				b.Fatal(err)
			}
		}
		n3, err := NewUpdater(updaterConfig(ns), mesh.view("n3"), nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := n3.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		if _, has := srvHas(b, c, ns.Addr, name, "n3"); !has {
			b.Fatal("n3 not published")
		}
		b.StartTimer()
		mesh.setState("n3", overlay.StateDead)
		waitFor(b, "n3 removed from BIND", func() bool {
			_, has := srvHas(b, c, ns.Addr, name, "n3")
			return !has && addrGone()
		})
	}
}
