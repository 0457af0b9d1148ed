package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/proctest"
)

// Process tests: three real `sipmesh run` nodes on 127.0.40.0/24, real
// SIPp phones on 127.0.40.1xx, scenarios from scripts/sipp.

const domain = "example.test"

func scenario(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "scripts", "sipp", name)
}

type sipp struct {
	cmd  *exec.Cmd
	dir  string
	out  *proctest.Buffer
	done chan struct{}
	err  error
	// calls is how many calls a load client was told to make.
	calls int
}

// startSipp runs sipp in its own folder; it is killed when the test ends.
func startSipp(t testing.TB, args ...string) *sipp {
	t.Helper()
	return startSippWith(t, nil, args...)
}

// startSippWith is startSipp with files (name: content) put in sipp's
// folder first, such as the pcap a scenario plays.
func startSippWith(t testing.TB, files map[string][]byte, args ...string) *sipp {
	t.Helper()
	s := &sipp{dir: t.TempDir(), out: &proctest.Buffer{}, done: make(chan struct{})}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(s.dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.cmd = exec.Command("sipp", append([]string{"-nostdin"}, args...)...)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("sipp: %v", err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

// wait waits for sipp to end and returns its exit code (-1: timeout).
func (s *sipp) wait(d time.Duration) int {
	select {
	case <-s.done:
		if s.err == nil {
			return 0
		}
		if ee, ok := s.err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return -2
	case <-time.After(d):
		s.cmd.Process.Kill()
		<-s.done
		return -1
	}
}

// files returns the concatenated content of sipp's files matching glob.
func (s *sipp) files(glob string) string {
	ms, _ := filepath.Glob(filepath.Join(s.dir, glob))
	var b strings.Builder
	for _, m := range ms {
		data, _ := os.ReadFile(m)
		b.Write(data)
	}
	return b.String()
}

func (s *sipp) report() string {
	return tail(s.out.String(), 40) + "\n" + tail(s.files("*_errors.log"), 40) + "\n" + tail(s.files("*_messages.log"), 60)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type lookupJSON struct {
	Owner    string           `json:"owner"`
	Replicas []string         `json:"replicas"`
	Records  []map[string]any `json:"records"`
}

func lookup(c *proctest.Cluster, via, aor string) (lookupJSON, error) {
	var l lookupJSON
	out, err := c.CLI("lookup", aor, "--json", "--config", c.Node(via).Config)
	if err != nil {
		return l, err
	}
	return l, json.Unmarshal([]byte(out), &l)
}

// phone registers user through node (UDP or TCP) and answers calls with
// the out-of-call scenario ooc.
type phone struct {
	user, ip, port, transport, ooc string
	contactHost, contactPort       string
	mediaPort                      int
	answerDelay                    int
	files                          map[string][]byte // put in sipp's folder
}

func (p phone) start(t testing.TB, node string) *sipp {
	ch, cp := p.contactHost, p.contactPort
	if ch == "" {
		ch, cp = p.ip, p.port
	}
	tr := "u1"
	if p.transport == "tcp" {
		tr = "t1"
	}
	args := []string{"-sf", scenario("reg_then_uas.xml"), "-oocsf", scenario(p.ooc), "-m", "1",
		"-s", p.user, "-au", p.user, "-ap", p.user + "-pw", "-auth_uri", domain,
		"-key", "domain", domain, "-key", "contact_host", ch, "-key", "contact_port", cp,
		"-key", "expires", "3600", "-d", strconv.Itoa(max(p.answerDelay, 20)),
		"-key", "tag", p.user, "-i", p.ip, "-p", p.port, "-mi", p.ip, "-mp", strconv.Itoa(p.mediaPort), "-t", tr,
		"-timeout", "620s", node + ":5060"}
	args = append(args, "-trace_msg", "-trace_err")
	return startSippWith(t, p.files, args...)
}

func waitBinding(t testing.TB, c *proctest.Cluster, via, aor, contains string, n int, phones ...*sipp) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range phones {
				t.Logf("phone output:\n%s", p.report())
			}
		}
	})
	proctest.Eventually(t, 20*time.Second, "binding of "+aor, func() error {
		l, err := lookup(c, via, aor)
		if err != nil {
			return err
		}
		found := 0
		for _, r := range l.Records {
			if s, _ := r["contact"].(string); strings.Contains(s, contains) {
				if e, ok := r["expires"].(float64); !ok || e <= 0 {
					return fmt.Errorf("record without expires: %v", r)
				}
				found++
			}
		}
		if found < n {
			return fmt.Errorf("%d of %d bindings with %q: %v", found, n, contains, l.Records)
		}
		return nil
	})
}

// call runs n calls from caller to callee entering at node and returns
// sipp's exit code (0: every call succeeded).
func call(t testing.TB, node, callee string, n int, ip string, port, mediaPort int) (int, *sipp) {
	s := startSipp(t, "-sf", scenario("uac_auth.xml"), "-s", callee, "-au", "caller", "-ap", "caller-pw",
		"-key", "caller", "caller", "-key", "domain", domain, "-auth_uri", callee+"@"+domain,
		"-m", strconv.Itoa(n), "-r", "50", "-l", "20", "-i", ip, "-p", strconv.Itoa(port), "-mi", ip,
		"-mp", strconv.Itoa(mediaPort), "-t", "u1", "-timeout", "90s", "-timeout_error", "-recv_timeout", "10000", "-trace_err",
		node+":5060")
	return s.wait(100 * time.Second), s
}

func startMesh(t testing.TB) (*proctest.Cluster, []string) {
	return startMeshOn(t, "127.0.40.", `users: users.yaml`)
}

// startMeshOn starts n1-n3 (all roles) and n4 (proxy only) on subnet with
// the given keys of the sip section and extra config sections.
func startMeshOn(t testing.TB, subnet, sipKeys string, extra ...string) (*proctest.Cluster, []string) {
	c := proctest.NewCluster(t, domain, subnet)
	var users strings.Builder
	users.WriteString("users:\n")
	for _, u := range []string{"uas", "tcpuas", "fork", "caller", "idle", "edgeuas", "ringer", "tlsuas", "wsuas", "hangup"} {
		fmt.Fprintf(&users, "  - {user: %s, domain: %s, password: %s-pw}\n", u, domain, u)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "users.yaml"), []byte(users.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	sipCfg := `sip: {listen: ["udp://%IP%:5060", "tcp://%IP%:5060", "tls://%IP%:5061", "ws://%IP%:8080"]`
	if sipKeys != "" {
		sipCfg += ", " + sipKeys
	}
	sipCfg += "}"
	for _, e := range extra {
		sipCfg += "\n" + e
	}
	var names, ips []string
	// n1-n3 have every role; n4 is a proxy-only edge, which hands
	// REGISTERs to the registrar ring's owner over SIP.
	for i := 1; i <= 4; i++ {
		name := fmt.Sprintf("n%d", i)
		ip := c.NextIP()
		req := certs.IssueRequest{IPs: []net.IP{net.ParseIP(ip)}}
		if i == 4 {
			req.Roles = []string{certs.RoleProxy}
		}
		c.IssueNode(name, req)
		var seeds []string
		if i > 1 {
			seeds = ips[:1]
		}
		c.Start(name, ip, c.WriteConfig(name, ip, nodeConfig(name, seeds, sipCfg)))
		names, ips = append(names, name), append(ips, ip)
	}
	c.WaitAlive(40*time.Second, "n1,n2,n3,n4", names...)
	proctest.Eventually(t, 10*time.Second, "SIP edges started", func() error {
		for _, n := range names {
			data, _ := os.ReadFile(c.Node(n).Log)
			if !strings.Contains(string(data), "SIP edge started") {
				return fmt.Errorf("%s has not started its SIP edge: node.Run must call startSIP (node/sip.go) and advertise sipServices", n)
			}
		}
		return nil
	})
	return c, names[:3]
}

// nodeConfig is proctest.DefaultConfig with info logs: SIP at debug level
// logs every transaction, which would weigh on the load figures.
func nodeConfig(name string, seeds []string, extra string) string {
	return strings.Replace(proctest.DefaultConfig(name, seeds, extra), "log: {level: debug}", "log: {level: info}", 1)
}

func TestMeshRegisterAndCall(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Skip("sipp is not installed")
	}
	c, names := startMesh(t)
	l, err := lookup(c, "n1", "uas@"+domain)
	if err != nil {
		t.Fatal(err)
	}
	// The callee registers through one node and is called through another;
	// neither is the ring owner of its AOR, which is SIGKILLed at the end.
	owner := l.Owner
	var others []string
	for _, n := range names {
		if n != owner {
			others = append(others, n)
		}
	}
	edge, entry := c.Node(others[0]), c.Node(others[1])
	t.Logf("owner of uas@%s: %s; edge %s (%s), entry %s (%s)", domain, owner, edge.Name, edge.IP, entry.Name, entry.IP)

	uas := phone{user: "uas", ip: "127.0.40.101", port: "5070", ooc: "uas_ooc.xml", mediaPort: 16000}.start(t, edge.IP)
	waitBinding(t, c, entry.Name, "uas@"+domain, "127.0.40.101", 1, uas)

	t.Run("100 calls UDP", func(t *testing.T) {
		start := time.Now()
		code, s := call(t, entry.IP, "uas", 100, "127.0.40.102", 5080, 16010)
		if code != 0 {
			t.Fatalf("sipp UAC exit %d\n%s\nUAS:\n%s", code, s.report(), uas.report())
		}
		t.Logf("100 calls through %s to a phone on %s: all succeeded in %v", entry.Name, edge.Name, time.Since(start).Round(time.Millisecond))
	})

	t.Run("TCP flow reuse", func(t *testing.T) {
		// The Contact is unreachable: the INVITE can only come over the
		// TCP connection the REGISTER used.
		phone{user: "tcpuas", ip: "127.0.40.103", port: "5090", transport: "tcp", ooc: "uas_ooc.xml",
			contactHost: "127.0.40.99", contactPort: "9", mediaPort: 16020}.start(t, edge.IP)
		waitBinding(t, c, entry.Name, "tcpuas@"+domain, "127.0.40.99", 1)
		code, s := call(t, entry.IP, "tcpuas", 10, "127.0.40.102", 5081, 16030)
		if code != 0 {
			t.Fatalf("sipp UAC exit %d\n%s", code, s.report())
		}
	})

	t.Run("forking", func(t *testing.T) {
		phone{user: "fork", ip: "127.0.40.104", port: "5100", ooc: "uas_ooc.xml", answerDelay: 300, mediaPort: 16040}.start(t, edge.IP)
		loser := phone{user: "fork", ip: "127.0.40.105", port: "5110", ooc: "uas_cancelled.xml", mediaPort: 16050}.start(t, entry.IP)
		waitBinding(t, c, entry.Name, "fork@"+domain, "127.0.40.10", 2)
		code, s := call(t, entry.IP, "fork", 1, "127.0.40.102", 5082, 16060)
		if code != 0 {
			t.Fatalf("sipp UAC exit %d\n%s", code, s.report())
		}
		proctest.Eventually(t, 10*time.Second, "losing leg got CANCEL and ACKed 487", func() error {
			msgs := loser.files("*_messages.log")
			if !strings.Contains(msgs, "CANCEL sip:fork@") {
				return fmt.Errorf("no CANCEL in the losing leg's messages:\n%s", tail(msgs, 30))
			}
			if !strings.Contains(msgs, "ACK sip:fork@") {
				return fmt.Errorf("no ACK for the 487 in the losing leg's messages:\n%s", tail(msgs, 30))
			}
			return nil
		})
	})

	t.Run("caller cancels", func(t *testing.T) {
		ringer := phone{user: "ringer", ip: "127.0.40.110", port: "5140", ooc: "uas_cancelled.xml", mediaPort: 16110}.start(t, edge.IP)
		waitBinding(t, c, entry.Name, "ringer@"+domain, "127.0.40.110", 1)
		s := startSipp(t, "-sf", scenario("uac_cancel.xml"), "-s", "ringer", "-au", "caller", "-ap", "caller-pw",
			"-key", "caller", "caller", "-key", "domain", domain, "-auth_uri", "ringer@"+domain, "-m", "1",
			"-i", "127.0.40.102", "-p", "5085", "-mi", "127.0.40.102", "-mp", "16120", "-timeout", "30s", "-timeout_error",
			"-trace_err", entry.IP+":5060")
		if code := s.wait(40 * time.Second); code != 0 {
			t.Fatalf("sipp UAC exit %d\n%s\ncallee:\n%s", code, s.report(), ringer.report())
		}
		proctest.Eventually(t, 10*time.Second, "callee got the CANCEL", func() error {
			if msgs := ringer.files("*_messages.log"); !strings.Contains(msgs, "CANCEL sip:ringer@") {
				return fmt.Errorf("no CANCEL reached the callee:\n%s", tail(msgs, 30))
			}
			return nil
		})
	})

	t.Run("callee hangs up", func(t *testing.T) {
		// The BYE goes the other way: callee's flow at the edge, entry
		// node, caller (RFC 3261 §16.12, route set from Record-Route).
		phone{user: "hangup", ip: "127.0.40.111", port: "5150", transport: "tcp", ooc: "uas_hangup.xml",
			contactHost: "127.0.40.99", contactPort: "9", mediaPort: 16140}.start(t, edge.IP)
		waitBinding(t, c, entry.Name, "hangup@"+domain, "127.0.40.99", 1)
		s := startSipp(t, "-sf", scenario("uac_hangup.xml"), "-s", "hangup", "-au", "caller", "-ap", "caller-pw",
			"-key", "caller", "caller", "-key", "domain", domain, "-auth_uri", "hangup@"+domain, "-m", "10", "-r", "20",
			"-i", "127.0.40.102", "-p", "5087", "-mi", "127.0.40.102", "-mp", "16150", "-timeout", "40s", "-timeout_error",
			"-trace_err", entry.IP+":5060")
		if code := s.wait(50 * time.Second); code != 0 {
			t.Fatalf("sipp UAC exit %d\n%s", code, s.report())
		}
	})

	t.Run("proxy-only edge", func(t *testing.T) {
		// n4 has no registrar role: it adds its Path and forwards the
		// REGISTER to the ring owner over SIP; calls come back through it.
		phone{user: "edgeuas", ip: "127.0.40.109", port: "5130", ooc: "uas_ooc.xml", mediaPort: 16090}.start(t, c.Node("n4").IP)
		waitBinding(t, c, entry.Name, "edgeuas@"+domain, "127.0.40.109", 1)
		l, err := lookup(c, entry.Name, "edgeuas@"+domain)
		if err != nil {
			t.Fatal(err)
		}
		if path := fmt.Sprint(l.Records[0]["path"]); !strings.Contains(path, c.Node("n4").IP) {
			t.Fatalf("binding's path %s does not go through n4 (%s)", path, c.Node("n4").IP)
		}
		code, s := call(t, entry.IP, "edgeuas", 10, "127.0.40.102", 5084, 16100)
		if code != 0 {
			t.Fatalf("sipp UAC exit %d\n%s", code, s.report())
		}
	})

	t.Run("REGISTER over TLS", func(t *testing.T) {
		// SIPp here has no TLS: a Go client registers over TLS 1.3,
		// verifying the node's certificate against the cluster CA.
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(filepath.Join(c.Dir, "ca.crt"))
		if err != nil || !pool.AppendCertsFromPEM(ca) {
			t.Fatalf("ca.crt: %v", err)
		}
		conn, err := tls.Dial("tcp", edge.IP+":5061", &tls.Config{RootCAs: pool, ServerName: edge.IP})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		rd := bufio.NewReader(conn)
		send := func(msg string) string {
			local := conn.LocalAddr().String()
			msg = strings.ReplaceAll(msg, "SIP/2.0/UDP", "SIP/2.0/TLS")
			msg = strings.ReplaceAll(strings.ReplaceAll(msg, "@LOCAL>", "@"+local+";transport=tls>"), "LOCAL", local)
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			return readStream(t, rd)
		}
		res := send(register("tlsuas", "1", ""))
		if !strings.HasPrefix(res, "SIP/2.0 401") {
			t.Fatalf("want 401, got %q", firstLine(res))
		}
		res = send(register("tlsuas", "2", digestAuth(res, "tlsuas", "tlsuas-pw", 1)))
		if !strings.HasPrefix(res, "SIP/2.0 200") {
			t.Fatalf("want 200, got\n%s", res)
		}
		waitBinding(t, c, entry.Name, "tlsuas@"+domain, "transport=tls", 1)
	})

	t.Run("WebSocket phone", func(t *testing.T) {
		// A Go phone registers over WebSocket (RFC 7118) through the
		// edge and answers calls that SIPp places through the entry
		// node: they reach it over its WebSocket connection.
		conn, _, _, err := ws.Dialer{Protocols: []string{"sip"}, Timeout: 5 * time.Second}.Dial(context.Background(), "ws://"+edge.IP+":8080")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		local := conn.LocalAddr().String()
		fill := func(msg string) []byte {
			msg = strings.ReplaceAll(msg, "SIP/2.0/UDP", "SIP/2.0/WS")
			return []byte(strings.ReplaceAll(strings.ReplaceAll(msg, "@LOCAL>", "@"+local+";transport=ws>"), "LOCAL", local))
		}
		read := func() *sip.Response {
			for {
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				data, err := wsutil.ReadServerText(conn)
				if err != nil {
					t.Fatal(err)
				}
				m, err := sip.ParseMessage(data)
				if err != nil {
					t.Fatalf("%v: %q", err, data)
				}
				if res, ok := m.(*sip.Response); ok && res.StatusCode >= 200 {
					return res
				}
			}
		}
		wsutil.WriteClientText(conn, fill(register("wsuas", "1", "")))
		res := read()
		wsutil.WriteClientText(conn, fill(register("wsuas", "2", digestAuth(res.String(), "wsuas", "wsuas-pw", 1))))
		if res := read(); res.StatusCode != 200 {
			t.Fatalf("REGISTER over WS: %s", res.StartLine())
		}
		waitBinding(t, c, entry.Name, "wsuas@"+domain, "transport=ws", 1)

		answered := make(chan int, 1)
		go func() {
			n := 0
			defer func() { answered <- n }()
			for {
				conn.SetReadDeadline(time.Now().Add(20 * time.Second))
				data, err := wsutil.ReadServerText(conn)
				if err != nil {
					return
				}
				m, err := sip.ParseMessage(data)
				req, ok := m.(*sip.Request)
				if err != nil || !ok {
					continue
				}
				switch req.Method {
				case sip.INVITE:
					res := sip.NewResponseFromRequest(req, 200, "OK", nil)
					res.AppendHeader(sip.NewHeader("Contact", "<sip:wsuas@"+local+";transport=ws>"))
					wsutil.WriteClientText(conn, []byte(res.String()))
				case sip.BYE:
					wsutil.WriteClientText(conn, []byte(sip.NewResponseFromRequest(req, 200, "OK", nil).String()))
					if n++; n == 5 {
						return
					}
				}
			}
		}()
		code, s := call(t, entry.IP, "wsuas", 5, "127.0.40.102", 5086, 16130)
		if code != 0 {
			t.Fatalf("sipp UAC exit %d\n%s", code, s.report())
		}
		if n := <-answered; n != 5 {
			t.Fatalf("the WebSocket phone saw %d BYEs, want 5", n)
		}
	})

	t.Run("404 and 480", func(t *testing.T) {
		for user, want := range map[string]string{"nosuchuser": "404", "idle": "480"} {
			res := exchange(t, entry.IP, "127.0.40.106", invite(user, "127.0.40.106"))
			if !strings.HasPrefix(res, "SIP/2.0 "+want) {
				t.Errorf("INVITE to %s (unauthenticated caller from a foreign domain): want %s, got %q", user, want, firstLine(res))
			}
		}
	})

	t.Run("auth negatives", func(t *testing.T) {
		s := startSipp(t, "-sf", scenario("register_auth_forbidden.xml"), "-m", "1", "-s", "uas", "-au", "uas", "-ap", "wrong",
			"-key", "domain", domain, "-auth_uri", domain, "-i", "127.0.40.107", "-p", "5120", "-mi", "127.0.40.107", "-mp", "16070",
			"-timeout", "20s", "-timeout_error", edge.IP+":5060")
		if code := s.wait(30 * time.Second); code != 0 {
			t.Errorf("wrong password: sipp exit %d\n%s", code, s.report())
		}
		replayedNonceCount(t, edge.IP, entry.IP, "127.0.40.108")

		// A nonce issued by one node, answered to another with the right
		// password, gets that node's challenge with stale=true (nonces
		// are bound to their node, DECISIONS.md), which is then taken.
		res := exchange(t, edge.IP, "127.0.40.108", register("idle", "1", ""))
		res = exchange(t, entry.IP, "127.0.40.108", register("idle", "2", digestAuth(res, "idle", "idle-pw", 1)))
		if !strings.HasPrefix(res, "SIP/2.0 401") || !strings.Contains(strings.ToLower(res), "stale=true") {
			t.Errorf("nonce from %s answered to %s: want 401 with stale=true, got\n%s", edge.Name, entry.Name, res)
		}
		if res = exchange(t, entry.IP, "127.0.40.108", register("idle", "3", digestAuth(res, "idle", "idle-pw", 1))); !strings.HasPrefix(res, "SIP/2.0 200") {
			t.Errorf("%s's own nonce after stale=true: want 200, got %q", entry.Name, firstLine(res))
		}

		// A nonce the cluster issued ten minutes ago, answered with the
		// right password, is stale: 401 with stale=true (RFC 7616 §3.3).
		old := staleChallenge(t, filepath.Join(c.Dir, "ca.crt"), entry.Name, time.Now().Add(-10*time.Minute))
		res = exchange(t, entry.IP, "127.0.40.108", register("idle", "4", digestAuth(old, "idle", "idle-pw", 1)))
		if !strings.HasPrefix(res, "SIP/2.0 401") || !strings.Contains(strings.ToLower(res), "stale=true") {
			t.Errorf("stale nonce: want 401 with stale=true, got\n%s", res)
		}
	})

	t.Run("owner SIGKILLed", func(t *testing.T) {
		c.Kill(owner)
		start := time.Now()
		code, s := call(t, entry.IP, "uas", 100, "127.0.40.102", 5083, 16080)
		if code != 0 {
			t.Fatalf("after SIGKILL of %s: sipp UAC exit %d\n%s\nUAS:\n%s", owner, code, s.report(), uas.report())
		}
		t.Logf("100 calls after SIGKILL of the AOR's owner %s: all succeeded in %v", owner, time.Since(start).Round(time.Millisecond))
	})
}

// --- a raw UDP client for what SIPp cannot do ---

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\r\n"); return l }

func exchange(t *testing.T, node, local, msg string) string {
	t.Helper()
	conn, err := net.ListenPacket("udp", local+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg = strings.ReplaceAll(msg, "LOCAL", conn.LocalAddr().String())
	dst, _ := net.ResolveUDPAddr("udp", node+":5060")
	buf := make([]byte, 65535)
	for attempt := 0; attempt < 4; attempt++ {
		conn.WriteTo([]byte(msg), dst)
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				break
			}
			res := string(buf[:n])
			if strings.HasPrefix(res, "SIP/2.0 1") {
				continue
			}
			return res
		}
	}
	t.Fatalf("no final response from %s to:\n%s", node, msg)
	return ""
}

func invite(user, ip string) string {
	body := "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	return "INVITE sip:" + user + "@" + domain + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP LOCAL;branch=z9hG4bK" + id + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:someone@elsewhere.test>;tag=" + id + "\r\nTo: <sip:" + user + "@" + domain + ">\r\n" +
		"Call-ID: " + id + "\r\nCSeq: 1 INVITE\r\nContact: <sip:someone@LOCAL>\r\nContent-Type: application/sdp\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

func register(user, cseq, auth string) string {
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	return "REGISTER sip:" + domain + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP LOCAL;branch=z9hG4bK" + id + "\r\nMax-Forwards: 70\r\n" +
		"From: <sip:" + user + "@" + domain + ">;tag=r1\r\nTo: <sip:" + user + "@" + domain + ">\r\n" +
		"Call-ID: replay-test-" + user + "\r\nCSeq: " + cseq + " REGISTER\r\nContact: <sip:" + user + "@LOCAL>\r\nExpires: 60\r\n" +
		auth + "Content-Length: 0\r\n\r\n"
}

func header(res, name string) []string {
	var out []string
	for _, l := range strings.Split(res, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

func param(h, name string) string {
	for _, p := range strings.Split(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		k = strings.TrimPrefix(strings.TrimSpace(k), "Digest ")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return ""
}

func md5hex(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }

// staleChallenge builds a 401 carrying a nonce node issuer would have
// issued at when: the format of roles/digest (base64url(time | issuer |
// random | HMAC(key, time | issuer | random | realm))) under the secret
// node/sip.go derives from the CA certificate.
func staleChallenge(t *testing.T, caPath, issuer string, when time.Time) string {
	ca, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, []byte("sipmesh digest nonce secret v1"))
	m.Write(ca)
	m.Write([]byte(domain))
	m = hmac.New(sha256.New, m.Sum(nil))
	m.Write([]byte("sipmesh digest nonce v2"))
	key := m.Sum(nil)
	b := make([]byte, 28, 60) // time, issuer, random; the MAC follows
	binary.BigEndian.PutUint64(b, uint64(when.Unix()))
	iss := sha256.Sum256([]byte(issuer))
	copy(b[8:], iss[:8])
	copy(b[16:], "0123456789ab")
	m = hmac.New(sha256.New, key)
	m.Write(b)
	m.Write([]byte(domain))
	b = append(b, m.Sum(nil)...)
	return "SIP/2.0 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"" + domain + "\", nonce=\"" +
		base64.RawURLEncoding.EncodeToString(b) + "\", algorithm=MD5, qop=\"auth\"\r\n\r\n"
}

// digestAuth answers the MD5 challenge of a 401 for a REGISTER to the
// domain with nonce-count nc.
func digestAuth(res, user, password string, nc int) string {
	var chal string
	for _, h := range header(res, "WWW-Authenticate") {
		if strings.Contains(h, "MD5") {
			chal = h
		}
	}
	nonce, realm := param(chal, "nonce"), param(chal, "realm")
	ncs := fmt.Sprintf("%08x", nc)
	ha1 := md5hex(user + ":" + realm + ":" + password)
	ha2 := md5hex("REGISTER:sip:" + domain)
	resp := md5hex(ha1 + ":" + nonce + ":" + ncs + ":abc:auth:" + ha2)
	return fmt.Sprintf(`Authorization: Digest username="%s", realm="%s", nonce="%s", uri="sip:%s", response="%s", algorithm=MD5, qop=auth, nc=%s, cnonce="abc"`+"\r\n",
		user, realm, nonce, domain, resp, ncs)
}

// readStream reads one final response from a stream connection.
func readStream(t *testing.T, rd *bufio.Reader) string {
	t.Helper()
	for {
		var head strings.Builder
		length := 0
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("reading a response: %v (got %q)", err, head.String())
			}
			head.WriteString(line)
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if line == "\r\n" {
				break
			}
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(rd, body); err != nil {
			t.Fatal(err)
		}
		if res := head.String() + string(body); !strings.HasPrefix(res, "SIP/2.0 1") {
			return res
		}
	}
}

// replayedNonceCount: a REGISTER accepted with nc=1, sent again with the
// same nonce and nc=1, to the same node or to another one, is refused with
// a fresh challenge (RFC 7616 §3.4.5); retransmitted, it is not.
func replayedNonceCount(t *testing.T, node, other, local string) {
	res := exchange(t, node, local, register("caller", "1", ""))
	if !strings.HasPrefix(res, "SIP/2.0 401") {
		t.Fatalf("want 401, got %q", firstLine(res))
	}
	creds := digestAuth(res, "caller", "caller-pw", 1)
	// The accepted REGISTER, then its retransmission, octet for octet from
	// the same socket: that is no replay, and gets a 200 again (RFC 3261
	// §17.2.2), which the edge answers without a transaction.
	conn, err := net.ListenPacket("udp", local+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	accepted := strings.ReplaceAll(register("caller", "2", creds), "LOCAL", conn.LocalAddr().String())
	dst, _ := net.ResolveUDPAddr("udp", node+":5060")
	buf := make([]byte, 65535)
	for _, use := range []string{"first use of the nonce", "retransmission"} {
		conn.WriteTo([]byte(accepted), dst)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := conn.ReadFrom(buf)
		if res := string(buf[:n]); err != nil || !strings.HasPrefix(res, "SIP/2.0 200") {
			t.Fatalf("%s: want 200, got %q (%v)", use, firstLine(res), err)
		}
	}
	for i, n := range []string{node, other} {
		res = exchange(t, n, local, register("caller", strconv.Itoa(3+i), creds))
		if !strings.HasPrefix(res, "SIP/2.0 401") {
			t.Fatalf("replayed nc to %s: want 401, got %q", n, firstLine(res))
		}
		if !bytes.Contains([]byte(strings.ToLower(res)), []byte("stale=true")) {
			t.Errorf("replayed nc to %s: want a stale=true challenge, got\n%s", n, res)
		}
	}
}
