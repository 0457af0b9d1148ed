package dnsprov

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/overlay"
)

// pick returns "name TYPE data" of the records of name and type, sorted.
func pick(recs []Record, name, typ string) []string {
	var out []string
	for _, r := range recs {
		if r.Name == name && r.Type == typ {
			out = append(out, r.Data)
		}
	}
	slices.Sort(out)
	return out
}

func TestBuildPublishesWhatAliveProxiesOffer(t *testing.T) {
	ws := member("n4", "dc1", "10.0.0.4")
	ws.Services = map[string]string{overlay.ServiceSIPWS: "10.0.0.4:8080"}
	dead := member("n5", "dc1", "10.0.0.5")
	dead.State = overlay.StateDead
	dead.Services[overlay.ServiceSIPWSS] = "10.0.0.5:8443"
	suspect := member("n6", "dc1", "10.0.0.6")
	suspect.State = overlay.StateSuspect
	registrarOnly := member("n7", "dc1", "10.0.0.7")
	registrarOnly.Roles = []string{"registrar"}
	tlsOnly := member("n8", "dc1", "10.0.0.8")
	tlsOnly.Services = map[string]string{overlay.ServiceSIPTLS: "10.0.0.8:5061"}

	tests := []struct {
		name    string
		members []overlay.Member
		naptr   []string
		udp     []string
		ws      []string
		seeds   []string
		addrs   []string // names with an A record
	}{
		{
			name:    "udp tcp tls",
			members: []overlay.Member{member("n1", "dc1", "10.0.0.1"), member("n2", "dc1", "10.0.0.2")},
			naptr: []string{
				`10 10 "s" "SIPS+D2T" "" _sips._tcp.example.test.`,
				`10 20 "s" "SIP+D2T" "" _sip._tcp.example.test.`,
				`10 30 "s" "SIP+D2U" "" _sip._udp.example.test.`,
			},
			udp:   []string{"10 10 5060 n1.example.test.", "10 10 5060 n2.example.test."},
			seeds: []string{"10 10 7946 n1.example.test.", "10 10 7946 n2.example.test."},
			addrs: []string{"n1.example.test.", "n2.example.test."},
		},
		{
			name:    "websocket only where offered, dead and suspect left out",
			members: []overlay.Member{ws, dead, suspect},
			naptr:   []string{`10 50 "s" "SIP+D2W" "" _sip._ws.example.test.`},
			ws:      []string{"10 10 8080 n4.example.test."},
			seeds:   []string{"10 10 7946 n4.example.test."},
			addrs:   []string{"n4.example.test."},
		},
		{
			name:    "registrar-only node is a seed and has an address but takes no SIP",
			members: []overlay.Member{registrarOnly, tlsOnly},
			naptr:   []string{`10 10 "s" "SIPS+D2T" "" _sips._tcp.example.test.`},
			seeds:   []string{"10 10 7946 n7.example.test.", "10 10 7946 n8.example.test."},
			addrs:   []string{"n7.example.test.", "n8.example.test."},
		},
		{
			name:    "nobody alive: nothing but SOA and NS",
			members: []overlay.Member{dead},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.PerDatacenter = false
			recs, err := Build(cfg, tt.members, Perspective{Self: "n1"})
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, got, want []string) {
				t.Helper()
				if !slices.Equal(got, want) {
					t.Errorf("%s:\n got %q\nwant %q", what, got, want)
				}
			}
			check("NAPTR", pick(recs, "example.test.", "NAPTR"), tt.naptr)
			check("_sip._udp SRV", pick(recs, "_sip._udp.example.test.", "SRV"), tt.udp)
			check("_sip._ws SRV", pick(recs, "_sip._ws.example.test.", "SRV"), tt.ws)
			check("_sipmesh._tcp SRV", pick(recs, "_sipmesh._tcp.example.test.", "SRV"), tt.seeds)
			var addrs []string
			for _, r := range recs {
				if r.Type == "A" {
					addrs = append(addrs, r.Name)
				}
			}
			check("A owners", addrs, tt.addrs)
			if got := pick(recs, "example.test.", "SOA"); len(got) != 1 || !strings.HasPrefix(got[0], "n1.example.test. hostmaster.example.test. ") {
				t.Errorf("SOA = %q", got)
			}
			for _, r := range recs {
				if _, err := toRR(r); err != nil {
					t.Errorf("record does not parse: %v", err)
				}
			}
		})
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	var ms []overlay.Member
	for i, n := range []string{"a1", "b2", "c3", "d4", "e5", "f6"} {
		m := member(n, []string{"dc1", "dc2", "dc3"}[i%3], "10.0.1."+string(rune('1'+i)))
		m.Services[overlay.ServiceSIPWS] = "10.0.1." + string(rune('1'+i)) + ":8080"
		ms = append(ms, m)
	}
	want, err := Build(testConfig(), ms, Perspective{Self: "a1", Datacenter: "dc2"})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20; i++ {
		shuffled := slices.Clone(ms)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		got, _ := Build(testConfig(), shuffled, Perspective{Self: "a1", Datacenter: "dc2"})
		if !slices.Equal(got, want) {
			t.Fatalf("order of members changed the zone:\n%v\nvs\n%v", got, want)
		}
	}
	// Canonical order: the apex first, and SRV sets by priority.
	if want[0].Name != "example.test." || want[0].Type != "SOA" {
		t.Errorf("first record = %v, want the SOA", want[0])
	}
	udp := pick(want, "_sip._udp.example.test.", "SRV")
	if len(udp) != 6 {
		t.Fatalf("udp SRV = %v", udp)
	}
}

func TestBuildDatacenterPreference(t *testing.T) {
	ms := []overlay.Member{member("n1", "dc1", "10.0.0.1"), member("n2", "dc2", "10.0.0.2"), member("n3", "dc2", "10.0.0.3")}
	gone := member("n9", "dc3", "10.0.0.9")
	gone.State = overlay.StateDead
	ms = append(ms, gone)
	tests := []struct {
		view, name string
		want       []string
	}{
		{"dc2", "_sip._udp.example.test.", []string{"10 10 5060 n2.example.test.", "10 10 5060 n3.example.test.", "20 10 5060 n1.example.test."}},
		{"dc1", "_sip._udp.example.test.", []string{"10 10 5060 n1.example.test.", "20 10 5060 n2.example.test.", "20 10 5060 n3.example.test."}},
		{"", "_sip._udp.example.test.", []string{"10 10 5060 n1.example.test.", "10 10 5060 n2.example.test.", "10 10 5060 n3.example.test."}},
		// Per-datacenter names do not depend on who answers.
		{"dc2", "_sip._udp.dc1.example.test.", []string{"10 10 5060 n1.example.test.", "20 10 5060 n2.example.test.", "20 10 5060 n3.example.test."}},
		{"", "_sips._tcp.dc2.example.test.", []string{"10 10 5061 n2.example.test.", "10 10 5061 n3.example.test.", "20 10 5061 n1.example.test."}},
		// A datacenter whose nodes are all dead still answers, with the others.
		{"", "_sip._tcp.dc3.example.test.", []string{"20 10 5060 n1.example.test.", "20 10 5060 n2.example.test.", "20 10 5060 n3.example.test."}},
	}
	for _, tt := range tests {
		recs, err := Build(testConfig(), ms, Perspective{Self: "n1", Datacenter: tt.view})
		if err != nil {
			t.Fatal(err)
		}
		if got := pick(recs, tt.name, "SRV"); !slices.Equal(got, tt.want) {
			t.Errorf("view %q %s:\n got %q\nwant %q", tt.view, tt.name, got, tt.want)
		}
		if got := pick(recs, "dc1.example.test.", "NAPTR"); len(got) != 3 || !strings.HasSuffix(got[2], "_sip._udp.dc1.example.test.") {
			t.Errorf("dc1 NAPTR = %q", got)
		}
	}
}

func TestBuildServiceOnOtherAddress(t *testing.T) {
	m := member("n1", "dc1", "10.0.0.1")
	m.Services[overlay.ServiceSIPUDP] = "192.0.2.7:5070"
	m.Services[overlay.ServiceSIPTCP] = "0.0.0.0:5060"
	m.Services[overlay.ServiceSIPTLS] = "[2001:db8::1]:5061"
	recs, err := Build(testConfig(), []overlay.Member{m}, Perspective{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, typ, want string }{
		{"_sip._udp.example.test.", "SRV", "10 10 5070 sip-udp.n1.example.test."},
		{"sip-udp.n1.example.test.", "A", "192.0.2.7"},
		{"_sip._tcp.example.test.", "SRV", "10 10 5060 n1.example.test."},
		{"_sips._tcp.example.test.", "SRV", "10 10 5061 sip-tls.n1.example.test."},
		{"sip-tls.n1.example.test.", "AAAA", "2001:db8::1"},
	} {
		if got := pick(recs, c.name, c.typ); !slices.Equal(got, []string{c.want}) {
			t.Errorf("%s %s = %q, want %q", c.name, c.typ, got, c.want)
		}
	}
	if got := pick(recs, "example.test.", "SOA"); got != nil {
		t.Errorf("neutral perspective published SOA %q", got)
	}
}

func TestZoneSerialGrowsOnlyOnChange(t *testing.T) {
	cfg := testConfig()
	a, _ := Build(cfg, []overlay.Member{member("n1", "dc1", "10.0.0.1")}, Perspective{Self: "n1"})
	b, _ := Build(cfg, []overlay.Member{member("n1", "dc1", "10.0.0.1"), member("n2", "dc1", "10.0.0.2")}, Perspective{Self: "n1"})
	t0 := time.Unix(1_800_000_000, 0)

	z1 := Zone{}.Next("example.test.", a, t0)
	if z1.Serial != 1_800_000_000 {
		t.Fatalf("first serial = %d, want unix time", z1.Serial)
	}
	if soa := pick(z1.Records, "example.test.", "SOA"); !strings.Contains(soa[0], " 1800000000 ") {
		t.Errorf("SOA data does not carry the serial: %q", soa)
	}
	if z := z1.Next("example.test.", a, t0.Add(time.Hour)); z.Serial != z1.Serial {
		t.Errorf("unchanged content moved the serial %d -> %d", z1.Serial, z.Serial)
	}
	z2 := z1.Next("example.test.", b, t0) // same second
	if z2.Serial != z1.Serial+1 {
		t.Errorf("change within the same second: serial %d, want %d", z2.Serial, z1.Serial+1)
	}
	z3 := z2.Next("example.test.", a, t0.Add(-time.Hour)) // clock went back
	if z3.Serial != z2.Serial+1 {
		t.Errorf("clock went back: serial %d, want %d", z3.Serial, z2.Serial+1)
	}
	z4 := z3.Next("example.test.", b, t0.Add(time.Hour))
	if z4.Serial != 1_800_003_600 {
		t.Errorf("later change: serial %d, want unix time", z4.Serial)
	}
}

func TestBuildRejectsBadCluster(t *testing.T) {
	for _, c := range []string{"", "Example..test", "exa mple.test", "-x.test"} {
		cfg := testConfig()
		cfg.Cluster = c
		if _, err := Build(cfg, nil, Perspective{}); err == nil || !strings.HasPrefix(err.Error(), "dnsprov: ") {
			t.Errorf("cluster %q: err = %v", c, err)
		}
	}
}
