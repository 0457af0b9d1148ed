package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/bindtest"
	"github.com/sipmesh/sipmesh/internal/proctest"
)

// Process tests of issue #4's GRUU, outbound, foreign domains and WSS: two
// real nodes on 127.0.63.0/24, n1 with every role and relaying allowed to
// foreign.test, n2 a proxy-only edge (it hands REGISTERs to n1 and reads
// bindings over the mesh) with the default, no relaying. Phones are SIPp
// and Go clients on 127.0.63.1xx; the foreign domain is a real BIND
// serving NAPTR, SRV and A records that lead to a SIPp UAS on 127.0.64.50.

func TestMeshGRUUOutboundForeign(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Skip("sipp is not installed")
	}
	// foreign.test: TCP first (NAPTR order), at a port nothing listens on,
	// then UDP at the UAS, so the relay must fail over (RFC 3263 §4.3).
	named := bindtest.Start(t, bindtest.Options{Zone: "foreign.test", Records: []string{
		`@ IN NAPTR 10 50 "s" "SIP+D2T" "" _sip._tcp`,
		`@ IN NAPTR 20 50 "s" "SIP+D2U" "" _sip._udp`,
		`_sip._tcp IN SRV 10 10 5079 sip`,
		`_sip._udp IN SRV 10 10 5070 sip`,
		`sip IN A 127.0.64.50`,
	}})

	c := proctest.NewCluster(t, domain, "127.0.63.")
	var users strings.Builder
	users.WriteString("users:\n")
	for _, u := range []string{"caller", "gruu", "flow", "wssuas"} {
		fmt.Fprintf(&users, "  - {user: %s, domain: %s, password: %s-pw}\n", u, domain, u)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "users.yaml"), []byte(users.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := `listen: ["udp://%IP%:5060", "tcp://%IP%:5060", "tls://%IP%:5061", "wss://%IP%:8443"], users: users.yaml`
	var ips []string
	for i, sipCfg := range []string{
		`sip: {` + listen + `, relay_foreign: [foreign.test]}`,
		`sip: {` + listen + `}`,
	} {
		name, ip := fmt.Sprintf("n%d", i+1), c.NextIP()
		req := certs.IssueRequest{IPs: []net.IP{net.ParseIP(ip)}}
		if i == 1 {
			req.Roles = []string{certs.RoleProxy}
		}
		c.IssueNode(name, req)
		cfg := nodeConfig(name, ips, sipCfg)
		cfg = strings.Replace(cfg, "timing: lan}", "timing: lan, resolver: \""+named.Addr+"\"}", 1)
		c.Start(name, ip, c.WriteConfig(name, ip, cfg))
		ips = append(ips, ip)
	}
	c.WaitAlive(40*time.Second, "n1,n2", "n1", "n2")
	proctest.Eventually(t, 10*time.Second, "SIP edges started", func() error {
		for _, n := range []string{"n1", "n2"} {
			if !strings.Contains(c.Node(n).LogText(), "SIP edge started") {
				return fmt.Errorf("%s has not started its SIP edge", n)
			}
		}
		return nil
	})
	n1, n2 := c.Node("n1"), c.Node("n2")

	t.Run("GRUU", func(t *testing.T) {
		const inst = "urn:uuid:6ad6c8b0-3c1e-4b7a-9d4e-0c6b3f1a2e51"
		// A plain phone of the same AOR must never get a request for
		// the GRUU.
		plain := phone{user: "gruu", ip: "127.0.63.102", port: "5072", ooc: "uas_ooc.xml", mediaPort: 16210}.start(t, n2.IP)
		a := gruuPhone(t, n1.IP, "127.0.63.101", inst)
		waitBinding(t, c, "n1", "gruu@"+domain, "127.0.63.10", 2, plain, a)
		pub, temp1, ft := gruuLog(t, a)
		if want := "sip:gruu@" + domain + ";gr=" + inst; pub != want {
			t.Fatalf("pub-gruu %q, want %q", pub, want)
		}
		if !regexp.MustCompile(`^sip:tgruu\.[A-Za-z0-9_-]+@` + domain + `;gr$`).MatchString(temp1) {
			t.Fatalf("temp-gruu %q is not sip:tgruu.TOKEN@%s;gr", temp1, domain)
		}
		if ft != "29" {
			t.Errorf("Flow-Timer %q for a UDP flow, want 29", ft)
		}
		// Both GRUUs, entering at the proxy-only node, reach the phone
		// registered through n1.
		for _, g := range []string{pub, temp1} {
			if code, s := callRURI(t, n2.IP, g, "127.0.63.104", 5090); code != 0 {
				t.Fatalf("call to %s through n2: sipp exit %d\n%s\nphone:\n%s", g, code, s.report(), a.report())
			}
		}
		if n := strings.Count(a.files("*_messages.log"), "INVITE sip:gruu@127.0.63.101"); n < 2 {
			t.Errorf("the instance got %d INVITEs, want the 2 calls", n)
		}

		// The phone restarts (SIGKILL: it cannot unregister) and
		// registers the same instance through n2 with a new Call-ID: a new
		// temp-gruu; the old one is invalid; the pub-gruu is the same.
		a.cmd.Process.Kill()
		a2 := gruuPhone(t, n2.IP, "127.0.63.103", inst)
		waitBinding(t, c, "n1", "gruu@"+domain, "127.0.63.103", 1, a2)
		pub2, temp2, ft2 := gruuLog(t, a2)
		if pub2 != pub || temp2 == temp1 || ft2 != "29" {
			t.Fatalf("after re-registering with a new Call-ID through n2: pub-gruu %q (was %q), temp-gruu %q (was %q), Flow-Timer %q",
				pub2, pub, temp2, temp1, ft2)
		}
		for _, g := range []string{temp2, pub} {
			if code, s := callRURI(t, n1.IP, g, "127.0.63.104", 5091); code != 0 {
				t.Fatalf("call to %s through n1: sipp exit %d\n%s\nphone:\n%s", g, code, s.report(), a2.report())
			}
		}
		tampered := alter(temp2, len("sip:tgruu.")+3)
		for _, x := range []struct{ ruri, want, why string }{
			{temp1, "404", "temp-gruu of the replaced registration"},
			{tampered, "404", "altered temp-gruu"},
			{"sip:gruu@" + domain + ";gr=urn:uuid:00000000-0000-0000-0000-000000000000", "480", "pub-gruu of an instance without binding"},
			{"sip:nobody@" + domain + ";gr=urn:uuid:00000000-0000-0000-0000-000000000000", "404", "GRUU of an unknown user"},
		} {
			for _, node := range []string{n1.IP, n2.IP} {
				if res := exchange(t, node, "127.0.63.201", message(x.ruri, "someone@elsewhere.test")); !strings.HasPrefix(res, "SIP/2.0 "+x.want) {
					t.Errorf("%s via %s: want %s, got %q", x.why, node, x.want, firstLine(res))
				}
			}
		}
		if msgs := plain.files("*_messages.log"); strings.Contains(msgs, "INVITE sip:") {
			t.Errorf("a request for the GRUU reached the AOR's other contact:\n%s", tail(msgs, 30))
		}
	})

	t.Run("outbound flows", func(t *testing.T) {
		const inst = "urn:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
		// Two flows of one instance: reg-id 1 over TCP through n1, reg-id
		// 2 over TCP through n2. The contact is unreachable: requests can
		// only come over the flows.
		f1 := dialStream(t, "tcp", n1.IP+":5060", "127.0.63.111", nil)
		res1 := f1.registerFlow(inst, 1)
		f2 := dialStream(t, "tcp", n2.IP+":5060", "127.0.63.112", nil)
		f2.registerFlow(inst, 2)
		path1 := header(res1, "Path")
		if len(path1) != 1 || !strings.Contains(path1[0], "sip:ft-") || !strings.Contains(path1[0], ";ob") {
			t.Fatalf("Path of the outbound registration through n1: %q, want n1's flow token with ob (RFC 5626 §5.1)", path1)
		}
		waitBinding(t, c, "n1", "flow@"+domain, "127.0.63.99", 2)

		// RFC 5626 §4.4.1: a double CRLF keep-alive gets a CRLF pong, on
		// TCP and on TLS.
		f2.keepAlive()
		tlsConn := dialStream(t, "tls", n1.IP+":5061", "127.0.63.113", caPool(t, c))
		tlsConn.keepAlive()

		// The flow of reg-id 1 dies. A request for the AOR entering at n2
		// goes to n1 first, which answers 430 (no such flow), then to the
		// flow of reg-id 2 (RFC 5626 §5.3); the caller sees the 200.
		f1.conn.Close()
		answered := f2.answer(1)
		if res := exchange(t, n2.IP, "127.0.63.202", message("sip:flow@"+domain, "someone@elsewhere.test")); !strings.HasPrefix(res, "SIP/2.0 200") {
			t.Fatalf("MESSAGE to the AOR with its first flow gone: want 200 from the second flow, got %q", firstLine(res))
		}
		if n := <-answered; n != 1 {
			t.Fatalf("the second flow got %d MESSAGEs, want 1", n)
		}
		// The second flow is closed before the next exchange, not just
		// before the last: a request that reaches the edge before it has
		// read the close is sent on the dead connection and gets no answer
		// in time (seen once under make test's load).
		f2.conn.Close()
		// The edge itself answers 430 to a request routed to the dead flow.
		if res := exchange(t, n1.IP, "127.0.63.203", message("sip:flow@127.0.63.99:9", "someone@elsewhere.test", "Route: "+path1[0])); !strings.HasPrefix(res, "SIP/2.0 430") {
			t.Errorf("request routed to n1's dead flow: want 430 Flow Failed, got %q", firstLine(res))
		}
		// Both flows gone: the authoritative proxy says 480, never 430.
		if res := exchange(t, n1.IP, "127.0.63.204", message("sip:flow@"+domain, "someone@elsewhere.test")); !strings.HasPrefix(res, "SIP/2.0 480") {
			t.Errorf("MESSAGE to the AOR with every flow gone: want 480, got %q", firstLine(res))
		}
	})

	t.Run("REGISTER over WSS", func(t *testing.T) {
		pool := caPool(t, c)
		conn, _, _, err := ws.Dialer{Protocols: []string{"sip"}, Timeout: 5 * time.Second,
			TLSConfig: &tls.Config{RootCAs: pool, ServerName: n1.IP}}.Dial(context.Background(), "wss://"+n1.IP+":8443")
		if err != nil {
			t.Fatalf("WebSocket over TLS to %s: %v", n1.IP, err)
		}
		defer conn.Close()
		local := conn.LocalAddr().String()
		fill := func(msg string) []byte {
			msg = strings.ReplaceAll(msg, "SIP/2.0/UDP", "SIP/2.0/WSS")
			return []byte(strings.ReplaceAll(strings.ReplaceAll(msg, "@LOCAL>", "@"+local+";transport=wss>"), "LOCAL", local))
		}
		read := func() string {
			for {
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				data, err := wsutil.ReadServerText(conn)
				if err != nil {
					t.Fatal(err)
				}
				if s := string(data); !strings.HasPrefix(s, "SIP/2.0 1") {
					return s
				}
			}
		}
		wsutil.WriteClientText(conn, fill(register("wssuas", "1", "")))
		res := read()
		wsutil.WriteClientText(conn, fill(register("wssuas", "2", digestAuth(res, "wssuas", "wssuas-pw", 1))))
		if res := read(); !strings.HasPrefix(res, "SIP/2.0 200") {
			t.Fatalf("REGISTER over WSS: %q", firstLine(res))
		}
		waitBinding(t, c, "n1", "wssuas@"+domain, "transport=wss", 1)

		// A request entering at n2 comes back over the WSS connection.
		got := make(chan string, 1)
		go func() {
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			data, err := wsutil.ReadServerText(conn)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(data)
			wsutil.WriteClientText(conn, []byte(okFor(string(data))))
		}()
		if res := exchange(t, n2.IP, "127.0.63.205", message("sip:wssuas@"+domain, "someone@elsewhere.test")); !strings.HasPrefix(res, "SIP/2.0 200") {
			t.Fatalf("MESSAGE to the WSS phone: want 200, got %q", firstLine(res))
		}
		if req := <-got; !strings.HasPrefix(req, "MESSAGE sip:wssuas@") {
			t.Fatalf("the WSS phone read %q", firstLine(req))
		}
	})

	t.Run("foreign domain", func(t *testing.T) {
		uas := startSipp(t, "-sf", scenario("uas_ooc.xml"), "-m", "1", "-s", "bob", "-key", "contact_host", "127.0.64.50",
			"-key", "contact_port", "5070", "-key", "tag", "foreign", "-d", "20", "-i", "127.0.64.50", "-p", "5070",
			"-mi", "127.0.64.50", "-mp", "16300", "-timeout", "60s", "-trace_msg", "-trace_err")
		if code, s := callRURI(t, n1.IP, "sip:bob@foreign.test", "127.0.63.106", 5093); code != 0 {
			t.Fatalf("call to bob@foreign.test through n1: sipp exit %d\n%s\nforeign UAS:\n%s", code, s.report(), uas.report())
		}
		if code := uas.wait(10 * time.Second); code != 0 {
			t.Fatalf("foreign UAS exit %d\n%s", code, uas.report())
		}
		for _, x := range []struct{ node, ruri, from, why string }{
			{n2.IP, "sip:bob@foreign.test", "caller@" + domain, "a subscriber, at a node that does not relay (the default)"},
			{n1.IP, "sip:bob@other.test", "caller@" + domain, "a subscriber, to a domain n1 does not relay to"},
			{n1.IP, "sip:bob@foreign.test", "mallory@elsewhere.test", "a stranger, to a domain n1 relays to"},
		} {
			if res := exchange(t, x.node, "127.0.63.206", message(x.ruri, x.from)); !strings.HasPrefix(res, "SIP/2.0 403") {
				t.Errorf("%s: want 403, got %q", x.why, firstLine(res))
			}
		}
	})
}

// gruuPhone starts a SIPp phone that registers instance for gruu@domain
// over UDP through node (reg_gruu_then_uas.xml) and answers calls.
func gruuPhone(t *testing.T, node, ip, instance string) *sipp {
	return startSipp(t, "-sf", scenario("reg_gruu_then_uas.xml"), "-oocsf", scenario("uas_ooc.xml"), "-m", "1",
		"-s", "gruu", "-au", "gruu", "-ap", "gruu-pw", "-auth_uri", domain, "-key", "domain", domain,
		"-key", "instance", instance, "-key", "contact_host", ip, "-key", "contact_port", "5070", "-key", "expires", "3600",
		"-key", "tag", ip, "-d", "20", "-i", ip, "-p", "5070", "-mi", ip, "-mp", "16200", "-t", "u1",
		"-timeout", "620s", "-trace_msg", "-trace_err", "-trace_logs", node+":5060")
}

// gruuLog waits for the GRUU phone's log line and returns its pub-gruu,
// temp-gruu and Flow-Timer.
func gruuLog(t *testing.T, s *sipp) (pub, temp, flowTimer string) {
	t.Helper()
	re := regexp.MustCompile(`pub-gruu=(\S+) temp-gruu=(\S+) flow-timer=(\S+)`)
	proctest.Eventually(t, 10*time.Second, "the GRUU phone's 200", func() error {
		m := re.FindStringSubmatch(s.files("*_logs.log"))
		if m == nil {
			return fmt.Errorf("no GRUUs logged (the 200 must carry pub-gruu, temp-gruu, Flow-Timer and Require: outbound):\n%s", s.report())
		}
		pub, temp, flowTimer = m[1], m[2], m[3]
		return nil
	})
	return pub, temp, flowTimer
}

// callRURI places one authenticated call from caller to ruri through node
// and returns sipp's exit code.
func callRURI(t *testing.T, node, ruri, ip string, port int) (int, *sipp) {
	s := startSipp(t, "-sf", scenario("uac_ruri.xml"), "-key", "ruri", ruri, "-au", "caller", "-ap", "caller-pw",
		"-key", "caller", "caller", "-key", "domain", domain, "-auth_uri", strings.TrimPrefix(ruri, "sip:"),
		"-m", "1", "-i", ip, "-p", strconv.Itoa(port), "-mi", ip, "-mp", strconv.Itoa(port+10000), "-t", "u1",
		"-timeout", "20s", "-timeout_error", "-recv_timeout", "10000", "-trace_err", "-trace_msg", node+":5060")
	return s.wait(30 * time.Second), s
}

// message is an out-of-dialog MESSAGE to ruri from user@host, for exchange.
func message(ruri, from string, extra ...string) string {
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	var hs strings.Builder
	for _, h := range extra {
		hs.WriteString(h + "\r\n")
	}
	return "MESSAGE " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP LOCAL;branch=z9hG4bK" + id + ";rport\r\nMax-Forwards: 70\r\n" +
		"From: <sip:" + from + ">;tag=" + id + "\r\nTo: <" + ruri + ">\r\nCall-ID: " + id + "\r\nCSeq: 1 MESSAGE\r\n" +
		hs.String() + "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
}

// alter changes the byte at i of a token to another base64url character,
// so that the URI stays valid and only the token is wrong.
func alter(s string, i int) string {
	b := []byte(s)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// okFor is the 200 answering a request.
func okFor(req string) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	for _, name := range []string{"Via", "From", "To", "Call-ID", "CSeq"} {
		for _, v := range header(req, name) {
			if name == "To" {
				v += ";tag=ok"
			}
			b.WriteString(name + ": " + v + "\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

func caPool(t *testing.T, c *proctest.Cluster) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(c.Dir, "ca.crt"))
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("ca.crt: %v", err)
	}
	return pool
}

// streamPhone is a Go UA on one TCP or TLS connection: a flow.
type streamPhone struct {
	t         *testing.T
	conn      net.Conn
	rd        *bufio.Reader
	transport string // TCP or TLS
}

// dialStream connects from local to addr over tcp, or tls verified by pool.
func dialStream(t *testing.T, transport, addr, local string, pool *x509.CertPool) *streamPhone {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	var conn net.Conn
	var err error
	if transport == "tls" {
		host, _, _ := net.SplitHostPort(addr)
		conn, err = tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: host})
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("%s to %s: %v", transport, addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &streamPhone{t: t, conn: conn, rd: bufio.NewReader(conn), transport: strings.ToUpper(transport)}
}

func (s *streamPhone) send(msg string) {
	s.t.Helper()
	msg = strings.ReplaceAll(msg, "LOCAL", s.conn.LocalAddr().String())
	s.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.conn.Write([]byte(msg)); err != nil {
		s.t.Fatal(err)
	}
}

// registerFlow registers reg-id of instance for flow@domain, with
// outbound, GRUU and Path support, and returns the 200. It checks what
// RFC 5626 asks of the 200: Require: outbound, and Flow-Timer from the edge
// (120 s on a connection-oriented flow).
func (s *streamPhone) registerFlow(instance string, regID int) string {
	s.t.Helper()
	callID := fmt.Sprintf("flow-%d-%d", regID, time.Now().UnixNano())
	build := func(cseq int, auth string) string {
		return "REGISTER sip:" + domain + " SIP/2.0\r\n" +
			"Via: SIP/2.0/" + s.transport + " LOCAL;branch=z9hG4bK" + callID + strconv.Itoa(cseq) + ";rport\r\nMax-Forwards: 70\r\n" +
			"From: <sip:flow@" + domain + ">;tag=" + callID + "\r\nTo: <sip:flow@" + domain + ">\r\n" +
			"Call-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
			"Supported: path, outbound, gruu\r\n" +
			"Contact: <sip:flow@127.0.63.99:9;transport=tcp;ob>;+sip.instance=\"<" + instance + ">\";reg-id=" + strconv.Itoa(regID) + "\r\n" +
			"Expires: 600\r\n" + auth + "Content-Length: 0\r\n\r\n"
	}
	s.send(build(1, ""))
	res := readStream(s.t, s.rd)
	s.send(build(2, digestAuth(res, "flow", "flow-pw", 1)))
	res = readStream(s.t, s.rd)
	if !strings.HasPrefix(res, "SIP/2.0 200") {
		s.t.Fatalf("outbound REGISTER over %s: %q", s.transport, res)
	}
	if ft := header(res, "Flow-Timer"); len(ft) != 1 || ft[0] != "120" {
		s.t.Errorf("Flow-Timer %q in the 200 to an outbound REGISTER over %s, want 120 (RFC 5626 §5.4)", ft, s.transport)
	}
	if req := header(res, "Require"); len(req) != 1 || req[0] != "outbound" {
		s.t.Errorf("Require %q in the 200 to an outbound REGISTER, want outbound (RFC 5626 §6)", req)
	}
	return res
}

// keepAlive sends the double-CRLF ping and wants the single-CRLF pong
// (RFC 5626 §4.4.1, §5.4).
func (s *streamPhone) keepAlive() {
	s.t.Helper()
	s.send("\r\n\r\n")
	pong := make([]byte, 2)
	if _, err := io.ReadFull(s.rd, pong); err != nil || string(pong) != "\r\n" {
		s.t.Fatalf("keep-alive over %s: read %q, %v; want the CRLF pong", s.transport, pong, err)
	}
}

// answer answers the requests arriving on the flow with 200, and reports
// how many it answered once n did or 10 s passed.
func (s *streamPhone) answer(n int) <-chan int {
	done := make(chan int, 1)
	go func() {
		got := 0
		defer func() { done <- got }()
		s.conn.SetDeadline(time.Now().Add(10 * time.Second))
		for got < n {
			head, err := s.rd.ReadString('\n')
			if err != nil {
				return
			}
			msg := head
			length := 0
			for {
				line, err := s.rd.ReadString('\n')
				if err != nil {
					return
				}
				msg += line
				if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
					length, _ = strconv.Atoi(strings.TrimSpace(v))
				}
				if line == "\r\n" {
					break
				}
			}
			if _, err := io.CopyN(io.Discard, s.rd, int64(length)); err != nil {
				return
			}
			if strings.HasPrefix(head, "SIP/2.0") || strings.HasPrefix(head, "ACK") {
				continue
			}
			if _, err := s.conn.Write([]byte(okFor(msg))); err != nil {
				return
			}
			got++
		}
	}()
	return done
}
