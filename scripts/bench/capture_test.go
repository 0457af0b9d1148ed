package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/sipmesh/sipmesh/roles/sipmsg"
)

// A capture records the server's SIP datagrams on the loopback interface
// with tcpdump while SIPp runs, to measure the server's own part of the
// response time: how long each message it forwards or answers spends
// inside it, from the moment the sender's datagram crosses lo to the
// moment the server's crosses it. SIPp's response times add the load
// generator's own scheduling (two SIPp processes and the server on two
// cores) and several server passes per scenario, in whole milliseconds.
type capture struct {
	cmd     *exec.Cmd
	dir     string // removed by stop
	path    string
	servers []netip.AddrPort
	stderr  *bytes.Buffer
	done    chan struct{}
}

// startCapture starts tcpdump on lo for the UDP datagrams to and from
// servers. It returns nil, with the reason, when there is no tcpdump or it
// may not capture (it needs CAP_NET_RAW). The file is kept as keep, when
// not empty (SIPMESH_BENCH_PCAP), else removed by stop.
func startCapture(servers []string, keep string) (_ *capture, err error) {
	bin, err := exec.LookPath("tcpdump")
	if err != nil {
		return nil, errors.New("no tcpdump (Debian: apt-get install tcpdump)")
	}
	// The file goes to memory when it can: at 1,600 calls/s tcpdump writes
	// 30 MB/s, and the disk's writeback stalled both servers (33% iowait,
	// SIPp p99 up from 16 to 116 ms).
	base := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "sipmesh-bench-")
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	c := &capture{dir: dir, path: filepath.Join(dir, "sip.pcap"), stderr: &bytes.Buffer{}, done: make(chan struct{})}
	if keep != "" {
		c.path = keep
	}
	var hosts []string
	for _, s := range servers {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return nil, fmt.Errorf("capture: server %q: %w", s, err)
		}
		c.servers = append(c.servers, ap)
		hosts = append(hosts, "host "+ap.Addr().String())
	}
	// -B: a 32 MB kernel buffer, so that tcpdump falling behind for a
	// moment loses nothing; -s: SIP headers come first, bodies may be cut.
	filter := "udp and (" + strings.Join(hosts, " or ") + ")"
	c.cmd = exec.Command(bin, "-i", "lo", "-n", "-s", "1500", "-B", "32768", "-w", c.path, filter)
	pr, pw := io.Pipe()
	c.cmd.Stderr = pw
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	// c.stderr is the scanner's until c.done: it ends when tcpdump has
	// exited and its stderr is read to the end.
	listening := make(chan struct{})
	go func() {
		defer close(c.done)
		ready := listening
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			c.stderr.WriteString(sc.Text() + "\n")
			if ready != nil && strings.Contains(sc.Text(), "listening on") {
				close(ready)
				ready = nil
			}
		}
	}()
	go func() { c.cmd.Wait(); pw.Close() }()
	select {
	case <-listening:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("capture: tcpdump exited: %s", strings.TrimSpace(c.stderr.String()))
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
		return nil, errors.New("capture: tcpdump did not start listening in 5 s")
	}
}

var reDropped = regexp.MustCompile(`(\d+) packets dropped by kernel`)

// stop ends the capture and measures it; the capture file is removed.
func (c *capture) stop() (times captureTimes, dropped int, err error) {
	// tcpdump's kernel ring hands it datagrams a block at a time, when the
	// block is full or 1 s after its first (tcpdump's pcap timeout); on
	// SIGINT it exits without reading a block not yet handed over.
	time.Sleep(1500 * time.Millisecond)
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
	defer os.RemoveAll(c.dir)
	if m := reDropped.FindStringSubmatch(c.stderr.String()); m != nil {
		dropped, _ = strconv.Atoi(m[1])
	}
	f, err := os.Open(c.path)
	if err != nil {
		return times, dropped, fmt.Errorf("capture: %w", err)
	}
	defer f.Close()
	times, err = readCapture(bufio.NewReaderSize(f, 1<<20), c.servers)
	return times, dropped, err
}

// captureTimes is what a capture measures, in ms, in the order seen.
type captureTimes struct {
	// hops: the time each message a server sent spent inside it, from
	// the latest message it received of the same transaction (Call-ID
	// and CSeq) that caused it. A response or request it forwards is
	// paired with the one it received (the same status code or method);
	// a response it makes itself (100, 401, 407, the registrar's 200)
	// with the request. Datagrams between two servers (a mesh) count as
	// sent by one and received by the other.
	hops []float64
	// responses: each scenario's response time as its client's socket
	// sees it, between the points SIPp's RTD 1 spans (deriveScenarios):
	// from the client's first request of the Call-ID to the first
	// response a server sends it that ends the RTD (wireRTDEnd). It is
	// SIPp's measure to the microsecond, without the time SIPp takes to
	// send the first request and read the last response: SIPp 3.6 reads
	// CLOCK_MONOTONIC_COARSE, which moves in steps of 4 ms on a 250 Hz
	// kernel, so its RTDs are multiples of 4 ms.
	responses []float64
}

// wireRTDEnd reports whether a response with status to a request of
// method ends the RTD that deriveScenarios marks: a REGISTER's 200
// (RFC 6076 section 4.1, Registration Request Delay), an INVITE's first
// provisional other than 100, or its 200 when none came first (section
// 4.2, Session Request Delay).
func wireRTDEnd(method string, status int) bool {
	switch method {
	case "REGISTER":
		return status == 200
	case "INVITE":
		return status > 100 && status <= 200
	}
	return false
}

// readCapture reads a pcap file of SIP over UDP to and from servers.
func readCapture(r io.Reader, servers []netip.AddrPort) (captureTimes, error) {
	var times captureTimes
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		return times, fmt.Errorf("capture: %w", err)
	}
	if pr.LinkType() != layers.LinkTypeEthernet {
		return times, fmt.Errorf("capture: link type %v, want Ethernet (Linux lo)", pr.LinkType())
	}
	var (
		eth     layers.Ethernet
		ip4     layers.IPv4
		udp     layers.UDP
		payload gopacket.Payload
		decoded []gopacket.LayerType
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &udp, &payload)
	parser.IgnoreUnsupported = true
	type received struct {
		at   time.Time
		kind string // method, or status code of a response
		resp bool
	}
	type txKey struct {
		server       netip.AddrPort
		callID, cseq string
	}
	type scenarioStart struct {
		at     time.Time
		client netip.AddrPort
		method string
		ended  bool
	}
	pending := map[txKey][]received{}
	starts := map[string]*scenarioStart{} // by Call-ID
	for {
		data, ci, err := pr.ZeroCopyReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			return times, fmt.Errorf("capture: %w", err)
		}
		if err := parser.DecodeLayers(data, &decoded); err != nil || !slices.Contains(decoded, layers.LayerTypeUDP) {
			continue
		}
		m, ok := sipSummary(udp.Payload)
		if !ok {
			continue
		}
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip4.SrcIP.To4())), uint16(udp.SrcPort))
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip4.DstIP.To4())), uint16(udp.DstPort))
		fromServer := slices.Contains(servers, src)
		if st := starts[m.callID]; st == nil && !fromServer && !m.resp {
			starts[m.callID] = &scenarioStart{at: ci.Timestamp, client: src, method: m.method}
		} else if st != nil && !st.ended && fromServer && m.resp && dst == st.client && m.method == st.method && wireRTDEnd(m.method, m.status) {
			st.ended = true
			times.responses = append(times.responses, float64(ci.Timestamp.Sub(st.at).Microseconds())/1000)
		}
		if fromServer {
			k := txKey{src, m.callID, m.cseq}
			in := pending[k]
			var cause *received
			for i := len(in) - 1; i >= 0 && cause == nil; i-- {
				if in[i].resp == m.resp && in[i].kind == m.kind {
					cause = &in[i]
				}
			}
			for i := len(in) - 1; i >= 0 && cause == nil && m.resp; i-- {
				if !in[i].resp {
					cause = &in[i]
				}
			}
			if cause != nil {
				times.hops = append(times.hops, float64(ci.Timestamp.Sub(cause.at).Microseconds())/1000)
			}
		}
		if slices.Contains(servers, dst) {
			k := txKey{dst, m.callID, m.cseq}
			pending[k] = append(pending[k], received{at: ci.Timestamp, kind: m.kind, resp: m.resp})
		}
	}
	return times, nil
}

// sipMessage is what readCapture needs of a message.
type sipMessage struct {
	kind         string // the method, or the status code of a response
	resp         bool
	status       int
	method       string // CSeq's
	callID, cseq string // the header fields' values
}

// sipSummary reads what readCapture pairs messages by. A body the
// capture's snap length cut short makes Parse complain, but the header
// fields are read.
func sipSummary(data []byte) (m sipMessage, ok bool) {
	msg, _ := sipmsg.Parse(data)
	switch r := msg.(type) {
	case *sip.Request:
		m.kind = string(r.Method)
	case *sip.Response:
		m.kind, m.resp, m.status = strconv.Itoa(r.StatusCode), true, r.StatusCode
	default:
		return m, false
	}
	cid, cs := msg.CallID(), msg.CSeq()
	if cid == nil || cs == nil {
		return m, false
	}
	m.callID, m.cseq, m.method = cid.Value(), cs.Value(), string(cs.MethodName)
	return m, true
}

// benchDgram is one datagram of a synthetic capture.
type benchDgram struct {
	ms       float64 // since the capture began
	src, dst netip.AddrPort
	data     []byte
}

var (
	testServer = netip.MustParseAddrPort("127.0.70.2:5060")
	testUAC    = netip.MustParseAddrPort("127.0.70.100:6001")
	testUAS    = netip.MustParseAddrPort("127.0.70.101:5070")
)

// testSIP is a minimal SIP message: first line, Call-ID and CSeq.
func testSIP(first, callID, cseq string) []byte {
	return []byte(first + "\r\nVia: SIP/2.0/UDP 127.0.70.100:6001;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n" +
		"From: <sip:caller@bench.test>;tag=1\r\nTo: <sip:uas@bench.test>\r\ni: " + callID + "\r\nCSeq:  " + cseq + "\r\nContent-Length: 0\r\n\r\n")
}

// readTestCapture writes dgrams as tcpdump on lo would and reads them
// back with readCapture, testServer being the server.
func readTestCapture(t *testing.T, dgrams []benchDgram) captureTimes {
	t.Helper()
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	must(t, w.WriteFileHeader(1500, layers.LinkTypeEthernet))
	for _, d := range dgrams {
		eth := &layers.Ethernet{SrcMAC: make([]byte, 6), DstMAC: make([]byte, 6), EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: d.src.Addr().AsSlice(), DstIP: d.dst.Addr().AsSlice()}
		udp := &layers.UDP{SrcPort: layers.UDPPort(d.src.Port()), DstPort: layers.UDPPort(d.dst.Port())}
		must(t, udp.SetNetworkLayerForChecksum(ip))
		sb := gopacket.NewSerializeBuffer()
		must(t, gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(d.data)))
		at := t0.Add(time.Duration(d.ms * float64(time.Millisecond)))
		must(t, w.WritePacket(gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(sb.Bytes()), Length: len(sb.Bytes())}, sb.Bytes()))
	}
	times, err := readCapture(&buf, []netip.AddrPort{testServer})
	if err != nil {
		t.Fatal(err)
	}
	return times
}

// Server hops pair each message a server sends with the one it received
// that caused it: forwarded requests and responses with their like, its
// own responses with the request; other hosts' traffic and the server's
// unprompted requests are not counted.
func TestServerHops(t *testing.T) {
	srv, uac, uas, msg := testServer, testUAC, testUAS, testSIP
	invite, ringing, ok := "INVITE sip:uas@bench.test SIP/2.0", "SIP/2.0 180 Ringing", "SIP/2.0 200 OK"
	times := readTestCapture(t, []benchDgram{
		{0, uac, srv, msg(invite, "c1", "2 INVITE")},
		{0.3, srv, uac, msg("SIP/2.0 100 Trying", "c1", "2 INVITE")}, // its own: 0.3
		{0.5, srv, uas, msg(invite, "c1", "2 INVITE")},               // forwarded: 0.5
		{1.0, uas, srv, msg(ringing, "c1", "2 INVITE")},
		{1.2, uas, srv, msg(ok, "c1", "2 INVITE")},
		{1.4, srv, uac, msg(ringing, "c1", "2 INVITE")},                               // the 180, not the later 200: 0.4
		{1.5, srv, uac, msg(ok, "c1", "2 INVITE")},                                    // 0.3
		{2.0, uac, uas, msg(invite, "c2", "1 INVITE")},                                // not the server's
		{2.5, srv, uas, msg("OPTIONS sip:uas@bench.test SIP/2.0", "c3", "1 OPTIONS")}, // unprompted
		{3.0, uac, srv, msg("REGISTER sip:bench.test SIP/2.0", "c4", "1 REGISTER")},
		{7.0, srv, uac, msg("SIP/2.0 401 Unauthorized", "c4", "1 REGISTER")}, // 4.0
	})
	if want := []float64{0.3, 0.5, 0.4, 0.3, 4.0}; !slices.Equal(times.hops, want) {
		t.Fatalf("hops = %v, want %v", times.hops, want)
	}
}

// A scenario's response time on the wire spans what SIPp's RTD 1 does:
// from the client's first request, challenge included, to the REGISTER's
// 200 or the INVITE's first provisional above 100 (its 200 when no 180
// came), sent to that client.
func TestWireResponseTimes(t *testing.T) {
	srv, uac, uas, msg := testServer, testUAC, testUAS, testSIP
	invite, register := "INVITE sip:uas@bench.test SIP/2.0", "REGISTER sip:bench.test SIP/2.0"
	times := readTestCapture(t, []benchDgram{
		{0, uac, srv, msg(register, "r1", "1 REGISTER")},
		{0.2, srv, uac, msg("SIP/2.0 401 Unauthorized", "r1", "1 REGISTER")},
		{0.5, uac, srv, msg(register, "r1", "2 REGISTER")},
		{0.9, srv, uac, msg("SIP/2.0 200 OK", "r1", "2 REGISTER")}, // 0.9
		{1.0, uac, srv, msg(invite, "c1", "1 INVITE")},
		{1.1, srv, uac, msg("SIP/2.0 407 Proxy Authentication Required", "c1", "1 INVITE")},
		{1.2, uac, srv, msg("ACK sip:uas@bench.test SIP/2.0", "c1", "1 ACK")},
		{1.3, uac, srv, msg(invite, "c1", "2 INVITE")},
		{1.4, srv, uac, msg("SIP/2.0 100 Trying", "c1", "2 INVITE")},
		{1.5, srv, uas, msg(invite, "c1", "2 INVITE")},
		{1.8, uas, srv, msg("SIP/2.0 180 Ringing", "c1", "2 INVITE")},
		{2.0, srv, uac, msg("SIP/2.0 180 Ringing", "c1", "2 INVITE")}, // 1.0
		{2.2, srv, uac, msg("SIP/2.0 200 OK", "c1", "2 INVITE")},
		{3.0, uac, srv, msg(invite, "c2", "1 INVITE")},
		{3.1, srv, uac, msg("SIP/2.0 100 Trying", "c2", "1 INVITE")},
		{3.5, srv, uac, msg("SIP/2.0 200 OK", "c2", "1 INVITE")}, // 0.5: no 180
		{3.6, uac, srv, msg("BYE sip:uas@bench.test SIP/2.0", "c2", "2 BYE")},
		{3.7, srv, uac, msg("SIP/2.0 200 OK", "c2", "2 BYE")},
		{4.0, uac, srv, msg(register, "r2", "1 REGISTER")},
		{4.1, srv, uac, msg("SIP/2.0 500 Server Internal Error", "r2", "1 REGISTER")}, // failed: none
	})
	want := []float64{0.9, 1.0, 0.5}
	if len(times.responses) != len(want) {
		t.Fatalf("responses = %v, want %v", times.responses, want)
	}
	for i, w := range want {
		if math.Abs(times.responses[i]-w) > 0.0015 {
			t.Fatalf("responses = %v, want %v", times.responses, want)
		}
	}
}
