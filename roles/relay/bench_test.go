package relay_test

// Benchmarks of the relay's forwarding path.
//
// BenchmarkForward and BenchmarkForwardBaseline send one packet at a time
// through one session (ns/op is the one-way time through the forwarder
// and back to the benchmark goroutine; allocs/op counts every allocation
// of the process per forwarded packet, the relay's goroutines included).
//
// BenchmarkLoad runs SIPMESH_RELAY_BENCH_STREAMS (default 1,000) RTP
// streams of 50 packets/s (500 calls, both directions) for
// SIPMESH_RELAY_BENCH_SECONDS (default 5) through, in turn: no forwarder
// (the endpoints send to each other: the load generator's own latency), a
// minimal Go UDP forwarder (recvfrom/sendto, nothing else) and the relay.
// Each forwarder runs in a child process (this test binary re-executed) so
// that its CPU time is measured alone. It reports per forwarder the
// packets forwarded per CPU-second (= per core), CPU per 1,000 packets,
// one-way latency p50/p99 and the relay/baseline ratios.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/roles/relay"
)

const childEnv = "SIPMESH_RELAY_BENCH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := benchChild(); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func BenchmarkForward(b *testing.B) {
	ip := testIP(b, 40)
	r := newRelay(b, []netip.Addr{ip}, nil)
	a, z := newEndpoint(b, ip), newEndpoint(b, ip)
	al := allocate(b, r, "bench", relay.StreamSpec{A: relay.Peer{RTP: a.addr()}, B: relay.Peer{RTP: z.addr()}})
	lockstep(b, a, z, al.Streams[0].A.RTP)
}

func BenchmarkForwardBaseline(b *testing.B) {
	ip := testIP(b, 41)
	a, z := newEndpoint(b, ip), newEndpoint(b, ip)
	fw, err := newBaseline(ip, a.addr(), z.addr())
	if err != nil {
		b.Fatal(err)
	}
	defer fw.close()
	lockstep(b, a, z, fw.aFacing())
}

// lockstep sends b.N packets from a to dst and receives each at z.
func lockstep(b *testing.B, a, z *endpoint, dst netip.AddrPort) {
	pkt := rtpPacket(1, 0, string(make([]byte, 160)))
	buf := make([]byte, 2048)
	z.conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	// Latch first.
	a.send(dst, pkt)
	z.recv()
	z.conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	for i := range b.N {
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		if _, err := a.conn.WriteToUDPAddrPort(pkt, dst); err != nil {
			b.Fatal(err)
		}
		if _, _, err := z.conn.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// baseline is the minimal forwarder: per stream two sockets, each
// goroutine doing nothing but recvfrom on one and sendto on the other.
type baseline struct {
	conns [2]*net.UDPConn
	wg    sync.WaitGroup
}

func newBaseline(ip netip.Addr, a, z netip.AddrPort) (*baseline, error) {
	f := &baseline{}
	for i := range f.conns {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			f.close()
			return nil, err
		}
		f.conns[i] = c
	}
	f.wg.Add(2)
	go f.pump(f.conns[0], f.conns[1], z)
	go f.pump(f.conns[1], f.conns[0], a)
	return f, nil
}

func (f *baseline) pump(in, out *net.UDPConn, dst netip.AddrPort) {
	defer f.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := in.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		out.WriteToUDPAddrPort(buf[:n], dst)
	}
}

func (f *baseline) aFacing() netip.AddrPort { return f.conns[0].LocalAddr().(*net.UDPAddr).AddrPort() }
func (f *baseline) zFacing() netip.AddrPort { return f.conns[1].LocalAddr().(*net.UDPAddr).AddrPort() }

func (f *baseline) close() {
	for _, c := range f.conns {
		if c != nil {
			c.Close()
		}
	}
	f.wg.Wait()
}

// childSetup is what the parent asks of a child forwarder process.
type childSetup struct {
	Mode  string      `json:"mode"` // "relay" | "baseline"
	IP    string      `json:"ip"`
	Peers [][2]string `json:"peers"` // per call: a's and b's address
}

// childReady is the child's answer: per call, where a and b send.
type childReady struct {
	Endpoints [][2]string `json:"endpoints"`
}

// benchChild runs a forwarder for the parent: setup on stdin, endpoints
// on stdout, then "usage" lines answered with the CPU time used so far,
// until stdin closes.
func benchChild() error {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 64<<20)
	if !in.Scan() {
		return fmt.Errorf("no setup: %v", in.Err())
	}
	var setup childSetup
	if err := json.Unmarshal(in.Bytes(), &setup); err != nil {
		return err
	}
	ip := netip.MustParseAddr(setup.IP)
	var ready childReady
	switch setup.Mode {
	case "relay":
		cfg := relay.DefaultConfig()
		cfg.Interfaces = []relay.Interface{{Bind: ip}}
		cfg.PortMin, cfg.PortMax = 24000, 29999
		r, err := relay.New(cfg)
		if err != nil {
			return err
		}
		defer r.Close()
		for i, p := range setup.Peers {
			al, err := r.Allocate(ctx, relay.AllocateRequest{CallID: strconv.Itoa(i), Streams: []relay.StreamSpec{{
				A: relay.Peer{RTP: netip.MustParseAddrPort(p[0])}, B: relay.Peer{RTP: netip.MustParseAddrPort(p[1])},
			}}})
			if err != nil {
				return err
			}
			ready.Endpoints = append(ready.Endpoints, [2]string{al.Streams[0].A.RTP.String(), al.Streams[0].B.RTP.String()})
		}
	case "baseline":
		for _, p := range setup.Peers {
			f, err := newBaseline(ip, netip.MustParseAddrPort(p[0]), netip.MustParseAddrPort(p[1]))
			if err != nil {
				return err
			}
			defer f.close()
			ready.Endpoints = append(ready.Endpoints, [2]string{f.aFacing().String(), f.zFacing().String()})
		}
	default:
		return fmt.Errorf("mode %q", setup.Mode)
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(ready); err != nil {
		return err
	}
	for in.Scan() {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return err
		}
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		if err := out.Encode(cpu); err != nil {
			return err
		}
	}
	return nil
}

// child is a running forwarder process.
type child struct {
	cmd   *exec.Cmd
	stdin *os.File
	out   *json.Decoder
}

func startChild(b *testing.B, setup childSetup) (*child, childReady) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	pr, pw, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdin = pr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	pr.Close()
	c := &child{cmd: cmd, stdin: pw, out: json.NewDecoder(stdout)}
	b.Cleanup(c.stop)
	if err := json.NewEncoder(pw).Encode(setup); err != nil {
		b.Fatal(err)
	}
	var ready childReady
	if err := c.out.Decode(&ready); err != nil {
		b.Fatalf("child %s: %v", setup.Mode, err)
	}
	return c, ready
}

func (c *child) cpu(b *testing.B) time.Duration {
	b.Helper()
	if _, err := c.stdin.WriteString("usage\n"); err != nil {
		b.Fatal(err)
	}
	var d time.Duration
	if err := c.out.Decode(&d); err != nil {
		b.Fatal(err)
	}
	return d
}

func (c *child) stop() {
	if c.stdin != nil {
		c.stdin.Close()
		c.stdin = nil
		done := make(chan struct{})
		go func() { c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-done
		}
	}
}

// histogram of latencies in microseconds, 0 … 100 ms.
type histogram struct{ us [100001]atomic.Uint64 }

func (h *histogram) add(d time.Duration) {
	us := min(max(d.Microseconds(), 0), int64(len(h.us)-1))
	h.us[us].Add(1)
}

func (h *histogram) quantile(q float64) float64 {
	var total uint64
	for i := range h.us {
		total += h.us[i].Load()
	}
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	var seen uint64
	for i := range h.us {
		seen += h.us[i].Load()
		if seen > want {
			return float64(i)
		}
	}
	return float64(len(h.us) - 1)
}

// loadResult is one forwarder's figures over the measured window.
type loadResult struct {
	sent, received uint64
	window, cpu    time.Duration
	p50, p99       float64 // µs
}

func (r loadResult) ppsPerCore() float64 { return float64(r.received) / r.cpu.Seconds() }
func (r loadResult) cpuPer1000() float64 {
	return float64(r.cpu.Microseconds()) / 1000 / (float64(r.received) / 1000)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func BenchmarkLoad(b *testing.B) {
	streams := envInt("SIPMESH_RELAY_BENCH_STREAMS", 1000)
	seconds := envInt("SIPMESH_RELAY_BENCH_SECONDS", 5)
	calls := streams / 2
	window := time.Duration(seconds) * time.Second
	genIP := testIP(b, 30)

	direct := runLoad(b, genIP, calls, window, "")
	base := runLoad(b, genIP, calls, window, "baseline")
	rel := runLoad(b, genIP, calls, window, "relay")

	b.ReportMetric(direct.p50, "direct-p50-µs")
	b.ReportMetric(direct.p99, "direct-p99-µs")
	for _, x := range []struct {
		name string
		r    loadResult
	}{{"baseline", base}, {"relay", rel}} {
		b.ReportMetric(x.r.ppsPerCore(), x.name+"-pkt/s/core")
		b.ReportMetric(x.r.cpuPer1000(), x.name+"-cpu-ms/1kpkt")
		b.ReportMetric(x.r.p50-direct.p50, x.name+"-added-p50-µs")
		b.ReportMetric(x.r.p99-direct.p99, x.name+"-added-p99-µs")
		b.ReportMetric(100*(1-float64(x.r.received)/float64(x.r.sent)), x.name+"-loss-%")
	}
	b.ReportMetric(rel.cpuPer1000()/base.cpuPer1000(), "relay/baseline-cpu")
	b.Logf("%d streams x 50 pkt/s for %s on loopback", streams, window)
	for _, x := range []struct {
		name string
		r    loadResult
	}{{"direct", direct}, {"baseline", base}, {"relay", rel}} {
		r := x.r
		b.Logf("%-8s sent %d received %d (%.0f pkt/s) cpu %s -> %.0f pkt/s/core, %.3f ms CPU/1000 pkt, latency p50 %.0f µs p99 %.0f µs",
			x.name, r.sent, r.received, float64(r.received)/r.window.Seconds(), r.cpu.Round(time.Millisecond), r.ppsPerCore(), r.cpuPer1000(), r.p50, r.p99)
	}
}

// runLoad runs the load through a forwarder child process of mode, or
// endpoint to endpoint for mode "".
func runLoad(b *testing.B, genIP netip.Addr, calls int, window time.Duration, mode string) loadResult {
	b.Helper()
	type stream struct {
		conn *net.UDPConn
		dst  netip.AddrPort
		ssrc uint32
	}
	conns := make([]*net.UDPConn, 2*calls)
	for i := range conns {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(genIP, 0)))
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	addr := func(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }
	streams := make([]stream, 0, 2*calls)
	var fw *child
	if mode == "" {
		for i := range calls {
			a, z := conns[2*i], conns[2*i+1]
			streams = append(streams, stream{a, addr(z), uint32(2 * i)}, stream{z, addr(a), uint32(2*i + 1)})
		}
	} else {
		setup := childSetup{Mode: mode, IP: testIP(b, 31).String()}
		if mode == "baseline" {
			setup.IP = testIP(b, 32).String()
		}
		for i := range calls {
			setup.Peers = append(setup.Peers, [2]string{addr(conns[2*i]).String(), addr(conns[2*i+1]).String()})
		}
		var ready childReady
		fw, ready = startChild(b, setup)
		for i, ep := range ready.Endpoints {
			streams = append(streams,
				stream{conns[2*i], netip.MustParseAddrPort(ep[0]), uint32(2 * i)},
				stream{conns[2*i+1], netip.MustParseAddrPort(ep[1]), uint32(2*i + 1)})
		}
	}

	base := time.Now()
	var hist histogram
	var received atomic.Uint64
	// Packets sent in [from, to) (ns since base) are counted and measured.
	var from, to atomic.Int64
	from.Store(1 << 62)
	var rwg sync.WaitGroup
	for _, c := range conns {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			buf := make([]byte, 2048)
			for {
				n, _, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				if n < 20 {
					continue
				}
				sentAt := int64(binary.BigEndian.Uint64(buf[12:]))
				if sentAt < from.Load() || sentAt >= to.Load() {
					continue
				}
				hist.add(time.Since(base) - time.Duration(sentAt))
				received.Add(1)
			}
		}()
	}

	// Senders: 4 goroutines; every 2 ms each sends to a tenth of its
	// streams, so every stream sends every 20 ms (50 packets/s).
	const senders, slots = 4, 10
	var sent atomic.Uint64
	stop := make(chan struct{})
	var swg sync.WaitGroup
	for g := range senders {
		swg.Add(1)
		go func() {
			defer swg.Done()
			pkt := make([]byte, 12+160)
			pkt[0] = 0x80
			seq := make([]uint16, len(streams))
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for slot := 0; ; slot = (slot + 1) % slots {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				for i := g; i < len(streams); i += senders {
					if (i/senders)%slots != slot {
						continue
					}
					s := streams[i]
					seq[i]++
					binary.BigEndian.PutUint16(pkt[2:], seq[i])
					binary.BigEndian.PutUint32(pkt[8:], s.ssrc)
					at := int64(time.Since(base))
					binary.BigEndian.PutUint64(pkt[12:], uint64(at))
					if _, err := s.conn.WriteToUDPAddrPort(pkt, s.dst); err == nil && at >= from.Load() && at < to.Load() {
						sent.Add(1)
					}
				}
			}
		}()
	}
	// Warm up (latching, buffers), measure, then let the tail arrive.
	time.Sleep(500 * time.Millisecond)
	var cpu0 time.Duration
	if fw != nil {
		cpu0 = fw.cpu(b)
	}
	to.Store(1 << 62)
	t0 := time.Now()
	from.Store(int64(t0.Sub(base)))
	time.Sleep(window)
	to.Store(int64(time.Since(base)))
	elapsed := time.Since(t0)
	var cpu time.Duration
	if fw != nil {
		cpu = fw.cpu(b) - cpu0
	}
	// Packets still in flight arrive within the relay's p99 by far.
	time.Sleep(300 * time.Millisecond)
	close(stop)
	swg.Wait()
	for _, c := range conns {
		c.Close()
	}
	rwg.Wait()
	if fw != nil {
		fw.stop()
	}
	return loadResult{sent: sent.Load(), received: received.Load(), window: elapsed, cpu: cpu, p50: hist.quantile(0.50), p99: hist.quantile(0.99)}
}
