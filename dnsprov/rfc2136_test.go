package dnsprov

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sipmesh/sipmesh/internal/bindtest"
	"github.com/sipmesh/sipmesh/internal/retry"
	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/ring"
)

// echoNode is a fake node whose SIP UDP port answers with its name, so a
// test can tell which node a resolved target reaches.
func echoNode(t *testing.T, name, dc, ip string) overlay.Member {
	t.Helper()
	pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on %s (loopback 127.0.0.0/8): %v", ip, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(name), from)
		}
	}()
	m := member(name, dc, ip)
	m.Services[overlay.ServiceSIPUDP] = pc.LocalAddr().String()
	return m
}

// ping sends one datagram to addr and returns the answer ("" on timeout).
func ping(addr string) string {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	c.Write([]byte("OPTIONS"))
	b := make([]byte, 100)
	n, err := c.Read(b)
	if err != nil {
		return ""
	}
	return string(b[:n])
}

// targetsAt returns the node names that dig sees in name's SRV set at server.
func targetsAt(t *testing.T, server, name string) []string {
	t.Helper()
	var out []string
	for _, d := range runDig(t, server, "+norec", name, "SRV").Data("SRV") {
		out = append(out, strings.TrimSuffix(strings.Fields(d)[3], "."+testCluster+"."))
	}
	slices.Sort(out)
	return out
}

func want(got []string, exp ...string) error {
	if !slices.Equal(got, exp) {
		return fmt.Errorf("got %q, want %q", got, exp)
	}
	return nil
}

func TestRFC2136RecordsFollowTheMesh(t *testing.T) {
	// Records someone else put in the zone must survive everything below.
	foreign := []string{
		"_sip._udp IN SRV 50 10 5060 legacy.example.org.",
		`@ IN NAPTR 90 10 "s" "SIP+D2U" "" _sip._udp.legacy.example.org.`,
		`n1 IN TXT "owned by the operator"`,
	}
	ns := startNamed(t, foreign...)
	n1 := echoNode(t, "n1", "dc1", "127.0.77.1")
	n2 := echoNode(t, "n2", "dc1", "127.0.77.2")
	n3 := echoNode(t, "n3", "dc2", "127.0.77.3")
	n3.Services[overlay.ServiceSIPWS] = "127.0.77.3:8080" // the only WebSocket node
	mesh := newMesh(n1, n2, n3)

	logs := &syncBuffer{}
	ups := map[string]*Updater{}
	for _, n := range []string{"n1", "n2", "n3"} {
		u, err := NewUpdater(updaterConfig(ns), mesh.view(n), testLogger(logs).With("node", n))
		if err != nil {
			t.Fatal(err)
		}
		u.Start()
		t.Cleanup(u.Close)
		ups[n] = u
	}

	udp := "_sip._udp." + testCluster
	retry.Eventually(t, 10*time.Second, func() error {
		if err := want(targetsAt(t, ns.Addr, udp), "legacy.example.org.", "n1", "n2", "n3"); err != nil {
			return err
		}
		if err := want(targetsAt(t, ns.Addr, "_sipmesh._tcp."+testCluster), "n1", "n2", "n3"); err != nil {
			return err
		}
		if err := want(targetsAt(t, ns.Addr, "_sip._udp.dc2."+testCluster), "n1", "n2", "n3"); err != nil {
			return err
		}
		return want(runDig(t, ns.Addr, "+norec", testCluster, "NAPTR").Data("NAPTR"),
			`10 10 "s" "SIPS+D2T" "" _sips._tcp.example.test.`,
			`10 20 "s" "SIP+D2T" "" _sip._tcp.example.test.`,
			`10 30 "s" "SIP+D2U" "" _sip._udp.example.test.`,
			`10 50 "s" "SIP+D2W" "" _sip._ws.example.test.`,
			`90 10 "s" "SIP+D2U" "" _sip._udp.legacy.example.org.`,
		)
	})
	for _, n := range []string{"n1", "n2", "n3"} {
		a := runDig(t, ns.Addr, "+norec", n+"."+testCluster, "A").Data("A")
		if err := want(a, "127.0.77."+n[1:]); err != nil {
			t.Errorf("A of %s: %v", n, err)
		}
	}
	// Per-datacenter tree: dc2's own node first.
	if got := runDig(t, ns.Addr, "+norec", "_sip._udp.dc2."+testCluster, "SRV").Data("SRV"); !strings.HasPrefix(got[0], "10 10 ") || !strings.Contains(got[0], "n3.") {
		t.Errorf("dc2 SRV set %q: n3 should have priority 10", got)
	}

	// A phone given only the domain reaches a live node.
	ts, err := ResolveSIP(context.Background(), ns.Addr, testCluster)
	if err != nil {
		t.Fatal(err)
	}
	if reached := firstReachable(ts, "udp"); reached == "" {
		t.Fatalf("no resolved UDP target answered: %+v", ts)
	}

	// n3 crashes: its updater stops without a word, the mesh declares it dead.
	ups["n3"].Close()
	crashed := time.Now()
	mesh.setState("n3", overlay.StateDead)
	retry.Eventually(t, 10*time.Second, func() error {
		if err := want(targetsAt(t, ns.Addr, udp), "legacy.example.org.", "n1", "n2"); err != nil {
			return err
		}
		if r := runDig(t, ns.Addr, "+norec", "n3."+testCluster, "ANY"); r.Status != "NXDOMAIN" {
			return fmt.Errorf("n3's name still exists: %s %v", r.Status, r.Answer)
		}
		if got := runDig(t, ns.Addr, "+norec", testCluster, "NAPTR").Data("NAPTR"); len(got) != 4 || slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "D2W") }) {
			return fmt.Errorf("NAPTR after the only WebSocket node died: %q", got)
		}
		return want(targetsAt(t, ns.Addr, "_sip._udp.dc2."+testCluster), "n1", "n2")
	})
	t.Logf("dead node's records gone from BIND %v after the death notification", time.Since(crashed).Round(time.Millisecond))

	// Exactly one survivor removed them: the owner of "n3" on the ring of
	// the alive nodes.
	owner, _ := ring.New([]ring.Node{{Name: "n1", Datacenter: "dc1"}, {Name: "n2", Datacenter: "dc1"}}, 0).Owner("n3")
	for _, n := range []string{"n1", "n2"} {
		wantRemoved := uint64(0)
		if n == owner.Name {
			wantRemoved = 1
		}
		if got := ups[n].Stats().DeadRemoved; got != wantRemoved {
			t.Errorf("%s removed %d dead nodes, want %d (ring owner of n3 is %s)", n, got, wantRemoved, owner.Name)
		}
	}
	removals := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `msg="dnsprov: removed records of dead node"`) && strings.Contains(l, " dead_node=n3 ") {
			removals++
		}
	}
	if removals != 1 {
		t.Errorf("%d log lines about removing n3, want 1:\n%s", removals, logs.String())
	}
	ts, err = ResolveSIP(context.Background(), ns.Addr, testCluster)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range ts {
		if tg.Transport == "udp" && !strings.HasPrefix(tg.Host, "legacy.") && ping(tg.Addr) == "" {
			t.Errorf("after n3 died, resolved target %+v does not answer", tg)
		}
	}

	// n2 leaves gracefully: it removes its own records before leaving.
	removedBefore := ups["n1"].Stats().DeadRemoved
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ups["n2"].Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := want(targetsAt(t, ns.Addr, udp), "legacy.example.org.", "n1"); err != nil {
		t.Fatalf("right after n2's Leave: %v", err)
	}
	mesh.setState("n2", overlay.StateLeft)
	if err := ups["n1"].Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ups["n1"].Stats().DeadRemoved; got != removedBefore {
		t.Errorf("n1 removed records of n2 although n2 had left cleanly")
	}
	if txt := runDig(t, ns.Addr, "+norec", "n1."+testCluster, "TXT").Data("TXT"); len(txt) != 2 || !slices.Contains(txt, `"owned by the operator"`) {
		t.Errorf("TXT at n1 = %q, want n1's marker and the operator's record", txt)
	}
	if got := runDig(t, ns.Addr, "+norec", "n2."+testCluster, "ANY"); got.Status != "NXDOMAIN" {
		t.Errorf("n2's name after Leave: %s %v", got.Status, got.Answer)
	}
}

// firstReachable returns the name of the node answering the first target
// of transport that answers at all.
func firstReachable(ts []Target, transport string) string {
	for _, t := range ts {
		if t.Transport == transport {
			if n := ping(t.Addr); n != "" {
				return n
			}
		}
	}
	return ""
}

func TestRFC2136WrongKeyIsRefusedAndSaidSo(t *testing.T) {
	ns := startNamed(t)
	tests := []struct {
		name    string
		key     string
		secret  string
		tsigErr string
	}{
		{"wrong secret", ns.KeyName, bindtest.NewSecret(t), "BADSIG"},
		{"unknown key", "intruder", ns.Secret, "BADKEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &syncBuffer{}
			cfg := updaterConfig(ns)
			cfg.RFC2136.KeyName, cfg.RFC2136.Secret = tt.key, tt.secret
			u, err := NewUpdater(cfg, newMesh(member("n1", "dc1", "127.0.0.101")).view("n1"), testLogger(logs))
			if err != nil {
				t.Fatal(err)
			}
			err = u.Sync(context.Background())
			var rc *RcodeError
			if !errors.As(err, &rc) || rc.Rcode != dns.RcodeNotAuth || RcodeName(rc.TSIGErr) != tt.tsigErr || !rc.KeyRefused() {
				t.Fatalf("Sync error = %v, want NOTAUTH with TSIG error %s", err, tt.tsigErr)
			}
			// The update itself, not only the reads before it, is refused.
			rr, _ := dns.NewRR("n1.example.test. 30 IN A 127.0.0.101")
			err = u.update(context.Background(), "probe", nil, nil, []dns.RR{rr})
			if !errors.As(err, &rc) || !rc.KeyRefused() || !strings.Contains(err.Error(), "update (probe)") {
				t.Fatalf("update error = %v, want the key refused", err)
			}
			u.Start()
			defer u.Close()
			retry.Eventually(t, 5*time.Second, func() error {
				l := logs.String()
				if !strings.Contains(l, "refused the TSIG key") || !strings.Contains(l, "rcode=NOTAUTH") || !strings.Contains(l, "tsig_error="+tt.tsigErr) {
					return fmt.Errorf("log does not say the key was refused:\n%s", l)
				}
				return nil
			})
			if got := runDig(t, ns.Addr, "+norec", "n1."+testCluster, "A"); got.Status != "NXDOMAIN" {
				t.Errorf("records published with a refused key: %v", got.Answer)
			}
		})
	}
}

// A survivor's delete carries a prerequisite on the marker it read: if the
// dead node came back in the meantime and rewrote its marker, the server
// refuses the delete and the new records stay.
func TestRFC2136PrerequisiteProtectsANodeThatCameBack(t *testing.T) {
	ns := startNamed(t)
	mesh := newMesh(member("n1", "dc1", "127.0.0.101"), member("n3", "dc1", "127.0.0.103"))
	ctx := context.Background()

	first, err := NewUpdater(updaterConfig(ns), mesh.view("n3"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	survivor, err := NewUpdater(updaterConfig(ns), mesh.view("n1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := survivor.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// The survivor reads n3's records as they are now...
	svc := survivor.serviceNames()
	stale := &snapshot{sets: map[string][]dns.RR{}}
	if err := survivor.readServices(ctx, stale, svc); err != nil {
		t.Fatal(err)
	}
	if err := survivor.readNode(ctx, stale, "n3", svc); err != nil {
		t.Fatal(err)
	}
	// ...then n3 restarts and publishes with a new marker...
	again, err := NewUpdater(updaterConfig(ns), mesh.view("n3"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// ...and the survivor, believing n3 long dead, deletes what it read.
	survivor.mu.Lock()
	survivor.seenDead["n3"], survivor.deadSince["n3"] = true, time.Now().Add(time.Hour)
	err = survivor.removeDead(ctx, stale, "n3", true, svc, time.Now())
	survivor.mu.Unlock()
	var rc *RcodeError
	if !errors.As(err, &rc) || !rc.Conflict() {
		t.Fatalf("stale delete: err = %v, want a failed prerequisite (NXRRSET)", err)
	}
	if got := runDig(t, ns.Addr, "+norec", "n3."+testCluster, "A").Data("A"); len(got) != 1 {
		t.Fatalf("n3's address after the refused delete: %q", got)
	}
	if got := targetsAt(t, ns.Addr, "_sip._udp."+testCluster); !slices.Contains(got, "n3") {
		t.Fatalf("n3's SRV after the refused delete: %q", got)
	}
}

// A node found in the zone but not (yet) in the membership keeps its
// records for OrphanGrace: it may have joined before its gossip arrived.
func TestRFC2136OrphansWaitForGrace(t *testing.T) {
	ns := startNamed(t)
	ctx := context.Background()
	orphan, err := NewUpdater(updaterConfig(ns), newMesh(member("n9", "dc1", "127.0.0.109")).view("n9"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := orphan.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := updaterConfig(ns)
	cfg.RFC2136.OrphanGrace = 300 * time.Millisecond
	u, err := NewUpdater(cfg, newMesh(member("n1", "dc1", "127.0.0.101")).view("n1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := targetsAt(t, ns.Addr, "_sip._udp."+testCluster); !slices.Equal(got, []string{"n1", "n9"}) {
		t.Fatalf("within the grace period: %q", got)
	}
	time.Sleep(cfg.RFC2136.OrphanGrace)
	if err := u.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := targetsAt(t, ns.Addr, "_sip._udp."+testCluster); !slices.Equal(got, []string{"n1"}) {
		t.Fatalf("after the grace period: %q", got)
	}
	if u.Stats().DeadRemoved != 1 {
		t.Errorf("stats: %+v", u.Stats())
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const secret = "xc3kRhjpLuXFx8s7UBlugUsR5w18jUfmjSlaok44dmw="
	bare := write("bare", "  "+secret+"\n")
	block := write("block", "key \"sipmesh\" {\n\talgorithm hmac-sha512;\n\tsecret \""+secret+"\";\n};\n")
	two := write("two", "key \"a\" { algorithm hmac-sha256; secret \""+secret+"\"; };\nkey b { algorithm hmac-sha1; secret \""+secret+"\"; };\n")
	tests := []struct {
		name      string
		cfg       RFC2136Config
		keyName   string
		alg       string
		errSubstr string
	}{
		{"bare secret", RFC2136Config{KeyFile: bare, KeyName: "sipmesh"}, "sipmesh.", dns.HmacSHA256, ""},
		{"BIND block names key and algorithm", RFC2136Config{KeyFile: block}, "sipmesh.", dns.HmacSHA512, ""},
		{"block chosen by name", RFC2136Config{KeyFile: two, KeyName: "b"}, "b.", dns.HmacSHA1, ""},
		{"two blocks, no name", RFC2136Config{KeyFile: two}, "", "", "set dns.rfc2136.key_name"},
		{"named key absent", RFC2136Config{KeyFile: two, KeyName: "c"}, "", "", `no key "c"`},
		{"algorithm disagrees", RFC2136Config{KeyFile: block, Algorithm: "hmac-sha256"}, "", "", "make them agree"},
		{"bare secret without name", RFC2136Config{KeyFile: bare}, "", "", "no key_name"},
		{"missing file", RFC2136Config{KeyFile: filepath.Join(dir, "nope"), KeyName: "x"}, "", "", "read dns.rfc2136 key_file"},
		{"unknown algorithm", RFC2136Config{KeyFile: bare, KeyName: "x", Algorithm: "hmac-md5"}, "", "", "not supported"},
		{"not base64", RFC2136Config{Secret: "%%%", KeyName: "x"}, "", "", "not base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := loadKey(tt.cfg)
			if tt.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errSubstr) || !strings.HasPrefix(err.Error(), "dnsprov: ") {
					t.Fatalf("err = %v, want %q", err, tt.errSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.name != tt.keyName || k.alg != tt.alg || k.secret != secret {
				t.Fatalf("key = %+v", k)
			}
		})
	}
}

// A node whose service moved re-publishes: the new SRV is added and the
// old one, its own, removed.
func TestRFC2136OwnRecordsFollowAChangedService(t *testing.T) {
	ns := startNamed(t)
	mesh := newMesh(member("n1", "dc1", "127.0.0.101"))
	u, err := NewUpdater(updaterConfig(ns), mesh.view("n1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := u.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	udp := "_sip._udp." + testCluster
	if got := runDig(t, ns.Addr, "+norec", udp, "SRV").Data("SRV"); !slices.Equal(got, []string{"10 10 5060 n1.example.test."}) {
		t.Fatalf("before: %q", got)
	}
	mesh.update(func(ms []overlay.Member) []overlay.Member {
		ms[0].Services[overlay.ServiceSIPUDP] = "127.0.0.101:5070"
		delete(ms[0].Services, overlay.ServiceSIPTLS)
		return ms
	})
	if err := u.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := runDig(t, ns.Addr, "+norec", udp, "SRV").Data("SRV"); !slices.Equal(got, []string{"10 10 5070 n1.example.test."}) {
		t.Fatalf("after the port moved: %q", got)
	}
	if got := runDig(t, ns.Addr, "+norec", "_sips._tcp."+testCluster, "SRV"); got.Status != "NXDOMAIN" {
		t.Fatalf("TLS no longer offered, SRV still there: %v", got.Answer)
	}
	if got := runDig(t, ns.Addr, "+norec", testCluster, "NAPTR").Data("NAPTR"); len(got) != 2 {
		t.Fatalf("NAPTR after TLS went away: %q", got)
	}
	if p := u.Published(); !slices.ContainsFunc(p, func(r Record) bool { return r.Type == "SRV" && r.Data == "10 10 5070 n1.example.test." }) {
		t.Errorf("Published() = %v", p)
	}
}
