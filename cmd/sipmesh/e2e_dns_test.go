package main

import (
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/proctest"
)

// dig runs the real dig (bind9-dnsutils) against a node's embedded server.
func dig(t *testing.T, server string, args ...string) []string {
	t.Helper()
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatal("dig not found: apt-get install -y bind9-dnsutils")
	}
	host, port, _ := net.SplitHostPort(server)
	out, err := exec.Command("dig", append([]string{"@" + host, "-p", port, "+short", "+time=1", "+tries=2"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return lines
}

// A DNS-published mesh: the embedded servers follow the membership, and a
// node given only its certificate and a DNS server joins through SRV.
func TestEmbeddedDNSFollowsMeshAndSeedsDiscovery(t *testing.T) {
	c := proctest.NewCluster(t, "example.test", "127.0.29.")
	var seeds []string
	for _, name := range []string{"n1", "n2", "n3"} {
		ip := c.NextIP()
		c.IssueNode(name, certs.IssueRequest{IPs: []net.IP{net.ParseIP(ip)}})
		c.Start(name, ip, c.WriteConfig(name, ip, proctest.DefaultConfig(name, seeds, `dns: {listen: "%IP%:5353", ttl: 5}`)))
		if seeds == nil {
			seeds = []string{ip}
		}
	}
	c.WaitAlive(10*time.Second, "n1,n2,n3", "n1", "n2", "n3")
	ns := c.Subnet + "11:5353"
	srvSet := func() string {
		var targets []string
		for _, l := range dig(t, ns, "SRV", "_sipmesh._tcp.example.test") {
			f := strings.Fields(l) // priority weight port target
			targets = append(targets, f[3]+":"+f[2])
		}
		return strings.Join(targets, " ")
	}
	proctest.Eventually(t, 5*time.Second, "SRV lists 3 nodes", func() error {
		if got := srvSet(); got != "n1.example.test.:7946 n2.example.test.:7946 n3.example.test.:7946" {
			return fmt.Errorf("SRV set %q", got)
		}
		return nil
	})
	if got := dig(t, ns, "A", "n2.example.test"); len(got) != 1 || got[0] != c.Subnet+"12" {
		t.Fatalf("A n2.example.test = %v", got)
	}

	// A fourth node with no seeds, only the DNS server, joins.
	ip := c.NextIP()
	c.IssueNode("n4", certs.IssueRequest{IPs: []net.IP{net.ParseIP(ip)}})
	cfg := strings.Replace(proctest.DefaultConfig("n4", nil, ""), `join: ["%IP%:7946"]`, `resolver: "`+ns+`"`, 1)
	c.Start("n4", ip, c.WriteConfig("n4", ip, cfg))
	c.WaitAlive(15*time.Second, "n1,n2,n3,n4", "n1", "n4")

	killed := time.Now()
	c.Kill("n3")
	proctest.Eventually(t, 15*time.Second, "SRV drops the killed node", func() error {
		if got := srvSet(); got != "n1.example.test.:7946 n2.example.test.:7946 n4.example.test.:7946" {
			return fmt.Errorf("SRV set %q", got)
		}
		return nil
	})
	t.Logf("killed node gone from the embedded server's SRV set after %v", time.Since(killed).Round(100*time.Millisecond))
	out, err := c.CLI("dns", "records", "--config", c.Node("n1").Config)
	if err != nil || !strings.Contains(out, "_sipmesh._tcp.example.test.") || strings.Contains(out, "n3.example.test") {
		t.Fatalf("dns records: %v\n%s", err, out)
	}
}
