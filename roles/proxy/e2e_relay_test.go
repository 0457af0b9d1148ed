//go:build linux

package proxy_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/proctest"
)

// Process tests of the RTP relay (issue #6) on 127.0.51.0/24: three real
// nodes, where callers enter at n1 (dc1, no relay role), callees are
// registered through n2 (dc2, a relay) and n1's relay of choice is n3
// (dc1: its own datacenter). SIPp phones send RTP from a pcap, which needs
// raw sockets; a capture on the loopback interface (AF_PACKET) sees it
// arrive. Both need root.

const (
	relaySubnet  = "127.0.51."
	relayPortLo  = 41000
	relayPortHi  = 41999
	pcapPackets  = 100 // 2 s of G.711 at 20 ms
	relayTimeout = 2 * time.Second
)

// mediaPcap is the start of the G.711 capture SIPp ships.
func mediaPcap(t *testing.T) []byte {
	t.Helper()
	for _, p := range []string{"/usr/share/sip-tester/g711a.pcap", "/usr/share/sipp/pcap/g711a.pcap", "/usr/local/share/sipp/pcap/g711a.pcap"} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// A pcap file: a 24-byte header, then records of a 16-byte header
		// (included length at offset 8, little-endian here) and data.
		if len(data) < 24 || binary.LittleEndian.Uint32(data) != 0xa1b2c3d4 {
			t.Fatalf("%s is not a little-endian pcap file", p)
		}
		off := 24
		for n := 0; n < pcapPackets; n++ {
			if off+16 > len(data) {
				t.Fatalf("%s has only %d packets", p, n)
			}
			off += 16 + int(binary.LittleEndian.Uint32(data[off+8:]))
		}
		return data[:off]
	}
	t.Skip("no g711a.pcap of SIPp found (Debian's sip-tester ships /usr/share/sip-tester/g711a.pcap)")
	return nil
}

type legJSON struct {
	Relay      string `json:"relay"`
	Peer       string `json:"peer"`
	Advertised string `json:"advertised"`
	Packets    uint64 `json:"packets"`
	Dropped    uint64 `json:"dropped"`
}

// sessionJSON is an element of `sipmesh relay sessions --json` (README).
type sessionJSON struct {
	CallID  string `json:"call_id"`
	Owner   string `json:"owner"`
	Streams []struct {
		A legJSON `json:"a"`
		B legJSON `json:"b"`
	} `json:"streams"`
}

func relaySessions(c *proctest.Cluster, node string) ([]sessionJSON, error) {
	out, err := c.CLI("relay", "sessions", "--json", "--config", c.Node(node).Config)
	if err != nil {
		return nil, err
	}
	var ss []sessionJSON
	if err := json.Unmarshal([]byte(out), &ss); err != nil {
		return nil, fmt.Errorf("relay sessions --json: %v: %q", err, out)
	}
	return ss, nil
}

// udpBound counts the UDP sockets bound on ip within the relay's port
// range (/proc/net/udp): the ports the relay holds.
func udpBound(t *testing.T, ip string) int {
	t.Helper()
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddr(ip).As4()
	n := 0
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		hexIP, hexPort, _ := strings.Cut(f[1], ":")
		a, err1 := strconv.ParseUint(hexIP, 16, 32)
		port, err2 := strconv.ParseUint(hexPort, 16, 16)
		if err1 != nil || err2 != nil {
			continue
		}
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], uint32(a))
		if b == want && port >= relayPortLo && port <= relayPortHi {
			n++
		}
	}
	return n
}

// sniffer counts the UDP datagrams the loopback interface delivers, by
// source IP and destination address, as tcpdump would see them.
type sniffer struct {
	mu     sync.Mutex
	counts map[string]int // "src-ip>dst-ip:port"
	stop   atomic.Bool
	done   chan struct{}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func sniff(t *testing.T, dstPrefix string) *sniffer {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(htons(syscall.ETH_P_IP)))
	if err != nil {
		t.Skipf("no packet socket for the loopback capture: %v", err)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		syscall.Close(fd)
		t.Skipf("no loopback interface: %v", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_IP), Ifindex: lo.Index}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	// Other tests share the interface: a large buffer, and a timeout so
	// that the reader notices stop.
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 32<<20)
	tv := syscall.NsecToTimeval(int64(100 * time.Millisecond))
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	s := &sniffer{counts: map[string]int{}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer syscall.Close(fd)
		buf := make([]byte, 65536)
		for !s.stop.Load() {
			n, from, err := syscall.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			// Loopback shows each packet twice: going out, then coming in.
			if ll, ok := from.(*syscall.SockaddrLinklayer); !ok || ll.Pkttype != syscall.PACKET_HOST {
				continue
			}
			pkt := buf[:n]
			if n < 28 || pkt[0]>>4 != 4 || pkt[9] != syscall.IPPROTO_UDP {
				continue
			}
			ihl := int(pkt[0]&0xf) * 4
			if n < ihl+4 {
				continue
			}
			src := netip.AddrFrom4([4]byte(pkt[12:16]))
			dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(pkt[16:20])), binary.BigEndian.Uint16(pkt[ihl+2:]))
			if !strings.HasPrefix(dst.Addr().String(), dstPrefix) {
				continue
			}
			s.mu.Lock()
			s.counts[src.String()+">"+dst.String()]++
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { s.stop.Store(true); <-s.done })
	return s
}

func (s *sniffer) count(srcIP, dst string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[srcIP+">"+dst]
}

// receivedSDP returns the c=, o= addresses and m= ports of every SDP in
// the messages a SIPp received (its -trace_msg log).
func receivedSDP(log string) (addrs []string, ports []int) {
	for _, sec := range strings.Split(log, "-----------------------------------------------") {
		if !strings.Contains(sec, "message received") {
			continue
		}
		for _, line := range strings.Split(sec, "\n") {
			line = strings.TrimSpace(line)
			f := strings.Fields(line)
			switch {
			case strings.HasPrefix(line, "c=") && len(f) >= 3:
				addrs = append(addrs, f[2])
			case strings.HasPrefix(line, "o=") && len(f) >= 6:
				addrs = append(addrs, f[5])
			case strings.HasPrefix(line, "m=") && len(f) >= 2:
				p, _ := strconv.Atoi(f[1])
				ports = append(ports, p)
			}
		}
	}
	return addrs, ports
}

// onlyRelay checks that the SDP a SIPp received names the relay at ip and
// its ports only, and that it received some.
func onlyRelay(t *testing.T, who, log, ip string) error {
	t.Helper()
	addrs, ports := receivedSDP(log)
	if len(addrs) == 0 || len(ports) == 0 {
		return fmt.Errorf("%s received no SDP", who)
	}
	t.Logf("%s received %d SDP addresses (c=, o=), all %s, and m= ports %v", who, len(addrs), ip, ports[:min(len(ports), 6)])
	for _, a := range addrs {
		if a != ip {
			return fmt.Errorf("%s received SDP naming %s, not only the relay %s (addresses %v)", who, a, ip, addrs)
		}
	}
	for _, p := range ports {
		if p < relayPortLo || p > relayPortHi {
			return fmt.Errorf("%s received SDP with port %d, outside the relay's %d-%d (ports %v)", who, p, relayPortLo, relayPortHi, ports)
		}
	}
	return nil
}

var reFreed = regexp.MustCompile(`msg="relay: session freed" .*call_id=(\S+) .*reason=(\w+) .*a_packets=(\d+) b_packets=(\d+)`)

// freed reads the relay's last word on a session from its node's log: why
// it was freed and the RTP packets it took from each party.
func freed(log, callID string) (reason string, fromA, fromB int, ok bool) {
	for _, m := range reFreed.FindAllStringSubmatch(log, -1) {
		if m[1] == callID {
			fromA, _ = strconv.Atoi(m[3])
			fromB, _ = strconv.Atoi(m[4])
			return m[2], fromA, fromB, true
		}
	}
	return "", 0, 0, false
}

func countLines(text string, all ...string) int {
	n := 0
	for _, l := range strings.Split(text, "\n") {
		ok := true
		for _, s := range all {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			n++
		}
	}
	return n
}

// startRelayMesh starts n1 (dc1; proxy, registrar, presence), n2 (dc2,
// every role) and n3 (dc1, every role), relaying in mode (relay.mode) with
// a short inactivity timeout.
func startRelayMesh(t testing.TB, mode string) *proctest.Cluster {
	c := proctest.NewCluster(t, domain, relaySubnet)
	var users strings.Builder
	users.WriteString("users:\n")
	for _, u := range []string{"caller", "media", "uas", "ringer", "busy", "mover"} {
		fmt.Fprintf(&users, "  - {user: %s, domain: %s, password: %s-pw}\n", u, domain, u)
	}
	if err := os.WriteFile(c.Dir+"/users.yaml", []byte(users.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	extra := `sip: {listen: ["udp://%IP%:5060", "tcp://%IP%:5060"], users: users.yaml}` + "\n" +
		fmt.Sprintf(`relay: {ports: "%d-%d", timeout: %s, setup_timeout: 30s, mode: %s}`, relayPortLo, relayPortHi, relayTimeout, mode)
	reqs := map[string]certs.IssueRequest{
		"n1": {Datacenter: "dc1", Roles: []string{certs.RoleProxy, certs.RoleRegistrar, certs.RolePresence}},
		"n2": {Datacenter: "dc2"},
		"n3": {Datacenter: "dc1"},
	}
	var seed string
	for _, name := range []string{"n1", "n2", "n3"} {
		ip := c.NextIP()
		req := reqs[name]
		req.IPs = []net.IP{net.ParseIP(ip)}
		c.IssueNode(name, req)
		var seeds []string
		if seed != "" {
			seeds = []string{seed}
		} else {
			seed = ip
		}
		c.Start(name, ip, c.WriteConfig(name, ip, nodeConfig(name, seeds, extra)))
	}
	c.WaitAlive(40*time.Second, "n1,n2,n3", "n1", "n2", "n3")
	proctest.Eventually(t, 10*time.Second, "n1 sees the relay ring n2, n3", func() error {
		out, err := c.CLI("ring", "--role", "relay", "--json", "--config", c.Node("n1").Config)
		if err != nil {
			return err
		}
		if !strings.Contains(out, `"n2"`) || !strings.Contains(out, `"n3"`) || strings.Contains(out, `"n1"`) {
			return fmt.Errorf("relay ring: %s", out)
		}
		return nil
	})
	return c
}

// TestRelayMesh: calls through the mesh with their media through a relay;
// sessions freed on BYE, CANCEL, failure and inactivity, and after 1,000
// calls no port left; a SIGKILLed relay replaced for new calls.
func TestRelayMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Skip("sipp is not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("SIPp's pcap playback (raw sockets) and the loopback capture need root")
	}
	pcap := mediaPcap(t)
	began := time.Now()
	c := startRelayMesh(t, "always")
	n1, n2, n3 := c.Node("n1"), c.Node("n2"), c.Node("n3")
	t.Logf("mesh up in %v: callers enter at n1 %s (dc1), callees behind n2 %s (dc2), relay n3 %s (dc1)",
		time.Since(began).Round(time.Millisecond), n1.IP, n2.IP, n3.IP)

	files := map[string][]byte{"media.pcap": pcap}
	mediaPhone := phone{user: "media", ip: relaySubnet + "101", port: "5070", ooc: "relay_uas_media.xml", mediaPort: 16000, files: files}.start(t, n2.IP)
	uasPhone := phone{user: "uas", ip: relaySubnet + "103", port: "5090", ooc: "uas_ooc.xml", mediaPort: 16020}.start(t, n2.IP)
	ringer := phone{user: "ringer", ip: relaySubnet + "104", port: "5100", ooc: "uas_cancelled.xml", mediaPort: 16040}.start(t, n2.IP)
	busy := phone{user: "busy", ip: relaySubnet + "105", port: "5110", ooc: "uas_busy.xml", mediaPort: 16060}.start(t, n2.IP)
	mover := phone{user: "mover", ip: relaySubnet + "106", port: "5120", ooc: "relay_uas_reinvite.xml", mediaPort: 16080, files: files}.start(t, n2.IP)
	for _, p := range []struct {
		user, ip string
		s        *sipp
	}{{"media", "101", mediaPhone}, {"uas", "103", uasPhone}, {"ringer", "104", ringer}, {"busy", "105", busy}, {"mover", "106", mover}} {
		waitBinding(t, c, "n1", p.user+"@"+domain, relaySubnet+p.ip, 1, p.s)
	}
	cap := sniff(t, relaySubnet)
	callerIP := relaySubnet + "102"
	uac := func(scn, callee string, port, mediaPort int, extra ...string) *sipp {
		args := []string{"-sf", scenario(scn), "-s", callee, "-au", "caller", "-ap", "caller-pw",
			"-key", "caller", "caller", "-key", "domain", domain, "-auth_uri", callee + "@" + domain,
			"-i", callerIP, "-p", strconv.Itoa(port), "-mi", callerIP, "-mp", strconv.Itoa(mediaPort), "-t", "u1",
			"-timeout", "60s", "-timeout_error", "-trace_err"}
		return startSippWith(t, files, append(append(args, extra...), n1.IP+":5060")...)
	}
	exit := func(what string, s *sipp, d time.Duration) {
		t.Helper()
		if code := s.wait(d); code != 0 {
			t.Fatalf("%s: sipp exit %d\n%s", what, code, s.report())
		}
	}

	t.Run("media, BYE, CANCEL, failure, late offer, inactivity", func(t *testing.T) {
		phase := time.Now()
		// The caller plays 2 s of RTP and stays in the call long enough
		// for the relay's inactivity timeout to free the session first.
		call := uac("relay_uac_media.xml", "media", 5080, 16100, "-m", "1", "-d", "7000", "-trace_msg")
		cancel := uac("relay_uac_cancel.xml", "ringer", 5081, 16110, "-m", "1")
		failed := uac("relay_uac_busy.xml", "busy", 5082, 16120, "-m", "1")
		late := uac("relay_uac_late.xml", "uas", 5083, 16130, "-m", "1", "-trace_msg")

		callerMedia, calleeMedia := callerIP+":16100", relaySubnet+"101:16000"
		var media sessionJSON
		proctest.Eventually(t, 20*time.Second, "the relay n3 forwarding RTP both ways", func() error {
			ss, err := relaySessions(c, "n3")
			if err != nil {
				return err
			}
			for _, s := range ss {
				if len(s.Streams) == 1 && s.Streams[0].A.Packets > 0 && s.Streams[0].B.Packets > 0 {
					media = s
					return nil
				}
			}
			return fmt.Errorf("sessions on n3: %+v", ss)
		})
		a, b := media.Streams[0].A, media.Streams[0].B
		if media.Owner != "n1" || a.Peer != callerMedia || b.Peer != calleeMedia || a.Dropped+b.Dropped != 0 {
			t.Errorf("session %+v: want owner n1, caller latched at %s, callee at %s, nothing dropped", media, callerMedia, calleeMedia)
		}
		// What the relay forwarded arrived: each party's RTP at the other
		// party's media port, from the relay.
		proctest.Eventually(t, 5*time.Second, "RTP delivered from the relay", func() error {
			toCaller, toCallee := cap.count(n3.IP, callerMedia), cap.count(n3.IP, calleeMedia)
			if toCaller < pcapPackets*9/10 || toCallee < pcapPackets*9/10 {
				return fmt.Errorf("packets from %s: %d to the caller %s, %d to the callee %s (of %d each)", n3.IP, toCaller, callerMedia, toCallee, calleeMedia, pcapPackets)
			}
			return nil
		})

		for what, s := range map[string]*sipp{"CANCEL": cancel, "486": failed, "late offer": late} {
			exit(what, s, 30*time.Second)
		}
		// Media stopped: the relay frees the session on its own and
		// tells n1, which forgets the call; its BYE still goes through.
		proctest.Eventually(t, 4*relayTimeout+5*time.Second, "the media session freed on inactivity", func() error {
			reason, fromA, fromB, ok := freed(n3.LogText(), media.CallID)
			if !ok || reason != "timeout" {
				return fmt.Errorf("n3 has not logged the timeout of %s", media.CallID)
			}
			if fromA < pcapPackets || fromB < pcapPackets {
				t.Errorf("n3 took %d RTP packets from the caller and %d from the callee, want %d each", fromA, fromB, pcapPackets)
			}
			t.Logf("relay n3 took %d RTP packets from the caller and %d from the callee; delivered from the relay: %d to the caller, %d to the callee",
				fromA, fromB, cap.count(n3.IP, callerMedia), cap.count(n3.IP, calleeMedia))
			if countLines(n1.LogText(), "media session ended by its relay", media.CallID) != 1 {
				return fmt.Errorf("n1 has not been told that %s timed out", media.CallID)
			}
			return nil
		})
		exit("media call", call, 30*time.Second)
		for who, s := range map[string]*sipp{"the caller": call, "the callee": mediaPhone, "the late-offer caller": late, "the late-offer callee": uasPhone} {
			if err := onlyRelay(t, who, s.files("*_messages.log"), n3.IP); err != nil {
				t.Error(err)
			}
		}
		proctest.Eventually(t, 10*time.Second, "every session freed", func() error {
			ss, err := relaySessions(c, "n3")
			if err != nil || len(ss) > 0 {
				return fmt.Errorf("sessions on n3: %+v %v", ss, err)
			}
			log := n3.LogText()
			// BYE (the late offer), CANCEL and 486 free on request; the
			// media call on inactivity.
			if freed, allocated := countLines(log, "session freed", "reason=free"), countLines(log, "session allocated"); freed != 3 || allocated != 4 {
				return fmt.Errorf("n3 allocated %d sessions and freed %d on request, want 4 and 3", allocated, freed)
			}
			return nil
		})
		t.Logf("phase done in %v", time.Since(phase).Round(time.Millisecond))
	})

	t.Run("1000 calls", func(t *testing.T) {
		phase := time.Now()
		s := uac("uac_auth.xml", "uas", 5084, 16200, "-m", "1000", "-r", "100", "-l", "40", "-recv_timeout", "10000")
		exit("1000 calls", s, 100*time.Second)
		took := time.Since(phase)
		proctest.Eventually(t, 10*time.Second, "no session and no port left on the relays", func() error {
			for _, n := range []*proctest.Node{n2, n3} {
				ss, err := relaySessions(c, n.Name)
				if err != nil || len(ss) > 0 {
					return fmt.Errorf("sessions on %s: %d %v", n.Name, len(ss), err)
				}
				if b := udpBound(t, n.IP); b > 0 {
					return fmt.Errorf("%d UDP ports of %d-%d still bound on %s", b, relayPortLo, relayPortHi, n.Name)
				}
			}
			return nil
		})
		if got := countLines(n3.LogText(), "session allocated"); got < 1004 {
			t.Errorf("n3 allocated %d sessions, want 1,000 more than the 4 before", got)
		}
		t.Logf("1,000 relayed calls (INVITE with 407, 180, 200, ACK, BYE) at 100/s in %v; then 0 sessions and 0 ports bound on n2 and n3",
			took.Round(time.Millisecond))
	})

	t.Run("relay SIGKILLed", func(t *testing.T) {
		phase := time.Now()
		// A call in progress, its media through n3; it re-INVITEs 4 s
		// after its answer.
		inProgress := uac("relay_uac_reinvite.xml", "mover", 5085, 16300, "-m", "1", "-d", "4000", "-trace_msg")
		var ongoing string
		proctest.Eventually(t, 15*time.Second, "a call with media on n3", func() error {
			ss, err := relaySessions(c, "n3")
			if err != nil {
				return err
			}
			for _, s := range ss {
				if len(s.Streams) == 1 && s.Streams[0].A.Packets > 0 {
					ongoing = s.CallID
					return nil
				}
			}
			return fmt.Errorf("sessions on n3: %+v", ss)
		})
		c.Kill("n3")
		killed := time.Now()
		before := countLines(n2.LogText(), "session allocated")
		s := uac("uac_auth.xml", "uas", 5086, 16310, "-m", "20", "-r", "10", "-l", "10", "-recv_timeout", "10000", "-trace_msg")
		exit("20 calls after the SIGKILL of n3", s, 60*time.Second)
		if err := onlyRelay(t, "a caller after the SIGKILL", s.files("*_messages.log"), n2.IP); err != nil {
			t.Error(err)
		}
		if got := countLines(n2.LogText(), "session allocated") - before; got < 20 {
			t.Errorf("n2 allocated %d sessions for the 20 calls after n3 died", got)
		}
		// The call in progress lost its media with n3; its signalling
		// (through n1 and n2) goes on, and its re-INVITE moves its media
		// to n2: the new offer and its answer name n2's ports.
		exit("the call in progress when n3 died", inProgress, 30*time.Second)
		proctest.Eventually(t, 10*time.Second, "the re-INVITE moved the media of the call in progress to n2", func() error {
			reason, fromA, fromB, ok := freed(n2.LogText(), ongoing)
			if !ok || reason != "free" || fromA < pcapPackets || fromB < pcapPackets {
				return fmt.Errorf("n2's last word on %s: %q, %d RTP packets from the caller, %d from the callee (want %d each)", ongoing, reason, fromA, fromB, pcapPackets)
			}
			return nil
		})
		for who, s := range map[string]*sipp{"the caller of the call in progress": inProgress, "its callee": mover} {
			addrs, _ := receivedSDP(s.files("*_messages.log"))
			if len(addrs) < 4 || addrs[0] != n3.IP || addrs[len(addrs)-1] != n2.IP {
				t.Errorf("%s received SDP naming %v, want n3 (%s) first and n2 (%s) after the re-INVITE", who, addrs, n3.IP, n2.IP)
			}
		}
		for _, l := range strings.Split(n1.LogText(), "\n") {
			if strings.Contains(l, ongoing) || strings.Contains(l, "relay left the mesh") {
				t.Logf("n1 on the call in progress: %s", l)
			}
		}
		proctest.Eventually(t, 10*time.Second, "sessions on n2 freed", func() error {
			if ss, err := relaySessions(c, "n2"); err != nil || len(ss) > 0 {
				return fmt.Errorf("sessions on n2: %+v %v", ss, err)
			}
			return nil
		})
		t.Logf("n3 SIGKILLed: 20 new calls relayed by n2 (dc2) in %v, the call in progress moved there by its re-INVITE; failovers logged by n1: %d; phase %v",
			time.Since(killed).Round(time.Millisecond), countLines(n1.LogText(), "trying the next relay"), time.Since(phase).Round(time.Millisecond))
	})
	t.Logf("TestRelayMesh: %v in all", time.Since(began).Round(time.Millisecond))
}

// BenchmarkRelayCalls measures calls through the relay mesh (entering n1,
// callee behind n2, relay n3; INVITE with 407, 180, 200, ACK, BYE, no RTP)
// with relay.mode always and never: the highest call rate of a ramp with
// fewer than 1% failures, and the nodes' CPU seconds per 1,000 calls.
// SIPMESH_BENCH_SECONDS sets the length of one step (default 10).
//
//	go test -run '^$' -bench RelayCalls -benchtime 1x ./roles/proxy/
func BenchmarkRelayCalls(b *testing.B) {
	if _, err := exec.LookPath("sipp"); err != nil {
		b.Skip("sipp is not installed")
	}
	secs := 10
	if v, err := strconv.Atoi(os.Getenv("SIPMESH_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	for _, mode := range []string{"always", "never"} {
		b.Run("relay.mode="+mode, func(b *testing.B) {
			c := startRelayMesh(b, mode)
			uas := phone{user: "uas", ip: relaySubnet + "103", port: "5090", ooc: "uas_ooc.xml", mediaPort: 16020, answerDelay: 1}.start(b, c.Node("n2").IP)
			waitBinding(b, c, "n1", "uas@"+domain, relaySubnet+"103", 1, uas)
			ramp(b, c, secs, []int{100, 200, 300, 400, 500, 600, 800}, func(rate, step int) []*sipp {
				ip := relaySubnet + "160"
				return []*sipp{startLoad(b, rate*secs, "-sf", scenario("uac_auth.xml"), "-s", "uas", "-au", "caller", "-ap", "caller-pw",
					"-key", "caller", "caller", "-key", "domain", domain, "-auth_uri", "uas@"+domain,
					"-r", strconv.Itoa(rate), "-m", strconv.Itoa(rate*secs), "-l", strconv.Itoa(rate*5),
					"-i", ip, "-p", strconv.Itoa(7000+step*10), "-mi", ip, "-mp", strconv.Itoa(18000+step*10),
					"-timeout", strconv.Itoa(secs+30)+"s", "-recv_timeout", "10000", c.Node("n1").IP+":5060")}
			})
		})
	}
}
