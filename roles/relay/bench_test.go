package relay_test

// Benchmarks of the relay's forwarding path.
//
// BenchmarkForward and BenchmarkForwardBaseline send one packet at a time
// through one session (ns/op is the one-way time through the forwarder
// and back to the benchmark goroutine; allocs/op counts every allocation
// of the process per forwarded packet, the relay's goroutines included).
//
// BenchmarkLoad runs SIPMESH_RELAY_BENCH_STREAMS (default 1,000) RTP
// streams of 50 packets/s (500 calls, both directions) through, switching
// every 500 ms: no forwarder (the endpoints send to each other: the load
// generator's own latency), a minimal Go UDP forwarder (recvfrom/sendto,
// nothing else) and the relay, SIPMESH_RELAY_BENCH_SECONDS (default 5) of
// measured phases each. Interleaving gives all three the same machine
// conditions. Each forwarder runs in a child process (this test binary
// re-executed) so that its CPU time is measured alone. It reports per
// forwarder the packets forwarded per CPU-second (= per core), CPU per
// 1,000 packets, one-way latency p50/p99 and the relay/baseline ratios.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
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

// histogram of latencies in microseconds, 0 … 1 s.
type histogram struct{ us [1000001]atomic.Uint64 }

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

// loadResult is one forwarder's figures over its measured phases.
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

// Load modes: where the generator's streams go.
const (
	modeDirect = iota // endpoint to endpoint: the generator's own latency
	modeBaseline
	modeRelay
	modes
)

var modeNames = [modes]string{"direct", "baseline", "relay"}

func BenchmarkLoad(b *testing.B) {
	streams := envInt("SIPMESH_RELAY_BENCH_STREAMS", 1000)
	seconds := envInt("SIPMESH_RELAY_BENCH_SECONDS", 5)
	res := runLoad(b, streams/2, time.Duration(seconds)*time.Second)
	direct, base, rel := res[modeDirect], res[modeBaseline], res[modeRelay]

	b.ReportMetric(direct.p50, "direct-p50-µs")
	b.ReportMetric(direct.p99, "direct-p99-µs")
	for _, m := range []int{modeBaseline, modeRelay} {
		r, name := res[m], modeNames[m]
		b.ReportMetric(r.ppsPerCore(), name+"-pkt/s/core")
		b.ReportMetric(r.cpuPer1000(), name+"-cpu-ms/1kpkt")
		b.ReportMetric(r.p50, name+"-p50-µs")
		b.ReportMetric(r.p99, name+"-p99-µs")
		b.ReportMetric(100*(1-float64(r.received)/float64(r.sent)), name+"-loss-%")
	}
	b.ReportMetric(rel.cpuPer1000()/base.cpuPer1000(), "relay/baseline-cpu")
	b.ReportMetric(rel.ppsPerCore()/base.ppsPerCore(), "relay/baseline-pkt/s/core")
	b.Logf("%d streams x 50 pkt/s, %s per forwarder in interleaved 500 ms phases, loopback, GOMAXPROCS %d", 2*(streams/2), time.Duration(seconds)*time.Second, runtime.GOMAXPROCS(0))
	for m, r := range res {
		b.Logf("%-8s sent %d received %d (%.0f pkt/s) cpu %s -> %.0f pkt/s/core, %.3f ms CPU/1000 pkt, latency p50 %.0f µs p99 %.0f µs (added over direct: p50 %.0f µs p99 %.0f µs)",
			modeNames[m], r.sent, r.received, float64(r.received)/r.window.Seconds(), r.cpu.Round(time.Millisecond),
			r.ppsPerCore(), r.cpuPer1000(), r.p50, r.p99, r.p50-direct.p50, r.p99-direct.p99)
	}
}

// runLoad sends 50 packets/s on each of 2*calls streams, switching every
// 500 ms between no forwarder, the baseline child and the relay child, so
// that all three see the same machine conditions; each gets window of
// measured phases in total.
func runLoad(b *testing.B, calls int, window time.Duration) [modes]loadResult {
	b.Helper()
	genIP := testIP(b, 30)
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
	type stream struct {
		conn *net.UDPConn
		dst  [modes]netip.AddrPort
		ssrc uint32
	}
	streams := make([]stream, 2*calls)
	for i := range calls {
		a, z := conns[2*i], conns[2*i+1]
		streams[2*i] = stream{conn: a, ssrc: uint32(2 * i)}
		streams[2*i+1] = stream{conn: z, ssrc: uint32(2*i + 1)}
		streams[2*i].dst[modeDirect] = addr(z)
		streams[2*i+1].dst[modeDirect] = addr(a)
	}
	var children [modes]*child
	for m, ip := range map[int]byte{modeBaseline: 32, modeRelay: 31} {
		setup := childSetup{Mode: modeNames[m], IP: testIP(b, ip).String()}
		for i := range calls {
			setup.Peers = append(setup.Peers, [2]string{addr(conns[2*i]).String(), addr(conns[2*i+1]).String()})
		}
		c, ready := startChild(b, setup)
		children[m] = c
		for i, ep := range ready.Endpoints {
			streams[2*i].dst[m] = netip.MustParseAddrPort(ep[0])
			streams[2*i+1].dst[m] = netip.MustParseAddrPort(ep[1])
		}
	}

	// phase: mode in the low byte, bit 8 set while measured.
	const measured = 1 << 8
	var phase atomic.Int32
	base := time.Now()
	var hist [modes]histogram
	var sent, received [modes]atomic.Uint64
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
				if n < 22 || buf[21] == 0 {
					continue
				}
				m := buf[20] % modes
				hist[m].add(time.Since(base) - time.Duration(binary.BigEndian.Uint64(buf[12:])))
				received[m].Add(1)
			}
		}()
	}

	// Senders: 4 goroutines; every 2 ms each sends to a tenth of its
	// streams, so every stream sends every 20 ms (50 packets/s).
	const senders, slots = 4, 10
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
					ph := phase.Load()
					m := int(ph & 0xff)
					s := streams[i]
					seq[i]++
					binary.BigEndian.PutUint16(pkt[2:], seq[i])
					binary.BigEndian.PutUint32(pkt[8:], s.ssrc)
					binary.BigEndian.PutUint64(pkt[12:], uint64(time.Since(base)))
					pkt[20] = byte(m)
					pkt[21] = byte(ph >> 8)
					if _, err := s.conn.WriteToUDPAddrPort(pkt, s.dst[m]); err == nil && ph&measured != 0 {
						sent[m].Add(1)
					}
				}
			}
		}()
	}

	var res [modes]loadResult
	// Warm up every path (latching, socket buffers, page faults).
	for m := range modes {
		phase.Store(int32(m))
		time.Sleep(300 * time.Millisecond)
	}
	const phaseLen = 500 * time.Millisecond
	rounds := max(1, int(window/phaseLen))
	for range rounds {
		for m := range modes {
			var cpu0 time.Duration
			if children[m] != nil {
				cpu0 = children[m].cpu(b)
			}
			t0 := time.Now()
			phase.Store(int32(m) | measured)
			time.Sleep(phaseLen)
			phase.Store(int32(m))
			res[m].window += time.Since(t0)
			if children[m] != nil {
				res[m].cpu += children[m].cpu(b) - cpu0
			}
		}
	}
	// Packets still in flight arrive well within this.
	time.Sleep(300 * time.Millisecond)
	close(stop)
	swg.Wait()
	for _, c := range conns {
		c.Close()
	}
	rwg.Wait()
	for m := range modes {
		res[m].sent, res[m].received = sent[m].Load(), received[m].Load()
		res[m].p50, res[m].p99 = hist[m].quantile(0.50), hist[m].quantile(0.99)
		if children[m] != nil {
			children[m].stop()
		}
	}
	return res
}
