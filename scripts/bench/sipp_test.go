package bench

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/internal/proctest"
)

const (
	uasIP = subnet + "101"
	// Load clients use 127.0.70.102, .103, … (one per entry node).
	loadIPBase = 102
)

// scenario is one SIPp load, the same for every server.
type scenario struct {
	Name  string // register, register-auth, call
	file  string // derived scenario file
	csv   string
	Fixed int   // the fixed rate (per second)
	Ramp  []int // the ramp's steps
	args  func() []string
	limit func(rate int) int // SIPp -l
}

// deriveScenarios writes the benchmark's scenario files: the ones of
// scripts/sipp with SIPp response-time markers added, so the load stays
// what the other tests use. RTD 1 is RFC 6076's delay (section 4): for
// REGISTER, from the first request to the 200 (Registration Request
// Delay, the 401 round trip included); for a call, from the first INVITE
// to the first provisional response above 100, or to the 200 when none
// came first (Session Request Delay, the 407 round trip included). Not
// to the 200 of a call: the callee answers after a pause of its own (the
// UAS's -d), which is not the server's.
func deriveScenarios(t testing.TB, dir string) (register, call string) {
	t.Helper()
	sippDir := filepath.Join(here(), "..", "sipp")
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(sippDir, name))
		must(t, err)
		return string(data)
	}
	firstSend := func(s string) string {
		const send = `<send retrans="500">`
		if !strings.Contains(s, send) {
			t.Fatalf("scenario changed: no %q", send)
		}
		return strings.Replace(s, send, `<send retrans="500" start_rtd="1">`, 1)
	}
	reg := firstSend(read("register_load.xml"))
	if n := strings.Count(reg, `<recv response="200"`); n != 2 {
		t.Fatalf("register_load.xml changed: %d 200 receives, want 2", n)
	}
	reg = strings.ReplaceAll(reg, `<recv response="200"`, `<recv response="200" rtd="1"`)
	// One Contact per user and load address, whatever port the run binds:
	// every run refreshes the user's binding, as a phone's re-registration
	// does, rather than adding one (after a ramp, ~40 per AOR, each listed
	// in every 200, a load of the run order and not of the scenario).
	const contact = "Contact: <sip:[field0]@[local_ip]:[local_port];"
	if n := strings.Count(reg, contact); n != 2 {
		t.Fatalf("register_load.xml changed: %d %q, want 2", n, contact)
	}
	reg = strings.ReplaceAll(reg, contact, "Contact: <sip:[field0]@[local_ip]:5060;")
	cl := firstSend(read("uac_auth.xml"))
	for _, recv := range []string{`<recv response="180" optional="true"`, `<recv response="200" rrs="true"`} {
		if strings.Count(cl, recv) != 1 {
			t.Fatalf("uac_auth.xml changed: not one %q", recv)
		}
		// SIPp ends an RTD once: at the 180, or at the 200 without one.
		cl = strings.Replace(cl, recv, recv+` rtd="1"`, 1)
	}
	register, call = filepath.Join(dir, "register.xml"), filepath.Join(dir, "call.xml")
	must(t, os.WriteFile(register, []byte(reg), 0o644))
	must(t, os.WriteFile(call, []byte(cl), 0o644))
	return register, call
}

// usersCSV writes SIPp's injection file for n users named prefixN.
func usersCSV(t testing.TB, path, prefix string, n int) string {
	var b strings.Builder
	b.WriteString("SEQUENTIAL\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%s%d;[authentication username=%s%d password=%s%d-pw]\n", prefix, i, prefix, i, prefix, i)
	}
	must(t, os.WriteFile(path, []byte(b.String()), 0o644))
	return path
}

// Result is one SIPp run against one server.
type Result struct {
	Scenario     string  `json:"scenario"`
	Server       string  `json:"server"`
	Kind         string  `json:"kind"` // warmup | fixed | ramp | ramp-retried | top | at80 | memory (report_test.go: best)
	Step         int     `json:"step,omitempty"`
	TargetRate   int     `json:"target_rate"`
	Seconds      int     `json:"seconds"`
	Attempted    int     `json:"attempted"`
	OK           int     `json:"ok"`
	Failed       int     `json:"failed"` // attempted - ok: failed, timed out or never finished
	AchievedRate float64 `json:"achieved_rate"`
	P50ms        float64 `json:"p50_ms"`
	P90ms        float64 `json:"p90_ms"`
	P99ms        float64 `json:"p99_ms"`
	MaxMs        float64 `json:"max_ms"`
	WallSeconds  float64 `json:"wall_seconds"`
	RTTSamples   int     `json:"rtt_samples"`
	FirstMs      float64 `json:"first_ms"` // first and last response-time sample, ms since SIPp started
	LastMs       float64 `json:"last_ms"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	CPUPer1000   float64 `json:"cpu_s_per_1000"`
	Passed       bool    `json:"passed"` // <1% failed, rate held, p99 < 1 s
	// The server's own part, from a packet capture (capture_test.go): the
	// time each message it sent spent inside it. Captured runs only.
	HopSamples int     `json:"hop_samples,omitempty"`
	HopP50ms   float64 `json:"hop_p50_ms,omitempty"`
	HopP99ms   float64 `json:"hop_p99_ms,omitempty"`
	HopMaxMs   float64 `json:"hop_max_ms,omitempty"`
	HopDropped int     `json:"hop_dropped,omitempty"` // datagrams tcpdump lost
	// From the same capture: the scenario's response time as the client's
	// socket sees it, between the points of SIPp's (readCapture).
	WireSamples int     `json:"wire_samples,omitempty"`
	WireP50ms   float64 `json:"wire_p50_ms,omitempty"`
	WireP99ms   float64 `json:"wire_p99_ms,omitempty"`
	captured    bool    // tcpdump ran during the run
}

type sippRun struct {
	cmd  *exec.Cmd
	dir  string
	out  *proctest.Buffer
	done chan struct{}
}

// sippBuffer is the socket buffer size SIPp asks for (the kernel caps it
// at net.core.rmem_max/wmem_max), the same for every server measured.
const sippBuffer = 4 << 20

func startSipp(t testing.TB, args ...string) *sippRun {
	t.Helper()
	s := &sippRun{dir: t.TempDir(), out: &proctest.Buffer{}, done: make(chan struct{})}
	// SIPp's socket buffers default to 64 KB: a scheduling pause of
	// the load generator on a busy 2-core host then drops the server's
	// answers, and the retransmission is counted against the server.
	s.cmd = exec.Command("sipp", append([]string{"-nostdin", "-buff_size", strconv.Itoa(sippBuffer)}, args...)...)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	must(t, s.cmd.Start())
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.kill)
	return s
}

func (s *sippRun) kill() {
	select {
	case <-s.done:
	default:
		s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *sippRun) wait(d time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(d):
		s.kill()
		return false
	}
}

func (s *sippRun) files(glob string) []string {
	ms, _ := filepath.Glob(filepath.Join(s.dir, glob))
	return ms
}

// startUAS registers the callee "uas" with srv (through its first entry)
// and answers calls until t ends.
func startUAS(t testing.TB, srv server) {
	t.Helper()
	port := strconv.Itoa(srv.uasPort)
	s := startSipp(t, "-sf", filepath.Join(here(), "uas_register.xml"), "-oocsf", filepath.Join(here(), "..", "sipp", "uas_ooc.xml"),
		"-m", "1", "-s", "uas", "-au", "uas", "-ap", "uas-pw", "-auth_uri", domain,
		"-key", "domain", domain, "-key", "contact_host", uasIP, "-key", "contact_port", port, "-key", "tag", "uas",
		"-d", "1", "-i", uasIP, "-p", port, "-mi", uasIP, "-mp", strconv.Itoa(20000+srv.uasPort%100*10),
		"-timeout", "3600s", "-trace_logs", srv.targets[0])
	// Registered when SIPp has sent a REGISTER and received a 200 for it.
	proctest.Eventually(t, 15*time.Second, "callee registered with "+srv.name, func() error {
		for _, f := range s.files("*_logs.log") {
			data, _ := os.ReadFile(f)
			if strings.Contains(string(data), "registered") {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("callee SIPp exited:\n%s", tail(s.out.String(), 20))
		default:
		}
		return fmt.Errorf("no 200 for the callee's REGISTER yet")
	})
}

var (
	reSuccess = regexp.MustCompile(`Successful call\s*\|\s*\d+\s*\|\s*(\d+)`)
	reFailed  = regexp.MustCompile(`Failed call\s*\|\s*\d+\s*\|\s*(\d+)`)
)

// runLoad runs sc at rate for secs against srv (the rate split over its
// entry points) and measures it. port distinguishes runs. When captured,
// the server's datagrams are recorded to measure its own latency.
func runLoad(t testing.TB, srv server, sc scenario, kind string, step, rate, secs, port int, captured bool) Result {
	t.Helper()
	n := len(srv.targets)
	perRate := max(rate/n, 1)
	calls := perRate * secs
	r := Result{Scenario: sc.Name, Server: srv.name, Kind: kind, Step: step, TargetRate: perRate * n, Seconds: secs, Attempted: calls * n}
	if waited, ok := settle(30 * time.Second); !ok {
		t.Logf("%s %s %d/s: the machine was still busy after %v; running anyway", srv.name, sc.Name, rate, waited.Round(time.Second))
	} else if waited > 2*time.Second {
		t.Logf("%s %s %d/s: waited %v for the machine to settle", srv.name, sc.Name, rate, waited.Round(100*time.Millisecond))
	}
	var capt *capture
	if captured {
		var err error
		keep := ""
		if dir := os.Getenv("SIPMESH_BENCH_PCAP"); dir != "" {
			keep = filepath.Join(dir, fmt.Sprintf("%s-%s-%s-%d-%d.pcap", srv.name, sc.Name, kind, rate, port))
		}
		if capt, err = startCapture(srv.targets, keep); err != nil {
			t.Logf("%s %s %d/s: no server latency: %v", srv.name, sc.Name, rate, err)
		}
	}
	cpu0 := srv.cpu()
	start := time.Now()
	var runs []*sippRun
	for i, target := range srv.targets {
		ip := fmt.Sprintf("%s%d", subnet, loadIPBase+i)
		args := append([]string{"-sf", sc.file}, sc.args()...)
		args = append(args, "-r", strconv.Itoa(perRate), "-m", strconv.Itoa(calls), "-l", strconv.Itoa(sc.limit(perRate)),
			"-i", ip, "-p", strconv.Itoa(port), "-mi", ip, "-mp", strconv.Itoa(30000+(port%1000)*20),
			"-timeout", strconv.Itoa(secs+15)+"s", "-trace_rtt", "-rtt_freq", strconv.Itoa(min(max(calls/100, 1), 100)), "-trace_err", "-max_log_size", "1000000", target)
		runs = append(runs, startSipp(t, args...))
	}
	// SIPMESH_BENCH_PROFILE=DIR: a CPU profile of every sipmesh run.
	profiled := make(chan struct{})
	if dir := os.Getenv("SIPMESH_BENCH_PROFILE"); dir != "" && srv.profile != nil && secs > 2 {
		path := filepath.Join(dir, fmt.Sprintf("%s-%s-%s-%d.pprof", srv.name, sc.Name, kind, rate))
		go func() {
			defer close(profiled)
			if err := srv.profile(secs-1, path); err != nil {
				t.Logf("%s: %v", path, err)
			}
		}()
	} else {
		close(profiled)
	}
	defer func() { <-profiled }()
	var rtts []float64
	var first, last float64
	for _, s := range runs {
		if !s.wait(time.Duration(secs+30) * time.Second) {
			t.Logf("%s %s %d/s: SIPp did not finish in time, killed", srv.name, sc.Name, rate)
		}
		out := s.out.String()
		if m := reSuccess.FindAllStringSubmatch(out, -1); len(m) > 0 {
			v, _ := strconv.Atoi(m[len(m)-1][1])
			r.OK += v
		}
		for _, f := range s.files("*_rtt.csv") {
			vs, f0, f1 := readRTT(f)
			rtts = append(rtts, vs...)
			if f0 > 0 && (first == 0 || f0 < first) {
				first = f0
			}
			last = math.Max(last, f1)
		}
		if r.OK == 0 {
			t.Logf("%s %s: SIPp output:\n%s", srv.name, sc.Name, tail(out, 15))
		}
		if testing.Verbose() && r.OK < calls {
			for _, f := range s.files("*_errors.log") {
				data, _ := os.ReadFile(f)
				t.Logf("%s %s: SIPp errors:\n%s", srv.name, sc.Name, tail(string(data), 5))
			}
		}
	}
	if err := srv.check(); err != nil {
		t.Fatalf("%s %s %d/s: %v", srv.name, sc.Name, rate, err)
	}
	r.WallSeconds = time.Since(start).Seconds()
	r.CPUSeconds = srv.cpu() - cpu0
	if capt != nil {
		r.captured = true
		times, dropped, err := capt.stop()
		if err != nil {
			t.Logf("%s %s %d/s: server latency: %v", srv.name, sc.Name, rate, err)
		}
		hops, wire := times.hops, times.responses
		sort.Float64s(hops)
		r.HopSamples, r.HopDropped = len(hops), dropped
		r.HopP50ms, r.HopP99ms = pct(hops, 50), pct(hops, 99)
		if len(hops) > 0 {
			r.HopMaxMs = hops[len(hops)-1]
		}
		sort.Float64s(wire)
		r.WireSamples, r.WireP50ms, r.WireP99ms = len(wire), pct(wire, 50), pct(wire, 99)
	}
	r.Failed = r.Attempted - r.OK
	if r.OK > 0 {
		r.CPUPer1000 = r.CPUSeconds * 1000 / float64(r.OK)
	}
	r.RTTSamples = len(rtts)
	if last > 0 {
		// Successful scenarios per second, from SIPp's start to the last
		// response-time sample (the last call's completion).
		r.AchievedRate = float64(r.OK) / (last / 1000)
	}
	r.FirstMs, r.LastMs = first, last
	sort.Float64s(rtts)
	r.P50ms, r.P90ms, r.P99ms = pct(rtts, 50), pct(rtts, 90), pct(rtts, 99)
	if len(rtts) > 0 {
		r.MaxMs = rtts[len(rtts)-1]
	}
	r.Passed = r.OK > 0 && float64(r.Failed) <= 0.01*float64(r.Attempted) && r.AchievedRate >= 0.9*float64(r.TargetRate) &&
		r.P99ms < 1000 && r.WallSeconds < float64(secs)*1.3+5
	return r
}

// readRTT reads SIPp's -trace_rtt file: "date_ms;response_time_ms;rtd_no",
// dates in ms since SIPp started, response times in whole ms (SIPp
// truncates: 0 means under 1 ms). SIPp writes every -rtt_freq-th batch, so
// the last partial batch (under 1% of the calls) is missing.
// It returns the response times of RTD 1 and the first and last dates.
func readRTT(path string) (vs []float64, first, last float64) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Split(strings.TrimSpace(l), ";")
		if len(f) < 3 || f[2] != "1" {
			continue
		}
		date, err1 := strconv.ParseFloat(f[0], 64)
		v, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		vs = append(vs, v)
		if first == 0 || date < first {
			first = date
		}
		last = math.Max(last, date)
	}
	return vs, first, last
}

func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
