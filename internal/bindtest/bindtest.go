// Package bindtest runs a real BIND 9 primary (Debian's bind9 `named`) on
// loopback for tests of sipmesh's RFC 2136 updates, and reads it back with
// the real `dig` (bind9-dnsutils).
//
// Reads go through dig rather than miekg/dns on purpose: the code under test
// speaks DNS with miekg/dns, and an oracle built on the same library could
// share its mistakes. It also keeps miekg/dns out of one more package (see
// DESIGN.md: a move to its v2 should touch dnsprov alone).
//
// The TSIG key is made by BIND's own tsig-keygen, and named.conf includes
// that very file, so a test that hands Named.KeyFile to sipmesh's
// dns.rfc2136.key_file proves that sipmesh reads what operators have.
package bindtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// install is what every "not found" failure tells the reader to do.
const install = "apt-get install -y bind9 bind9-dnsutils"

// Bin finds a BIND tool (named, tsig-keygen, dig). Its absence fails the
// test, because CI installs bind9 and a skipped test proves nothing; under
// -short the test is skipped instead, so `go test -short` runs anywhere.
func Bin(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: skipping test that needs %s", name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// named and tsig-keygen live in sbin, often not on a user's PATH.
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	t.Fatalf("%s not found: install BIND 9 (%s)", name, install)
	return ""
}

// Options describe the server to start. Zero values are fine except Zone.
type Options struct {
	// Zone is the primary zone served and updatable, e.g. "example.test".
	Zone string
	// KeyName is the TSIG key's name; default "sipmesh-test".
	KeyName string
	// Records are extra zone-file lines, relative to the zone ("n1 IN TXT x").
	Records []string
}

// Named is a running named. Its fields are read-only.
type Named struct {
	Addr      string // "ip:port", UDP and TCP
	Zone      string // FQDN, "example.test."
	KeyName   string // as in the key file, without a trailing dot
	Algorithm string // "hmac-sha256"
	Secret    string // base64
	KeyFile   string // BIND key block written by tsig-keygen
	Dir       string // working directory (config, zone, journal)

	log *buffer
}

// ip is where named listens. named binds only addresses configured on an
// interface, and of the loopback /8 only 127.0.0.1 is; a free port keeps
// tests running in parallel apart.
const ip = "127.0.0.1"

// SOA timers of the test zone; the last one is the negative-caching TTL.
const soaTimers = "1 3600 600 86400 30"

// Start writes a named.conf for one primary zone on 127.0.0.1 that the key may update
// (update-policy { grant KEY zonesub ANY; }) and transfer, with recursion
// and notify off, starts named in the foreground on a free port and waits
// until it answers the zone's SOA. named is stopped when the test ends.
func Start(t testing.TB, o Options) *Named {
	t.Helper()
	bin, dig := Bin(t, "named"), Bin(t, "dig")
	if o.Zone == "" {
		t.Fatal("bindtest: Options.Zone is empty")
	}
	if o.KeyName == "" {
		o.KeyName = "sipmesh-test"
	}
	dir := t.TempDir()
	zone := strings.TrimSuffix(strings.ToLower(o.Zone), ".") + "."
	n := &Named{Zone: zone, KeyName: o.KeyName, Algorithm: "hmac-sha256", Dir: dir, log: &buffer{}}
	n.KeyFile = filepath.Join(dir, "tsig.key")
	n.Secret = n.WriteKeyFile(t, n.KeyFile)

	lines := append([]string{
		"$ORIGIN " + zone,
		"$TTL 30",
		"@ IN SOA ns." + zone + " hostmaster." + zone + " " + soaTimers,
		"@ IN NS ns." + zone,
		"ns IN A " + ip,
	}, o.Records...)
	writeFile(t, filepath.Join(dir, "db.zone"), strings.Join(lines, "\n")+"\n")

	// The free port is found by binding it and letting it go, so another
	// process may take it before named does: named then exits, and the
	// next attempt picks another port.
	for attempt := 1; ; attempt++ {
		port := freePort(t, ip)
		n.Addr = net.JoinHostPort(ip, strconv.Itoa(port))
		conf := fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	session-keyfile "%[1]s/session.key";
	managed-keys-directory "%[1]s";
	listen-on port %[2]d { %[3]s; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
};
controls { };
include "%[4]s";
zone "%[5]s" {
	type primary;
	file "%[1]s/db.zone";
	allow-transfer { key "%[6]s"; };
	update-policy { grant "%[6]s" zonesub ANY; };
};
`, dir, port, ip, n.KeyFile, zone, n.KeyName)
		confPath := filepath.Join(dir, "named.conf")
		writeFile(t, confPath, conf)
		args := []string{"-g", "-c", confPath}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "root") // else named drops to user "bind", who cannot write the temp dir
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = n.log, n.log
		// named must not outlive a test binary that is killed.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start named: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		if n.waitUp(dig, exited, 20*time.Second) {
			t.Cleanup(func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
				if t.Failed() {
					t.Logf("---- named log ----\n%s", tail(n.Log(), 40))
				}
			})
			return n
		}
		_ = cmd.Process.Kill()
		<-exited
		if attempt == 3 {
			t.Fatalf("named did not come up on %s:\n%s", n.Addr, n.Log())
		}
		n.log.reset()
	}
}

// waitUp polls until named answers the zone's SOA authoritatively, named
// exits, or d passes.
func (n *Named) waitUp(dig string, exited <-chan struct{}, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		out, err := runDig(dig, n.Addr, "+norec", n.Zone, "SOA")
		if err == nil {
			r := parseDig(out)
			if r.Status == "NOERROR" && r.Has("aa") && len(r.Data("SOA")) == 1 {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// WriteKeyFile writes a new key of n's name and algorithm, made by
// tsig-keygen, to path and returns its secret. named trusts only the key
// written at Start: another file written here holds a key with the right
// name and the wrong secret.
func (n *Named) WriteKeyFile(t testing.TB, path string) (secret string) {
	t.Helper()
	out, err := exec.Command(Bin(t, "tsig-keygen"), "-a", n.Algorithm, n.KeyName).Output()
	if err != nil {
		t.Fatalf("tsig-keygen: %v", err)
	}
	m := regexp.MustCompile(`secret "([^"]+)";`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("tsig-keygen wrote no secret:\n%s", out)
	}
	writeFile(t, path, string(out))
	return string(m[1])
}

// Log is what named has logged so far.
func (n *Named) Log() string { return n.log.String() }

// Query asks named for one RRset, without recursion.
func (n *Named) Query(t testing.TB, name, qtype string) Result {
	t.Helper()
	return Dig(t, n.Addr, "+norec", name, qtype)
}

// Transfer returns the whole zone (AXFR signed with the key), SOA
// included once, in the server's order.
func (n *Named) Transfer(t testing.TB) []RR {
	t.Helper()
	out, err := runDig(Bin(t, "dig"), n.Addr, "-k", n.KeyFile, "AXFR", n.Zone)
	if err != nil {
		t.Fatalf("dig AXFR %s at %s: %v\n%s", n.Zone, n.Addr, err, out)
	}
	var rrs []RR
	for _, l := range strings.Split(out, "\n") {
		if rr, ok := parseRR(l); ok && rr.Type != "TSIG" {
			rrs = append(rrs, rr)
		}
	}
	// An AXFR starts and ends with the SOA; anything else is a failure
	// ("Transfer failed.") that dig reports with exit status 0.
	if len(rrs) < 2 || rrs[0].Type != "SOA" || rrs[len(rrs)-1].Type != "SOA" {
		t.Fatalf("dig AXFR %s at %s: no complete transfer:\n%s", n.Zone, n.Addr, out)
	}
	return rrs[:len(rrs)-1]
}

// Serial is the zone's SOA serial; every accepted update increments it.
func (n *Named) Serial(t testing.TB) uint32 {
	t.Helper()
	r := n.Query(t, n.Zone, "SOA")
	soa := r.Data("SOA")
	if len(soa) != 1 {
		t.Fatalf("SOA of %s: %s %v", n.Zone, r.Status, r.Answer)
	}
	s, err := strconv.ParseUint(strings.Fields(soa[0])[2], 10, 32)
	if err != nil {
		t.Fatalf("SOA of %s: %q: %v", n.Zone, soa[0], err)
	}
	return uint32(s)
}

// NewSecret returns a random base64 TSIG secret of 256 bits.
func NewSecret(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// Result is dig's answer, parsed.
type Result struct {
	Status     string // NOERROR, NXDOMAIN, ...
	Flags      []string
	Answer     []RR
	Authority  []RR
	Additional []RR
	Raw        string // dig's output, for failure messages
}

// RR is one resource record line of dig's output.
type RR struct {
	Name string // FQDN as printed, lower case
	TTL  uint32
	Type string
	Data string // RDATA as dig prints it
}

func (rr RR) String() string { return fmt.Sprintf("%s %d %s %s", rr.Name, rr.TTL, rr.Type, rr.Data) }

// Has reports whether the header has flag ("aa", "tc", "ra", ...).
func (r Result) Has(flag string) bool { return slices.Contains(r.Flags, flag) }

// Data returns the sorted RDATA of the answer's records of type typ.
func (r Result) Data(typ string) []string {
	var out []string
	for _, a := range r.Answer {
		if a.Type == typ {
			out = append(out, a.Data)
		}
	}
	slices.Sort(out)
	return out
}

// Dig asks server ("ip:port") with the real dig; extra args as dig takes
// them (name, type, +options). A query that gets no answer fails the test.
func Dig(t testing.TB, server string, args ...string) Result {
	t.Helper()
	out, err := runDig(Bin(t, "dig"), server, args...)
	if err != nil {
		t.Fatalf("dig @%s %v: %v\n%s", server, args, err, out)
	}
	return parseDig(out)
}

// runDig runs dig with short timeouts and no cookie (so that answers are
// comparable between servers that do and do not support cookies).
func runDig(bin, server string, args ...string) (string, error) {
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return "", err
	}
	argv := append([]string{"@" + host, "-p", port, "+time=2", "+tries=1", "+nocookie"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, argv...).CombinedOutput()
	return string(out), err
}

func parseDig(out string) Result {
	r := Result{Raw: out}
	var section *[]RR
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "->>HEADER<<-"):
			if i := strings.Index(line, "status: "); i >= 0 {
				r.Status = strings.TrimSuffix(strings.Fields(line[i+8:])[0], ",")
			}
		case strings.HasPrefix(line, ";; flags:"):
			f := strings.TrimPrefix(line, ";; flags:")
			f, _, _ = strings.Cut(f, ";")
			r.Flags = strings.Fields(f)
		case line == ";; ANSWER SECTION:":
			section = &r.Answer
		case line == ";; AUTHORITY SECTION:":
			section = &r.Authority
		case line == ";; ADDITIONAL SECTION:":
			section = &r.Additional
		case strings.TrimSpace(line) == "":
			section = nil
		case section != nil:
			if rr, ok := parseRR(line); ok {
				*section = append(*section, rr)
			}
		}
	}
	return r
}

// parseRR reads "name ttl class type rdata..." as dig prints it.
func parseRR(line string) (RR, bool) {
	if strings.HasPrefix(line, ";") {
		return RR{}, false
	}
	f := strings.Fields(line)
	if len(f) < 4 {
		return RR{}, false
	}
	ttl, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return RR{}, false
	}
	return RR{Name: strings.ToLower(f[0]), TTL: uint32(ttl), Type: f[3], Data: strings.Join(f[4:], " ")}, true
}

// freePort returns a port free on ip for both UDP and TCP just now.
func freePort(t testing.TB, ip string) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatalf("bindtest: listen on %s (loopback 127.0.0.0/8): %v", ip, err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		pc.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatalf("bindtest: no port free for both UDP and TCP on %s", ip)
	return 0
}

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(parts[max(0, len(parts)-lines):], "\n")
}

// buffer collects named's output while a test reads it.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *buffer) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.Reset()
}
