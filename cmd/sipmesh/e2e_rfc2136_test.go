package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/bindtest"
	"github.com/sipmesh/sipmesh/internal/proctest"
	"github.com/sipmesh/sipmesh/overlay/ring"
)

const rfcZone = "example.test."

// rfc2136Config is the dns section of a node updating ns with the key in
// keyFile, a path relative to the config file as an operator writes it.
func rfc2136Config(ns *bindtest.Named, keyFile string) string {
	return fmt.Sprintf(`dns: {rfc2136: {server: %q, zone: %q, key_name: %s, key_file: %s, algorithm: hmac-sha256}}`,
		ns.Addr, rfcZone, ns.KeyName, keyFile)
}

// mentions returns the RRs of zone that belong to node: those at its name
// or below it (<service>.<node>.C), and SRV records pointing there.
func mentions(zone []bindtest.RR, node string) []bindtest.RR {
	own := node + "." + rfcZone
	var out []bindtest.RR
	for _, rr := range zone {
		target := ""
		if rr.Type == "SRV" {
			if f := strings.Fields(rr.Data); len(f) == 4 {
				target = strings.ToLower(f[3])
			}
		}
		if rr.Name == own || strings.HasSuffix(rr.Name, "."+own) || target == own || strings.HasSuffix(target, "."+own) {
			out = append(out, rr)
		}
	}
	return out
}

// seedTargets is the sorted "target:port" list of the _sipmesh._tcp SRV set.
func seedTargets(t *testing.T, ns *bindtest.Named) []string {
	t.Helper()
	var out []string
	for _, d := range ns.Query(t, "_sipmesh._tcp."+rfcZone, "SRV").Data("SRV") {
		f := strings.Fields(d) // priority weight port target
		out = append(out, f[3]+":"+f[2])
	}
	slices.Sort(out)
	return out
}

// logLines returns the lines of text matching every one of res.
func logLines(text string, res ...*regexp.Regexp) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if !slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return !re.MatchString(l) }) {
			out = append(out, l)
		}
	}
	return out
}

// The mesh keeps an operator's BIND primary in step with itself over
// TSIG-signed RFC 2136 updates: nodes publish themselves, the records of a
// crashed node are removed by exactly one survivor, a node that stops
// removes its own, and a node holding the wrong key says so and changes
// nothing.
func TestRFC2136KeepsBINDInStepWithTheMesh(t *testing.T) {
	ns := bindtest.Start(t, bindtest.Options{Zone: rfcZone})
	c := proctest.NewCluster(t, "example.test", "127.0.30.")
	// The key file tsig-keygen made for named, copied next to the configs.
	key, err := os.ReadFile(ns.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "tsig.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}

	names := []string{"n1", "n2", "n3"}
	ips := map[string]string{}
	var seeds []string
	for _, name := range names {
		ip := c.NextIP()
		ips[name] = ip
		if seeds == nil {
			// n1 is its own seed: a node without overlay.join would look
			// for seeds with the system's resolver, off loopback.
			seeds = []string{ip}
		}
		c.IssueNode(name, certs.IssueRequest{IPs: []net.IP{net.ParseIP(ip)}})
		c.Start(name, ip, c.WriteConfig(name, ip, proctest.DefaultConfig(name, seeds, rfc2136Config(ns, "tsig.key"))))
	}
	c.WaitAlive(10*time.Second, "n1,n2,n3", names...)

	// 1. Every node publishes itself: its address and its place among the seeds.
	proctest.Eventually(t, 10*time.Second, "3 nodes published in BIND", func() error {
		for _, name := range names {
			if got := ns.Query(t, name+"."+rfcZone, "A").Data("A"); !slices.Equal(got, []string{ips[name]}) {
				return fmt.Errorf("A %s = %q, want %s", name, got, ips[name])
			}
		}
		want := []string{"n1.example.test.:7946", "n2.example.test.:7946", "n3.example.test.:7946"}
		if got := seedTargets(t, ns); !slices.Equal(got, want) {
			return fmt.Errorf("_sipmesh._tcp SRV = %q, want %q", got, want)
		}
		return nil
	})
	if rrs := mentions(ns.Transfer(t), "n3"); !slices.ContainsFunc(rrs, func(rr bindtest.RR) bool { return rr.Type == "TXT" }) {
		t.Fatalf("n3 published without its ownership marker: %v", rrs)
	}

	// 2. SIGKILL n3: nothing of it may stay in the zone.
	killed := time.Now()
	c.Kill("n3")
	proctest.Eventually(t, 20*time.Second, "killed node's records removed", func() error {
		if rrs := mentions(ns.Transfer(t), "n3"); len(rrs) > 0 {
			return fmt.Errorf("still in the zone: %v", rrs)
		}
		return nil
	})
	t.Logf("RFC 2136: SIGKILLed node's records gone from BIND %v after the kill", time.Since(killed).Round(100*time.Millisecond))
	if got, want := seedTargets(t, ns), []string{"n1.example.test.:7946", "n2.example.test.:7946"}; !slices.Equal(got, want) {
		t.Fatalf("after the kill, _sipmesh._tcp SRV = %q, want %q", got, want)
	}

	// Exactly one survivor removed them, the owner of "n3" on the ring of
	// the alive nodes, and the other did not even try: a second attempt
	// would have failed on its prerequisite and left an error in its log.
	removedN3 := regexp.MustCompile(`msg="dnsprov: removed records of dead node".* dead_node=n3( |$)`)
	triedN3 := regexp.MustCompile(`removal of dead node n3\b`)
	var removers []string
	for _, s := range []string{"n1", "n2"} {
		log := c.Node(s).LogText()
		for range logLines(log, removedN3) {
			removers = append(removers, s)
		}
		if tries := logLines(log, triedN3); len(tries) > 0 {
			t.Errorf("%s also tried to remove n3's records:\n%s", s, strings.Join(tries, "\n"))
		}
	}
	owner, _ := ring.New([]ring.Node{{Name: "n1", Datacenter: "dc1"}, {Name: "n2", Datacenter: "dc1"}}, 0).Owner("n3")
	if !slices.Equal(removers, []string{owner.Name}) {
		t.Errorf("n3's records removed by %q, want exactly the ring owner %s", removers, owner.Name)
	}

	// 3. SIGTERM n2: it removes its own records before it exits. Checked
	// at once, and the survivor's log shows it did not do it instead.
	if err := c.Stop("n2"); err != nil {
		t.Fatal(err)
	}
	if rrs := mentions(ns.Transfer(t), "n2"); len(rrs) > 0 {
		t.Fatalf("records of n2 after it exited on SIGTERM: %v", rrs)
	}
	n2log := c.Node("n2").LogText()
	left := strings.Index(n2log, `msg="dnsprov: removed own records on leave"`)
	if stopped := strings.Index(n2log, `msg=stopped`); left < 0 || stopped < left {
		t.Errorf("n2's log does not say it removed its records before stopping:\n%s", n2log)
	}
	if l := logLines(c.Node("n1").LogText(), regexp.MustCompile(`dead_node=n2( |$)|removal of dead node n2\b`)); len(l) > 0 {
		t.Errorf("n1 touched the records of n2, which left cleanly:\n%s", strings.Join(l, "\n"))
	}
	if got := ns.Query(t, "n1."+rfcZone, "A").Data("A"); !slices.Equal(got, []string{ips["n1"]}) {
		t.Errorf("A n1 = %q after the others went, want %s", got, ips["n1"])
	}
	if got, want := seedTargets(t, ns), []string{"n1.example.test.:7946"}; !slices.Equal(got, want) {
		t.Errorf("_sipmesh._tcp SRV = %q, want %q", got, want)
	}

	// 4. n4 joins with a key of the right name and the wrong secret: BIND
	// refuses it, n4 says so in words an operator can act on, and the zone
	// stays exactly as it was.
	c.WaitAlive(10*time.Second, "n1", "n1") // n1 has seen n2 leave and n3 die
	serial, zone := ns.Serial(t), ns.Transfer(t)
	ns.WriteKeyFile(t, filepath.Join(c.Dir, "wrong.key"))
	ip := c.NextIP()
	c.IssueNode("n4", certs.IssueRequest{IPs: []net.IP{net.ParseIP(ip)}})
	n4 := c.Start("n4", ip, c.WriteConfig("n4", ip, proctest.DefaultConfig("n4", []string{ips["n1"]}, rfc2136Config(ns, "wrong.key"))))
	c.WaitAlive(10*time.Second, "n1,n4", "n1", "n4")
	refused := []*regexp.Regexp{
		regexp.MustCompile(`level=ERROR msg="dnsprov: the DNS server refused the TSIG key; records are not being published"`),
		regexp.MustCompile(` rcode=NOTAUTH `),
		regexp.MustCompile(` tsig_error=BADSIG `),
		regexp.MustCompile(` key=sipmesh-test\. `),
	}
	// Twice: the node keeps retrying, and keeps saying why it fails.
	proctest.Eventually(t, 10*time.Second, "n4 logs that its key was refused", func() error {
		if l := logLines(n4.LogText(), refused...); len(l) < 2 {
			return fmt.Errorf("%d refusal lines in n4's log", len(l))
		}
		return nil
	})
	if n4.Exited() {
		t.Errorf("n4 exited: a refused DNS key must not stop a node serving SIP")
	}
	if got := ns.Serial(t); got != serial {
		t.Errorf("zone serial %d after n4's refused updates, was %d", got, serial)
	}
	if got := ns.Transfer(t); !slices.Equal(got, zone) {
		t.Errorf("zone changed while n4's key was refused:\nbefore %v\nafter  %v", zone, got)
	}
}
