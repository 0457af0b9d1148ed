package dnsprov

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sipmesh/sipmesh/internal/retry"
	"github.com/sipmesh/sipmesh/overlay"
)

// threeNodes is a mesh of three proxies in one datacenter.
func threeNodes() *fakeMesh {
	return newMesh(member("n1", "dc1", "127.0.0.101"), member("n2", "dc1", "127.0.0.102"), member("n3", "dc1", "127.0.0.103"))
}

// followRFC3263 does with dig what a phone does: NAPTR of the domain, SRV of
// each replacement, A of each target. It returns "transport ip:port" sorted.
func followRFC3263(t *testing.T, server string, extra ...string) []string {
	t.Helper()
	naptr := runDig(t, server, append(extra, "+norec", testCluster, "NAPTR")...)
	if naptr.Status != "NOERROR" || !naptr.Has("aa") || naptr.Has("ra") {
		t.Fatalf("NAPTR answer: status %s flags %v\n%s", naptr.Status, naptr.Flags, naptr.Raw)
	}
	var out []string
	for _, n := range naptr.Data("NAPTR") {
		f := strings.Fields(n)
		service, replacement := strings.Trim(f[3], `"`), f[5]
		srv := runDig(t, server, append(extra, "+norec", replacement, "SRV")...)
		if !srv.Has("aa") {
			t.Fatalf("SRV answer not authoritative: %s", srv.Raw)
		}
		for _, s := range srv.Data("SRV") {
			sf := strings.Fields(s)
			port, target := sf[2], sf[3]
			// The additional section already carries the target's address.
			if !slices.ContainsFunc(srv.Additional, func(d dig) bool { return d.Name == target && d.Type == "A" }) {
				t.Errorf("SRV answer for %s lacks the A record of %s in the additional section", replacement, target)
			}
			a := runDig(t, server, append(extra, "+norec", target, "A")...)
			for _, ip := range a.Data("A") {
				out = append(out, service+" "+ip+":"+port)
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestServerDigFollowsNAPTRToNodesAndFollowsMembership(t *testing.T) {
	mesh := threeNodes()
	s := startServer(t, testConfig(), mesh.view("n1"))
	addr := s.Addr().String()

	want := func(ips ...string) []string {
		var out []string
		for _, ip := range ips {
			out = append(out, "SIP+D2T "+ip+":5060", "SIP+D2U "+ip+":5060", "SIPS+D2T "+ip+":5061")
		}
		slices.Sort(out)
		return out
	}
	if got := followRFC3263(t, addr); !slices.Equal(got, want("127.0.0.101", "127.0.0.102", "127.0.0.103")) {
		t.Fatalf("dig NAPTR -> SRV -> A reached\n%q\nwant\n%q", got, want("127.0.0.101", "127.0.0.102", "127.0.0.103"))
	}
	if got := followRFC3263(t, addr, "+tcp"); len(got) != 9 {
		t.Fatalf("over TCP: %q", got)
	}
	serial := s.Zone().Serial

	mesh.setState("n3", overlay.StateDead)
	retry.Eventually(t, 5*time.Second, func() error {
		r := runDig(t, addr, "+norec", "_sip._udp."+testCluster, "SRV")
		if got := r.Data("SRV"); len(got) != 2 || slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "n3.") }) {
			return fmt.Errorf("SRV after n3 died: %q", got)
		}
		return nil
	})
	if got := followRFC3263(t, addr); !slices.Equal(got, want("127.0.0.101", "127.0.0.102")) {
		t.Fatalf("after n3 died, dig reached %q", got)
	}
	if r := runDig(t, addr, "+norec", "n3."+testCluster, "A"); r.Status != "NXDOMAIN" {
		t.Errorf("dead node's address: status %s, want NXDOMAIN", r.Status)
	}
	soa := runDig(t, addr, "+norec", testCluster, "SOA").Data("SOA")
	if len(soa) != 1 || !strings.Contains(soa[0], fmt.Sprintf(" %d ", s.Zone().Serial)) || s.Zone().Serial <= serial {
		t.Errorf("SOA %q: serial %d did not grow past %d", soa, s.Zone().Serial, serial)
	}
}

func TestServerNegativeAnswers(t *testing.T) {
	s := startServer(t, testConfig(), threeNodes().view("n1"))
	addr := s.Addr().String()
	tests := []struct {
		name      string
		args      []string
		status    string
		aa        bool
		answers   int
		authority string // type expected as the only authority RR, "" for none
	}{
		{"outside the zone is refused, not recursed", []string{"+rec", "example.org", "A"}, "REFUSED", false, 0, ""},
		{"parent of the zone is refused", []string{"test", "SOA"}, "REFUSED", false, 0, ""},
		{"missing name is NXDOMAIN with SOA", []string{"nope." + testCluster, "A"}, "NXDOMAIN", true, 0, "SOA"},
		{"missing name below a node", []string{"x.n1." + testCluster, "A"}, "NXDOMAIN", true, 0, "SOA"},
		{"existing name, other type is NODATA", []string{"n1." + testCluster, "TXT"}, "NOERROR", true, 0, "SOA"},
		{"empty non-terminal is NODATA (RFC 8020)", []string{"_udp." + testCluster, "SRV"}, "NOERROR", true, 0, "SOA"},
		{"names are case-insensitive", []string{"N1.Example.TEST", "A"}, "NOERROR", true, 1, ""},
		{"CHAOS class is refused", []string{"-c", "CH", "version.bind", "TXT"}, "REFUSED", false, 0, ""},
		{"apex NS", []string{testCluster, "NS"}, "NOERROR", true, 1, ""},
		{"no EDNS works too", []string{"+noedns", "_sip._tcp." + testCluster, "SRV"}, "NOERROR", true, 3, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runDig(t, addr, tt.args...)
			if r.Status != tt.status || r.Has("aa") != tt.aa || r.Has("ra") || len(r.Answer) != tt.answers {
				t.Fatalf("status %s flags %v answers %d, want %s aa=%v answers %d\n%s", r.Status, r.Flags, len(r.Answer), tt.status, tt.aa, tt.answers, r.Raw)
			}
			var auth []string
			for _, a := range r.Authority {
				auth = append(auth, a.Type)
			}
			if want := []string{tt.authority}; tt.authority != "" && !slices.Equal(auth, want) || tt.authority == "" && len(auth) != 0 {
				t.Fatalf("authority %v, want %q\n%s", auth, tt.authority, r.Raw)
			}
			if tt.authority == "SOA" && !strings.HasSuffix(strings.Fields(r.Authority[0].Data)[6], "30") {
				t.Errorf("negative TTL (SOA minimum) = %q, want 30", r.Authority[0].Data)
			}
		})
	}

	// What dig cannot express: transfers, other opcodes, EDNS versions.
	for _, c := range []struct {
		name  string
		msg   func() *dns.Msg
		net   string
		rcode int
	}{
		{"AXFR refused", func() *dns.Msg { m := new(dns.Msg); m.SetAxfr(testCluster + "."); return m }, "tcp", dns.RcodeRefused},
		{"UPDATE not implemented", func() *dns.Msg { m := new(dns.Msg); m.SetUpdate(testCluster + "."); return m }, "udp", dns.RcodeNotImplemented},
		{"EDNS version 1 is BADVERS", func() *dns.Msg {
			m := new(dns.Msg)
			m.SetQuestion("n1."+testCluster+".", dns.TypeA)
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1)
			return m
		}, "udp", dns.RcodeBadVers},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, _, err := (&dns.Client{Net: c.net, Timeout: 2 * time.Second}).Exchange(c.msg(), addr)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != c.rcode {
				t.Fatalf("rcode %s, want %s", RcodeName(r.Rcode), RcodeName(c.rcode))
			}
		})
	}
}

func TestServerPrefersItsOwnDatacenter(t *testing.T) {
	mesh := newMesh(member("n1", "dc1", "127.0.0.101"), member("n2", "dc2", "127.0.0.102"), member("n3", "dc2", "127.0.0.103"))
	for _, c := range []struct{ self, near string }{{"n1", "n1"}, {"n2", "n2 n3"}} {
		s := startServer(t, testConfig(), mesh.view(c.self))
		r := runDig(t, s.Addr().String(), "_sip._udp."+testCluster, "SRV")
		var near []string
		for _, d := range r.Data("SRV") {
			f := strings.Fields(d)
			if f[0] == "10" {
				near = append(near, strings.TrimSuffix(f[3], "."+testCluster+"."))
			} else if f[0] != "20" {
				t.Errorf("priority %s", f[0])
			}
		}
		if strings.Join(near, " ") != c.near || len(r.Data("SRV")) != 3 {
			t.Errorf("server of %s: priority-10 targets %v of %q, want %s", c.self, near, r.Data("SRV"), c.near)
		}
	}
}

func TestServerTruncatesOverUDPOnly(t *testing.T) {
	var ms []overlay.Member
	for i := range 40 {
		ms = append(ms, member(fmt.Sprintf("node%02d", i), "dc1", fmt.Sprintf("127.0.1.%d", i+1)))
	}
	s := startServer(t, testConfig(), newMesh(ms...).view("node00"))
	udp := runDig(t, s.Addr().String(), "+noedns", "+ignore", "_sip._udp."+testCluster, "SRV")
	if !udp.Has("tc") {
		t.Fatalf("40 SRV records in 512 bytes without TC:\n%s", udp.Raw)
	}
	tcp := runDig(t, s.Addr().String(), "+tcp", "_sip._udp."+testCluster, "SRV")
	if tcp.Has("tc") || len(tcp.Data("SRV")) != 40 || len(tcp.Additional) < 40 {
		t.Fatalf("over TCP: tc=%v %d SRV %d additional", tcp.Has("tc"), len(tcp.Data("SRV")), len(tcp.Additional))
	}
	// With EDNS the answer fits; the additional section is trimmed rather
	// than the answer truncated (RFC 2181 §9).
	edns := runDig(t, s.Addr().String(), "+bufsize=1232", "_sip._udp."+testCluster, "SRV")
	if edns.Has("tc") || len(edns.Data("SRV")) != 40 {
		t.Fatalf("EDNS 1232: tc=%v %d SRV", edns.Has("tc"), len(edns.Data("SRV")))
	}
}
