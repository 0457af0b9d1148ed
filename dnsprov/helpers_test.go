package dnsprov

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sipmesh/sipmesh/overlay"
)

const testCluster = "example.test"

// fakeMesh is a membership every fake node sees the same way.
type fakeMesh struct {
	mu      sync.Mutex
	members []overlay.Member
	subs    map[int]chan struct{}
	next    int
}

func newMesh(members ...overlay.Member) *fakeMesh {
	return &fakeMesh{members: members, subs: map[int]chan struct{}{}}
}

// view is the Membership of one node of the mesh.
func (f *fakeMesh) view(self string) Membership { return &fakeView{f, self} }

func (f *fakeMesh) setState(name string, st overlay.State) {
	f.update(func(ms []overlay.Member) []overlay.Member {
		for i := range ms {
			if ms[i].Name == name {
				ms[i].State = st
			}
		}
		return ms
	})
}

func (f *fakeMesh) update(fn func([]overlay.Member) []overlay.Member) {
	f.mu.Lock()
	f.members = fn(f.members)
	subs := make([]chan struct{}, 0, len(f.subs))
	for _, c := range f.subs {
		subs = append(subs, c)
	}
	f.mu.Unlock()
	for _, c := range subs {
		select { // coalesced, as overlay.Subscribe promises
		case c <- struct{}{}:
		default:
		}
	}
}

type fakeView struct {
	f    *fakeMesh
	self string
}

func (v *fakeView) Members() []overlay.Member {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	out := make([]overlay.Member, len(v.f.members))
	for i, m := range v.f.members {
		m.Roles = slices.Clone(m.Roles)
		svc := map[string]string{}
		for k, s := range m.Services {
			svc[k] = s
		}
		m.Services = svc
		out[i] = m
	}
	return out
}

func (v *fakeView) Self() overlay.Member {
	for _, m := range v.Members() {
		if m.Name == v.self {
			return m
		}
	}
	return overlay.Member{Name: v.self, State: overlay.StateAlive}
}

func (v *fakeView) Subscribe() (<-chan struct{}, func()) {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	c := make(chan struct{}, 1)
	id := v.f.next
	v.f.next++
	v.f.subs[id] = c
	return c, func() {
		v.f.mu.Lock()
		defer v.f.mu.Unlock()
		delete(v.f.subs, id)
	}
}

// member is an alive node with every role, SIP on UDP/TCP 5060 and TLS 5061.
func member(name, dc, ip string) overlay.Member {
	return overlay.Member{
		Name: name, Datacenter: dc, State: overlay.StateAlive,
		Roles:   []string{"proxy", "registrar"},
		Address: net.JoinHostPort(ip, "7946"),
		Services: map[string]string{
			overlay.ServiceSIPUDP: net.JoinHostPort(ip, "5060"),
			overlay.ServiceSIPTCP: net.JoinHostPort(ip, "5060"),
			overlay.ServiceSIPTLS: net.JoinHostPort(ip, "5061"),
		},
	}
}

func testConfig() Config {
	c := DefaultConfig()
	c.Cluster = testCluster
	return c
}

// eventually retries f until it returns nil or d passes.
func eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	wait := 5 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", d, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// requireBin finds a BIND tool; its absence fails the test (CI installs
// bind9), except under -short.
func requireBin(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: skipping test that needs %s", name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	t.Fatalf("%s not found: install BIND 9 (apt-get install -y bind9 bind9-dnsutils)", name)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// digResult is dig's output, parsed.
type digResult struct {
	status     string
	flags      []string
	answer     []dig
	authority  []dig
	additional []dig
	raw        string
}

// dig is one RR line of dig output.
type dig struct{ name, typ, data string }

func (r digResult) has(flag string) bool { return slices.Contains(r.flags, flag) }

func (r digResult) data(typ string) []string {
	var out []string
	for _, a := range r.answer {
		if a.typ == typ {
			out = append(out, a.data)
		}
	}
	slices.Sort(out)
	return out
}

// runDig asks server (ip:port) with the real dig.
func runDig(t testing.TB, server string, args ...string) digResult {
	t.Helper()
	bin := requireBin(t, "dig")
	host, port, _ := net.SplitHostPort(server)
	argv := append([]string{"@" + host, "-p", port, "+time=2", "+tries=1", "+nocookie"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", argv, err, out)
	}
	return parseDig(string(out))
}

func parseDig(out string) digResult {
	r := digResult{raw: out}
	var section *[]dig
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "->>HEADER<<-"):
			if i := strings.Index(line, "status: "); i >= 0 {
				r.status = strings.TrimSuffix(strings.Fields(line[i+8:])[0], ",")
			}
		case strings.HasPrefix(line, ";; flags:"):
			f := strings.TrimPrefix(line, ";; flags:")
			f, _, _ = strings.Cut(f, ";")
			r.flags = strings.Fields(f)
		case line == ";; ANSWER SECTION:":
			section = &r.answer
		case line == ";; AUTHORITY SECTION:":
			section = &r.authority
		case line == ";; ADDITIONAL SECTION:":
			section = &r.additional
		case strings.TrimSpace(line) == "":
			section = nil
		case section != nil && !strings.HasPrefix(line, ";"):
			f := strings.Fields(line)
			if len(f) >= 4 {
				*section = append(*section, dig{name: f[0], typ: f[3], data: strings.Join(f[4:], " ")})
			}
		}
	}
	return r
}

// startServer runs an embedded server on 127.0.0.1:0 for view.
func startServer(t testing.TB, cfg Config, view Membership) *Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	s, err := NewServer(cfg, view, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// goQuery asks server with the Go client.
func goQuery(t testing.TB, server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return r
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newSecret(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// named is a real BIND 9 primary for the test cluster, in a temp dir.
type named struct {
	addr    string
	keyName string
	secret  string
	log     *syncBuffer
}

// startNamed writes a named.conf with a primary zone for testCluster that
// keyName may update (update-policy zonesub ANY), plus extra zone-file
// lines, starts named in the foreground and waits until it answers.
func startNamed(t testing.TB, extra ...string) *named {
	t.Helper()
	bin := requireBin(t, "named")
	dir := t.TempDir()
	n := &named{keyName: "sipmesh-test", secret: newSecret(t), log: &syncBuffer{}}
	zone := []string{
		"$TTL 30",
		"@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 30",
		"@ IN NS ns.example.test.",
		"ns IN A 127.0.0.1",
	}
	zone = append(zone, extra...)
	if err := os.WriteFile(filepath.Join(dir, "db.zone"), []byte(strings.Join(zone, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		pc, l, err := listenBoth("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
		l.Close()
		conf := fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	session-keyfile "%[1]s/session.key";
	managed-keys-directory "%[1]s";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
};
controls { };
key "%[3]s" { algorithm hmac-sha256; secret "%[4]s"; };
zone "%[5]s" {
	type primary;
	file "%[1]s/db.zone";
	update-policy { grant %[3]s zonesub ANY; };
};
`, dir, port, n.keyName, n.secret, testCluster)
		confPath := filepath.Join(dir, "named.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"-g", "-c", confPath}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "root")
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = n.log, n.log
		if err := cmd.Start(); err != nil {
			t.Fatalf("start named: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		n.addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
		up := false
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) && !up {
			select {
			case <-exited:
				deadline = time.Now()
				continue
			default:
			}
			m := new(dns.Msg)
			m.SetQuestion(testCluster+".", dns.TypeSOA)
			r, _, err := (&dns.Client{Timeout: 300 * time.Millisecond}).Exchange(m, n.addr)
			up = err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1
			if !up {
				time.Sleep(50 * time.Millisecond)
			}
		}
		if up {
			t.Cleanup(func() {
				cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					cmd.Process.Kill()
					<-exited
				}
			})
			return n
		}
		cmd.Process.Kill()
		<-exited
		if attempt == 2 {
			t.Fatalf("named did not come up on %s:\n%s", n.addr, n.log.String())
		}
	}
}

// updaterConfig is the configuration of a node updating n.
func (n *named) updaterConfig() Config {
	c := testConfig()
	c.RFC2136.Server = n.addr
	c.RFC2136.KeyName = n.keyName
	c.RFC2136.Secret = n.secret
	c.RFC2136.RetryMin = 50 * time.Millisecond
	c.RFC2136.RetryMax = 500 * time.Millisecond
	return c
}
