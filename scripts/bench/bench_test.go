package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// params is what a run does: the smoke run (part of `make test`) runs each
// scenario for 2 s at a low rate against both servers; the full run
// (SIPMESH_BENCH=full, `make bench`) adds the ramps, the 3-node variant and
// the memory figure.
type params struct {
	full      bool
	secs      int
	regFixed  int
	regRamp   []int
	callFixed int
	callRamp  []int
	authFixed int // register-auth's fixed rate; 0: regFixed
	mesh      bool
	memory    int  // bindings for the memory figure; 0: none
	repeat    int  // fixed-rate runs per server, interleaved; the table shows the median
	capture   bool // measure the servers' own latency in the fixed runs (tcpdump)
	out       string
}

func getParams(t *testing.T) params {
	p := params{secs: 2, regFixed: 20, callFixed: 10, repeat: 1, capture: true, out: filepath.Join(t.TempDir(), "results")}
	if os.Getenv("SIPMESH_BENCH") != "full" {
		if v := os.Getenv("SIPMESH_BENCH_OUT"); v != "" {
			p.out = v
		}
		return p
	}
	p.full, p.secs, p.mesh, p.memory, p.repeat = true, 10, true, 100000, 3
	p.regFixed, p.callFixed = 500, 100
	p.regRamp = []int{250, 500, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 12500, 15000, 20000, 25000, 30000}
	p.callRamp = []int{50, 100, 200, 300, 400, 600, 800, 1000, 1300, 1600, 2000, 2500, 3000}
	if v, err := strconv.Atoi(os.Getenv("SIPMESH_BENCH_STEP")); err == nil && v > 0 {
		p.secs = v
	}
	if os.Getenv("SIPMESH_BENCH_MESH") == "0" {
		p.mesh = false
	}
	if v := os.Getenv("SIPMESH_BENCH_FIXED"); v != "" {
		rates := strings.Split(v, ",")
		for i, dst := range []*int{&p.regFixed, &p.callFixed, &p.authFixed} {
			if i < len(rates) {
				if n, err := strconv.Atoi(rates[i]); err == nil && n > 0 {
					*dst = n
				}
			}
		}
	}
	if os.Getenv("SIPMESH_BENCH_CAPTURE") == "0" {
		p.capture = false
	}
	if v, err := strconv.Atoi(os.Getenv("SIPMESH_BENCH_REPEAT")); err == nil && v > 0 {
		p.repeat = v
	}
	if os.Getenv("SIPMESH_BENCH_RAMP") == "0" {
		p.regRamp, p.callRamp = nil, nil
	}
	if os.Getenv("SIPMESH_BENCH_MEMORY") == "0" {
		p.memory = 0
	}
	p.out = filepath.Join(here(), "..", "..", "results", "bench")
	if v := os.Getenv("SIPMESH_BENCH_OUT"); v != "" {
		p.out = v
	}
	return p
}

// Report is bench.json.
type Report struct {
	Started     time.Time `json:"started"`
	Host        string    `json:"host"`
	Kamailio    string    `json:"kamailio"`
	SIPp        string    `json:"sipp"`
	Go          string    `json:"go"`
	Workers     int       `json:"workers"`
	StepSeconds int       `json:"step_seconds"`
	Full        bool      `json:"full"`
	Results     []Result  `json:"results"`
	Memory      []Memory  `json:"memory,omitempty"`
	LoadBefore  string    `json:"loadavg_before"` // /proc/loadavg: other load on the machine skews the figures
	LoadAfter   string    `json:"loadavg_after"`
	Table       string    `json:"table"`
}

// Memory is the resident memory of a server holding many bindings.
type Memory struct {
	Server      string  `json:"server"`
	Bindings    int     `json:"bindings"` // REGISTERs that got a 200 (distinct AORs)
	BeforeBytes int64   `json:"before_bytes"`
	AfterBytes  int64   `json:"after_bytes"`
	Seconds     float64 `json:"seconds"`
	Measure     string  `json:"measure"` // VmRSS of the node | summed PSS of Kamailio's processes
}

func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("process benchmark")
	}
	for _, bin := range []string{"sipp", "kamailio"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (Debian: apt-get install sip-tester kamailio)", bin)
		}
	}
	p := getParams(t)
	t.Setenv("GOMAXPROCS", strconv.Itoa(workers)) // inherited by the sipmesh nodes
	rep := &Report{Started: time.Now().UTC(), Kamailio: version("kamailio", "-v"), SIPp: version("sipp", "-v"),
		Go: runtime.Version(), Workers: workers, StepSeconds: p.secs, Full: p.full}
	rep.Host, _ = os.Hostname()
	rep.LoadBefore = loadavg()
	rep.Host += fmt.Sprintf(" (%d CPUs)", runtime.NumCPU())

	dir := t.TempDir()
	regFile, callFile := deriveScenarios(t, dir)
	csv := usersCSV(t, filepath.Join(dir, "load.csv"), "load", loadUsrs)
	regArgs := func() []string {
		return []string{"-inf", csv, "-key", "domain", domain, "-auth_uri", domain, "-recv_timeout", "5000"}
	}
	register := scenario{Name: "register", file: regFile, Fixed: p.regFixed, Ramp: p.regRamp, args: regArgs,
		limit: func(r int) int { return max(r, 50) }}
	registerAuth := register
	registerAuth.Name = "register-auth"
	if p.authFixed > 0 {
		registerAuth.Fixed = p.authFixed
	}
	call := scenario{Name: "call", file: callFile, Fixed: p.callFixed, Ramp: p.callRamp,
		args: func() []string {
			return []string{"-s", "uas", "-au", "caller", "-ap", "caller-pw", "-key", "caller", "caller", "-key", "domain", domain,
				"-auth_uri", "uas@" + domain, "-recv_timeout", "10000"}
		},
		limit: func(r int) int { return max(r, 50) }}

	// SIPMESH_BENCH_ONLY=kamailio runs the Kamailio half alone (to check
	// the harness while sipmesh's SIP edge is not there).
	kamOnly := os.Getenv("SIPMESH_BENCH_ONLY") == "kamailio"
	port := 6000
	nextPort := func() int { port++; return port }
	add := func(r Result) {
		rep.Results = append(rep.Results, r)
		hop := ""
		if r.HopSamples > 0 {
			hop = fmt.Sprintf(" server hop p50 %.2f p99 %.2f max %.2f ms (%d, %d lost); on the wire p50 %.2f p99 %.2f ms (%d)",
				r.HopP50ms, r.HopP99ms, r.HopMaxMs, r.HopSamples, r.HopDropped, r.WireP50ms, r.WireP99ms, r.WireSamples)
		}
		t.Logf("%-13s %-10s %-5s %5d/s: ok %6d failed %5d achieved %7.1f/s (rtt %d samples %.0f-%.0f ms) p50 %3.0f ms p99 %4.0f ms cpu %5.2fs (%.3f s/1000) passed=%v%s",
			r.Scenario, r.Server, r.Kind, r.TargetRate, r.OK, r.Failed, r.AchievedRate, r.RTTSamples, r.FirstMs, r.LastMs, r.P50ms, r.P99ms, r.CPUSeconds, r.CPUPer1000, r.Passed, hop)
	}
	// run runs sc on the servers in turn (A, B, A, B …): the fixed rate,
	// then the ramp, each server until it saturates.
	run := func(t *testing.T, sc scenario, servers ...server) {
		if only := os.Getenv("SIPMESH_BENCH_SCENARIOS"); only != "" && !strings.Contains(","+only+",", ","+sc.Name+",") {
			return
		}
		// Warm-up (not recorded): first queries load Kamailio's db_text
		// table and grow sipmesh's pools.
		for _, srv := range servers {
			runLoad(t, srv, sc, "warmup", 0, sc.Fixed, 1, nextPort(), false)
		}
		// The fixed rate several times, A B A B …: the machine's other
		// load comes and goes, and the median of a few runs is steadier
		// than one.
		for range p.repeat {
			for _, srv := range servers {
				add(runLoad(t, srv, sc, "fixed", 0, sc.Fixed, p.secs, nextPort(), p.capture))
			}
		}
		saturated := map[string]bool{}
		for i, rate := range sc.Ramp {
			for _, srv := range servers {
				if saturated[srv.name] {
					continue
				}
				r := runLoad(t, srv, sc, "ramp", i+1, rate, p.secs, nextPort(), false)
				if !r.Passed {
					// One retry: a step fails only when it fails twice,
					// so that a passing hiccup (other load on the
					// machine) does not end the ramp.
					t.Logf("%s %s %d/s did not pass; once more", srv.name, sc.Name, rate)
					r.Kind = "ramp-retried"
					add(r)
					r = runLoad(t, srv, sc, "ramp", i+1, rate, p.secs, nextPort(), false)
				}
				add(r)
				saturated[srv.name] = !r.Passed
			}
			if len(saturated) == len(servers) && all(saturated) {
				break
			}
		}
		// The highest step every server passed, again, A B A B …, so that
		// the CPU at the top is the median of several runs at one rate, as
		// at the fixed rate, and not one run that the machine's other load
		// may have inflated by a tenth either way.
		if top := topStep(rep.Results, sc.Name, servers); top > 0 && len(servers) > 1 {
			for range p.repeat - 1 {
				for _, srv := range servers {
					add(runLoad(t, srv, sc, "top", 0, top, p.secs, nextPort(), false))
				}
			}
		}
		// Each server at 80% of its own maximum, where the issue's
		// targets are (no failures, p99 under 10 ms), A B A B …, then
		// once more each, captured. The target's p99 comes from the runs
		// without tcpdump: at 80% of the two CPUs, its share of them (0.08
		// cores and the kernel's copies at 64,000 datagrams/s) doubled
		// SIPp's p99 (REGISTER-auth at 16,000/s: 8 ms in four runs of
		// five without, 16 ms in five of five with), and it costs the
		// server with the higher maximum more.
		at80 := map[string]int{}
		for _, srv := range servers {
			if _, max, _ := best(rep.Results, sc.Name, srv.name); max != nil && max.Passed {
				at80[srv.name] = max.TargetRate * 8 / 10
			}
		}
		for i := range p.repeat + 1 {
			for _, srv := range servers {
				if rate := at80[srv.name]; rate > 0 {
					add(runLoad(t, srv, sc, "at80", 0, rate, p.secs, nextPort(), p.capture && i == p.repeat))
				}
			}
		}
	}

	t.Run("no auth", func(t *testing.T) {
		servers := []server{startKamailio(t, false)}
		if !kamOnly {
			s, _ := startSipmesh(t, 1, false)
			servers = append(servers, s)
		}
		run(t, register, servers...)
	})
	if p.memory > 0 {
		// Fresh servers, so that the figure is the bindings' and not what
		// the saturated ramps left behind.
		t.Run("memory", func(t *testing.T) {
			servers := []server{startKamailio(t, false)}
			if !kamOnly {
				s, _ := startSipmesh(t, 1, false)
				servers = append(servers, s)
			}
			memCSV := usersCSV(t, filepath.Join(dir, "mem.csv"), "mem", p.memory)
			mem := register
			mem.Name = "memory"
			mem.args = func() []string {
				return []string{"-inf", memCSV, "-key", "domain", domain, "-auth_uri", domain, "-recv_timeout", "5000"}
			}
			time.Sleep(2 * time.Second)
			for _, srv := range servers {
				before := srv.mem()
				start := time.Now()
				const rate = 2000
				r := runLoad(t, srv, mem, "memory", 0, rate, p.memory/rate, nextPort(), false)
				add(r)
				time.Sleep(5 * time.Second)
				m := Memory{Server: srv.name, Bindings: r.OK, BeforeBytes: before, AfterBytes: srv.mem(), Seconds: time.Since(start).Seconds(),
					Measure: "VmRSS of the node"}
				if srv.name == "kamailio" {
					m.Measure = "summed PSS of Kamailio's processes"
				}
				rep.Memory = append(rep.Memory, m)
				t.Logf("memory %s: %d bindings: %.1f MB -> %.1f MB (%s)", m.Server, m.Bindings, mb(m.BeforeBytes), mb(m.AfterBytes), m.Measure)
			}
		})
	}
	t.Run("auth", func(t *testing.T) {
		servers := []server{startKamailio(t, true)}
		if !kamOnly {
			s, _ := startSipmesh(t, 1, true)
			servers = append(servers, s)
		}
		run(t, registerAuth, servers...)
		for _, srv := range servers {
			startUAS(t, srv)
		}
		run(t, call, servers...)
	})
	if p.mesh && !kamOnly {
		t.Run("3 nodes", func(t *testing.T) {
			s, _ := startSipmesh(t, 3, true)
			run(t, registerAuth, s)
			startUAS(t, s)
			run(t, call, s)
		})
	}

	rep.LoadAfter = loadavg()
	rep.Table = table(rep)
	fmt.Println(rep.Table)
	must(t, os.MkdirAll(p.out, 0o755))
	data, err := json.MarshalIndent(rep, "", "  ")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(p.out, "bench.json"), data, 0o644))
	must(t, os.WriteFile(filepath.Join(p.out, "bench.txt"), []byte(rep.Table), 0o644))
	must(t, writeChart(filepath.Join(p.out, "bench.png"), rep.Results))
	t.Logf("wrote %s/bench.json, bench.txt, bench.png", p.out)

	// The smoke run checks the harness: every scenario went through on
	// both servers without failures.
	if !p.full {
		for _, r := range rep.Results {
			if r.OK == 0 || r.Failed > 0 || r.RTTSamples == 0 || r.AchievedRate <= 0 {
				t.Errorf("smoke run: %s against %s: %d ok, %d failed, %d response times, achieved %.1f/s", r.Scenario, r.Server, r.OK, r.Failed, r.RTTSamples, r.AchievedRate)
			}
			// Where tcpdump could run (installed, CAP_NET_RAW), every
			// message was paired.
			if r.captured && (r.HopSamples < r.OK || r.HopP99ms <= 0 || r.WireSamples < r.OK || r.WireP99ms <= 0) {
				t.Errorf("smoke run: %s against %s: %d server latencies (p99 %.3f ms) and %d response times on the wire (p99 %.3f ms) for %d scenarios",
					r.Scenario, r.Server, r.HopSamples, r.HopP99ms, r.WireSamples, r.WireP99ms, r.OK)
			}
		}
		if want := 6; len(rep.Results) != want && !kamOnly {
			t.Errorf("smoke run: %d results, want 6 (3 scenarios × 2 servers)", len(rep.Results))
		}
	}
}

func all(m map[string]bool) bool {
	for _, v := range m {
		if !v {
			return false
		}
	}
	return true
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(data))
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func version(bin, flag string) string {
	out, _ := exec.Command(bin, flag).CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}
