package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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
// may not capture (it needs CAP_NET_RAW).
func startCapture(servers []string) (_ *capture, err error) {
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
func (c *capture) stop() (hops []float64, dropped int, err error) {
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
		return nil, dropped, fmt.Errorf("capture: %w", err)
	}
	defer f.Close()
	hops, err = serverHops(bufio.NewReaderSize(f, 1<<20), c.servers)
	return hops, dropped, err
}

// serverHops reads a pcap file of SIP over UDP and returns, in ms, the time
// each message a server sent spent inside it: from the latest message it
// received of the same transaction (Call-ID and CSeq) that caused it. A
// response or request it forwards is paired with the one it received (the
// same status code or method); a response it makes itself (100, 401, 407,
// the registrar's 200) with the request. Datagrams between two servers (a
// mesh) count as sent by one and received by the other.
func serverHops(r io.Reader, servers []netip.AddrPort) ([]float64, error) {
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	if pr.LinkType() != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("capture: link type %v, want Ethernet (Linux lo)", pr.LinkType())
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
	pending := map[txKey][]received{}
	var hops []float64
	for {
		data, ci, err := pr.ZeroCopyReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			return hops, fmt.Errorf("capture: %w", err)
		}
		if err := parser.DecodeLayers(data, &decoded); err != nil || !slices.Contains(decoded, layers.LayerTypeUDP) {
			continue
		}
		kind, resp, callID, cseq, ok := sipSummary(udp.Payload)
		if !ok {
			continue
		}
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip4.SrcIP.To4())), uint16(udp.SrcPort))
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip4.DstIP.To4())), uint16(udp.DstPort))
		if slices.Contains(servers, src) {
			k := txKey{src, callID, cseq}
			in := pending[k]
			var cause *received
			for i := len(in) - 1; i >= 0 && cause == nil; i-- {
				if in[i].resp == resp && in[i].kind == kind {
					cause = &in[i]
				}
			}
			for i := len(in) - 1; i >= 0 && cause == nil && resp; i-- {
				if !in[i].resp {
					cause = &in[i]
				}
			}
			if cause != nil {
				hops = append(hops, float64(ci.Timestamp.Sub(cause.at).Microseconds())/1000)
			}
		}
		if slices.Contains(servers, dst) {
			k := txKey{dst, callID, cseq}
			pending[k] = append(pending[k], received{at: ci.Timestamp, kind: kind, resp: resp})
		}
	}
	return hops, nil
}

// sipSummary reads what serverHops pairs messages by: the method or status
// code, and the Call-ID and CSeq values. A body the capture's snap length
// cut short makes Parse complain, but the header fields are read.
func sipSummary(data []byte) (kind string, resp bool, callID, cseq string, ok bool) {
	msg, _ := sipmsg.Parse(data)
	switch m := msg.(type) {
	case *sip.Request:
		kind = string(m.Method)
	case *sip.Response:
		kind, resp = strconv.Itoa(m.StatusCode), true
	default:
		return "", false, "", "", false
	}
	cid, cs := msg.CallID(), msg.CSeq()
	if cid == nil || cs == nil {
		return "", false, "", "", false
	}
	return kind, resp, cid.Value(), cs.Value(), true
}

// serverHops pairs each message a server sends with the one it received
// that caused it: forwarded requests and responses with their like, its
// own responses with the request; other hosts' traffic and the server's
// unprompted requests are not counted.
func TestServerHops(t *testing.T) {
	srv := netip.MustParseAddrPort("127.0.70.2:5060")
	uac := netip.MustParseAddrPort("127.0.70.100:6001")
	uas := netip.MustParseAddrPort("127.0.70.101:5070")
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	msg := func(first, callID, cseq string) []byte {
		return []byte(first + "\r\nVia: SIP/2.0/UDP 127.0.70.100:6001;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n" +
			"From: <sip:caller@bench.test>;tag=1\r\nTo: <sip:uas@bench.test>\r\ni: " + callID + "\r\nCSeq:  " + cseq + "\r\nContent-Length: 0\r\n\r\n")
	}
	type dgram struct {
		ms       float64
		src, dst netip.AddrPort
		data     []byte
	}
	invite, ringing, ok := "INVITE sip:uas@bench.test SIP/2.0", "SIP/2.0 180 Ringing", "SIP/2.0 200 OK"
	dgrams := []dgram{
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
	}
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
	hops, err := serverHops(&buf, []netip.AddrPort{srv})
	if err != nil {
		t.Fatal(err)
	}
	if want := []float64{0.3, 0.5, 0.4, 0.3, 4.0}; !slices.Equal(hops, want) {
		t.Fatalf("hops = %v, want %v", hops, want)
	}
}
