package proxy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/internal/proctest"
)

// relayPorts is relay.ports of the nodes of TestMeshRelay.
const relayPortMin, relayPortMax = 41000, 41999

type relayLeg struct {
	Relay   string `json:"relay"`
	Peer    string `json:"peer"`
	Packets uint64 `json:"packets"`
	Dropped uint64 `json:"dropped"`
}

type relaySession struct {
	CallID  string `json:"call_id"`
	Owner   string `json:"owner"`
	Streams []struct {
		A relayLeg `json:"a"`
		B relayLeg `json:"b"`
	} `json:"streams"`
}

// relaySessions lists the live relay sessions of the alive nodes, by node.
func relaySessions(t testing.TB, c *proctest.Cluster, nodes ...string) map[string][]relaySession {
	t.Helper()
	out := map[string][]relaySession{}
	for _, n := range nodes {
		if c.Node(n).Exited() {
			continue
		}
		js, err := c.CLI("relay", "sessions", "--json", "--config", c.Node(n).Config)
		if err != nil {
			t.Fatalf("relay sessions on %s: %v\n%s", n, err, js)
		}
		var ss []relaySession
		if err := json.Unmarshal([]byte(js), &ss); err != nil {
			t.Fatalf("relay sessions on %s: %v\n%s", n, err, js)
		}
		out[n] = ss
	}
	return out
}

// sessionOf finds the session of callID: its node and state.
func sessionOf(all map[string][]relaySession, callID string) (string, relaySession, bool) {
	for n, ss := range all {
		for _, s := range ss {
			if s.CallID == callID {
				return n, s, true
			}
		}
	}
	return "", relaySession{}, false
}

var reCallID = regexp.MustCompile(`(?m)^Call-ID: (\S+)`)

// firstCallID is the Call-ID of the first message in a sipp trace.
func firstCallID(t testing.TB, s *sipp) string {
	t.Helper()
	var id string
	proctest.Eventually(t, 10*time.Second, "a Call-ID in the sipp trace", func() error {
		m := reCallID.FindStringSubmatch(s.files("*_messages.log"))
		if m == nil {
			return fmt.Errorf("none yet")
		}
		id = m[1]
		return nil
	})
	return id
}

// relayFreed waits until some node logged that it freed callID's session
// for reason.
func relayFreed(t testing.TB, c *proctest.Cluster, nodes []string, callID, reason string) {
	t.Helper()
	proctest.Eventually(t, 15*time.Second, "session of "+callID+" freed ("+reason+")", func() error {
		for _, n := range nodes {
			for _, l := range strings.Split(c.Node(n).LogText(), "\n") {
				if strings.Contains(l, "relay: session freed") && strings.Contains(l, "call_id="+callID) {
					if !strings.Contains(l, "reason="+reason) {
						return fmt.Errorf("freed otherwise: %s", l)
					}
					return nil
				}
			}
		}
		return fmt.Errorf("no node logged it")
	})
	proctest.Eventually(t, 5*time.Second, "no session of "+callID, func() error {
		if n, _, ok := sessionOf(relaySessions(t, c, nodes...), callID); ok {
			return fmt.Errorf("still on %s", n)
		}
		return nil
	})
}

// sdpAddrs returns the c= and m= addresses of the SDP bodies of the
// messages in a sipp trace that start with first.
func sdpAddrs(trace, first string) (conns []string, ports []int) {
	for _, msg := range strings.Split(trace, "-----------------------------------------------") {
		_, body, ok := strings.Cut(msg, "\n\n")
		if !ok || !strings.HasPrefix(strings.TrimSpace(body), first) {
			continue
		}
		for _, l := range strings.Split(body, "\n") {
			l = strings.TrimSpace(l)
			if a, ok := strings.CutPrefix(l, "c=IN IP4 "); ok {
				conns = append(conns, a)
			}
			if a, ok := strings.CutPrefix(l, "m=audio "); ok {
				p, _ := strconv.Atoi(strings.Fields(a)[0])
				ports = append(ports, p)
			}
		}
	}
	return conns, ports
}

// onlyRelay fails unless the SDP received names relay addresses only: a
// node's IP and a port of relay.ports.
func onlyRelay(t testing.TB, who, trace, first string, nodeIPs map[string]bool) {
	t.Helper()
	conns, ports := sdpAddrs(trace, first)
	if len(conns) == 0 || len(ports) == 0 {
		t.Fatalf("%s received no SDP in %q messages:\n%s", who, first, tail(trace, 60))
	}
	for _, a := range conns {
		if !nodeIPs[a] {
			t.Errorf("%s received c=%s, not a relay address", who, a)
		}
	}
	for _, p := range ports {
		if p < relayPortMin || p > relayPortMax {
			t.Errorf("%s received m= port %d, not a relay port", who, p)
		}
	}
}

// TestMeshRelay: media of calls through the mesh flows through a relay the
// proxy picked, and relay sessions end with the calls.
func TestMeshRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Skip("sipp is not installed")
	}
	if _, err := os.Stat("/usr/share/sip-tester/g711a.pcap"); err != nil {
		t.Skip("sipp's g711a.pcap is missing (Debian package sip-tester)")
	}
	c, names := startMeshOn(t, "127.0.53.", `users: users.yaml`,
		fmt.Sprintf(`relay: {ports: "%d-%d", mode: always, inactivity_timeout: 2}`, relayPortMin, relayPortMax))
	all := append(names, "n4")
	nodeIPs := map[string]bool{}
	for _, n := range all {
		nodeIPs[c.Node(n).IP] = true
	}
	edge, entry := c.Node(names[0]), c.Node(names[2])

	uas := phone{user: "uas", ip: "127.0.53.101", port: "5070", ooc: "uas_ooc.xml", mediaPort: 16000, extra: []string{"-rtp_echo"}}.start(t, edge.IP)
	waitBinding(t, c, entry.Name, "uas@"+domain, "127.0.53.101", 1, uas)

	t.Run("RTP both ways through the relay", func(t *testing.T) {
		s := startSipp(t, "-sf", scenario("uac_rtp.xml"), "-s", "uas", "-au", "caller", "-ap", "caller-pw",
			"-key", "caller", "caller", "-key", "domain", domain, "-auth_uri", "uas@"+domain, "-m", "1", "-d", "3000",
			"-i", "127.0.53.102", "-p", "5080", "-mi", "127.0.53.102", "-mp", "16010", "-t", "u1",
			"-timeout", "30s", "-timeout_error", "-recv_timeout", "10000", "-trace_msg", "-trace_err", entry.IP+":5060")
		id := firstCallID(t, s)
		var node string
		var sess relaySession
		proctest.Eventually(t, 10*time.Second, "RTP from both parties at the relay", func() error {
			n, ss, ok := sessionOf(relaySessions(t, c, names...), id)
			if !ok {
				return fmt.Errorf("no session of %s", id)
			}
			if len(ss.Streams) != 1 || ss.Streams[0].A.Packets < 20 || ss.Streams[0].B.Packets < 20 {
				return fmt.Errorf("%s: %+v", n, ss.Streams)
			}
			node, sess = n, ss
			return nil
		})
		// The callee echoes what it receives: its packets at the relay are
		// the caller's, come back. Each party's source was latched.
		st := sess.Streams[0]
		if !strings.HasPrefix(st.A.Peer, "127.0.53.102:") || !strings.HasPrefix(st.B.Peer, "127.0.53.101:") {
			t.Errorf("latched peers a=%s b=%s", st.A.Peer, st.B.Peer)
		}
		if sess.Owner != entry.Name && !(node == entry.Name && sess.Owner == "") {
			t.Errorf("session on %s owned by %q; the entry node %s anchors the call", node, sess.Owner, entry.Name)
		}
		t.Logf("call %s relayed by %s: a %+v, b %+v", id, node, st.A, st.B)
		if code := s.wait(30 * time.Second); code != 0 {
			t.Fatalf("sipp UAC exit %d\n%s", code, s.report())
		}
		onlyRelay(t, "the caller", s.files("*_messages.log"), "SIP/2.0 200 OK", nodeIPs)
		onlyRelay(t, "the callee", uas.files("*_messages.log"), "INVITE ", nodeIPs)
		relayFreed(t, c, names, id, "free")
	})

	t.Run("freed on CANCEL and on a failed call", func(t *testing.T) {
		ringer := phone{user: "ringer", ip: "127.0.53.103", port: "5071", ooc: "uas_cancelled.xml", mediaPort: 16020}.start(t, edge.IP)
		busy := phone{user: "fork", ip: "127.0.53.104", port: "5072", ooc: "uas_busy.xml", mediaPort: 16030}.start(t, edge.IP)
		waitBinding(t, c, entry.Name, "ringer@"+domain, "127.0.53.103", 1, ringer)
		waitBinding(t, c, entry.Name, "fork@"+domain, "127.0.53.104", 1, busy)
		for _, cs := range []struct{ callee, sf string }{{"ringer", "uac_cancel.xml"}, {"fork", "uac_busy.xml"}} {
			s := startSipp(t, "-sf", scenario(cs.sf), "-s", cs.callee, "-au", "caller", "-ap", "caller-pw",
				"-key", "caller", "caller", "-key", "domain", domain, "-auth_uri", cs.callee+"@"+domain, "-m", "1",
				"-i", "127.0.53.105", "-p", "5081", "-mi", "127.0.53.105", "-mp", "16040", "-t", "u1",
				"-timeout", "30s", "-timeout_error", "-recv_timeout", "10000", "-trace_msg", "-trace_err", entry.IP+":5060")
			id := firstCallID(t, s)
			if code := s.wait(30 * time.Second); code != 0 {
				t.Fatalf("%s: sipp exit %d\n%s", cs.sf, code, s.report())
			}
			relayFreed(t, c, names, id, "free")
		}
	})

	t.Run("freed on inactivity", func(t *testing.T) {
		// Half a second of media, then silence while the call stays up:
		// the relay frees the session after relay.inactivity_timeout (2 s).
		short := shortPcap(t, 25)
		sf := filepath.Join(t.TempDir(), "uac_rtp_short.xml")
		data, err := os.ReadFile(scenario("uac_rtp.xml"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(sf, []byte(strings.Replace(string(data), "/usr/share/sip-tester/g711a.pcap", short, 1)), 0o644)
		s := startSipp(t, "-sf", sf, "-s", "uas", "-au", "caller", "-ap", "caller-pw",
			"-key", "caller", "caller", "-key", "domain", domain, "-auth_uri", "uas@"+domain, "-m", "1", "-d", "9000",
			"-i", "127.0.53.106", "-p", "5082", "-mi", "127.0.53.106", "-mp", "16050", "-t", "u1",
			"-timeout", "30s", "-timeout_error", "-recv_timeout", "15000", "-trace_msg", "-trace_err", entry.IP+":5060")
		id := firstCallID(t, s)
		relayFreed(t, c, names, id, "timeout")
		select {
		case <-s.done:
			t.Fatalf("the call ended before the relay timed out:\n%s", s.report())
		default:
		}
		// The anchor forgets the call; the BYE later is still proxied.
		if code := s.wait(30 * time.Second); code != 0 {
			t.Fatalf("sipp UAC exit %d\n%s", code, s.report())
		}
	})

	t.Run("1000 calls leave no port allocated", func(t *testing.T) {
		code, s := call(t, entry.IP, "uas", 1000, "127.0.53.107", 5083, 16060)
		if code != 0 {
			t.Fatalf("sipp UAC exit %d\n%s", code, s.report())
		}
		proctest.Eventually(t, 10*time.Second, "no relay session left", func() error {
			for n, ss := range relaySessions(t, c, names...) {
				if len(ss) > 0 {
					return fmt.Errorf("%s has %d sessions", n, len(ss))
				}
			}
			return nil
		})
		allocated := 0
		for _, n := range names {
			allocated += strings.Count(c.Node(n).LogText(), "relay: session allocated")
		}
		if allocated < 1000 {
			t.Fatalf("%d sessions were allocated for 1000 calls", allocated)
		}
	})

	t.Run("relay SIGKILLed: new calls pick another", func(t *testing.T) {
		// Everything enters at n4 (proxy only), so any relay can die.
		n4 := c.Node("n4")
		ph := phone{user: "edgeuas", ip: "127.0.53.110", port: "5073", ooc: "uas_ooc.xml", mediaPort: 16070, extra: []string{"-rtp_echo"}}.start(t, n4.IP)
		waitBinding(t, c, "n4", "edgeuas@"+domain, "127.0.53.110", 1, ph)
		rtpCall := func(port int) (string, string) {
			s := startSipp(t, "-sf", scenario("uac_rtp.xml"), "-s", "edgeuas", "-au", "caller", "-ap", "caller-pw",
				"-key", "caller", "caller", "-key", "domain", domain, "-auth_uri", "edgeuas@"+domain, "-m", "1", "-d", "2000",
				"-i", "127.0.53.111", "-p", strconv.Itoa(port), "-mi", "127.0.53.111", "-mp", strconv.Itoa(port+10000), "-t", "u1",
				"-timeout", "30s", "-timeout_error", "-recv_timeout", "10000", "-trace_msg", "-trace_err", n4.IP+":5060")
			id := firstCallID(t, s)
			var node string
			proctest.Eventually(t, 10*time.Second, "media of "+id+" relayed", func() error {
				n, ss, ok := sessionOf(relaySessions(t, c, names...), id)
				if !ok || ss.Streams[0].A.Packets == 0 || ss.Streams[0].B.Packets == 0 {
					return fmt.Errorf("not yet (%s %+v)", n, ss.Streams)
				}
				node = n
				return nil
			})
			if code := s.wait(30 * time.Second); code != 0 {
				t.Fatalf("sipp UAC exit %d\n%s", code, s.report())
			}
			return id, node
		}
		_, first := rtpCall(5090)
		c.Kill(first)
		var alive []string
		for _, n := range all {
			if n != first {
				alive = append(alive, n)
			}
		}
		c.WaitAlive(30*time.Second, strings.Join(alive, ","), alive...)
		_, second := rtpCall(5091)
		if second == first {
			t.Fatalf("the second call was relayed by %s, which was killed", first)
		}
		t.Logf("relay %s SIGKILLed; the next call was relayed by %s", first, second)
	})
}

// shortPcap writes the first n packets of SIPp's G.711 recording to a
// file and returns its path.
func shortPcap(t testing.TB, n int) string {
	data, err := os.ReadFile("/usr/share/sip-tester/g711a.pcap")
	if err != nil {
		t.Fatal(err)
	}
	off := 24 // pcap global header
	for i := 0; i < n && off+16 <= len(data); i++ {
		incl := int(data[off+8]) | int(data[off+9])<<8 | int(data[off+10])<<16 | int(data[off+11])<<24
		off += 16 + incl
	}
	path := filepath.Join(t.TempDir(), "short.pcap")
	if err := os.WriteFile(path, data[:off], 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
