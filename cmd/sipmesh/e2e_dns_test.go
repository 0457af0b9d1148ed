package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/dnsprov"
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
		c.Start(name, ip, c.WriteConfig(name, ip, proctest.DefaultConfig(name, seeds,
			`dns: {listen: "%IP%:5353", ttl: 5}`+"\n"+`sip: {listen: ["udp://%IP%:5060", "tcp://%IP%:5060"]}`)))
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

	// RFC 3263 as a phone does it with dig: NAPTR -> SRV -> A.
	naptr := dig(t, ns, "NAPTR", "example.test")
	var udpSRV string
	for _, l := range naptr {
		f := strings.Fields(l) // order pref "flags" "service" "regexp" replacement
		if len(f) == 6 && f[3] == `"SIP+D2U"` {
			udpSRV = f[5]
		}
	}
	if udpSRV != "_sip._udp.example.test." || len(naptr) != 2 {
		t.Fatalf("NAPTR example.test = %v: want SIP+D2U and SIP+D2T only (the transports offered)", naptr)
	}
	var addrs []string
	for _, l := range dig(t, ns, "SRV", udpSRV) {
		f := strings.Fields(l)
		a := dig(t, ns, "A", f[3])
		if len(a) != 1 {
			t.Fatalf("A %s = %v", f[3], a)
		}
		addrs = append(addrs, a[0]+":"+f[2])
	}
	sort.Strings(addrs)
	if want := c.Subnet + "11:5060 " + c.Subnet + "12:5060 " + c.Subnet + "13:5060"; strings.Join(addrs, " ") != want {
		t.Fatalf("NAPTR -> SRV -> A gave %v, want %s", addrs, want)
	}
	// The resolver a phone-side client uses, given only the domain, reaches
	// a live node: it answers OPTIONS.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	targets, err := dnsprov.ResolveSIP(ctx, ns, "example.test")
	if err != nil || len(targets) == 0 {
		t.Fatalf("ResolveSIP: %v %v", targets, err)
	}
	if status := sipOptions(t, targets[0]); status != "SIP/2.0 200 OK" {
		t.Fatalf("OPTIONS to %+v answered %q", targets[0], status)
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

// sipOptions sends one OPTIONS to a resolved target and returns the status
// line of the answer.
func sipOptions(t *testing.T, tg dnsprov.Target) string {
	t.Helper()
	conn, err := net.Dial(tg.Transport, tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	msg := "OPTIONS sip:example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/" + strings.ToUpper(tg.Transport) + " " + local + ";branch=z9hG4bK-dns-e2e;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@example.test>;tag=1\r\nTo: <sip:example.test>\r\n" +
		"Call-ID: dns-e2e@" + local + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no answer to OPTIONS from %s: %v", tg.Addr, err)
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		if !strings.HasPrefix(line, "SIP/2.0 1") {
			return line
		}
	}
}
