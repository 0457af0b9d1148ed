package proxy_test

import (
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

// BenchmarkSIPLoad measures with SIPp on loopback, on a 3-node mesh
// (127.0.41.0/24 without authentication, 127.0.42.0/24 with): the highest REGISTER rate and call rate (of a ramp)
// that completes with fewer than 1% failed transactions, with and without
// digest authentication, entering one node and all nodes; and the CPU
// seconds the nodes spent per 1,000 REGISTERs or calls at that rate.
// SIPMESH_BENCH_SECONDS sets the length of one step (default 20).
//
//	go test -run '^$' -bench SIPLoad -benchtime 1x ./roles/proxy/
func BenchmarkSIPLoad(b *testing.B) {
	if _, err := exec.LookPath("sipp"); err != nil {
		b.Skip("sipp is not installed")
	}
	secs := 20
	if v, err := strconv.Atoi(os.Getenv("SIPMESH_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	for _, auth := range []bool{false, true} {
		keys := ""
		if auth {
			keys = "users: users.yaml"
		}
		subnet := "127.0.41."
		if auth {
			subnet = "127.0.42."
		}
		c, names := startMeshOn(b, subnet, keys)
		csv := filepath.Join(c.Dir, "load.csv")
		var lines []string
		lines = append(lines, "SEQUENTIAL")
		for i := 0; i < 2000; i++ {
			lines = append(lines, fmt.Sprintf("load%d;[authentication username=load%d password=load%d-pw]", i, i, i))
		}
		if err := os.WriteFile(csv, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			b.Fatal(err)
		}
		if auth {
			var u strings.Builder
			u.WriteString("users:\n")
			for _, n := range []string{"uas", "caller"} {
				fmt.Fprintf(&u, "  - {user: %s, domain: %s, password: %s-pw}\n", n, domain, n)
			}
			for i := 0; i < 2000; i++ {
				fmt.Fprintf(&u, "  - {user: load%d, domain: %s, password: load%d-pw}\n", i, domain, i)
			}
			os.WriteFile(filepath.Join(c.Dir, "users.yaml"), []byte(u.String()), 0o644)
			time.Sleep(3 * time.Second) // the users file is reloaded on change
		}
		ips := []string{c.Node(names[0]).IP, c.Node(names[1]).IP, c.Node(names[2]).IP}
		for _, entry := range []string{"one node", "all nodes"} {
			targets := ips[:1]
			if entry == "all nodes" {
				targets = ips
			}
			b.Run(fmt.Sprintf("REGISTER auth=%v %s", auth, entry), func(b *testing.B) {
				ramp(b, c, secs, []int{500, 1000, 2000, 3000, 4000, 5000, 6000}, func(rate int, step int) []*sipp {
					var ss []*sipp
					for i, n := range targets {
						ip := fmt.Sprintf("%s%d", subnet, 150+i)
						ss = append(ss, startLoad(b, rate/len(targets)*secs, "-sf", scenario("register_load.xml"), "-inf", csv,
							"-key", "domain", domain, "-auth_uri", domain, "-r", strconv.Itoa(rate/len(targets)),
							"-m", strconv.Itoa(rate/len(targets)*secs), "-l", strconv.Itoa(rate), "-i", ip,
							"-p", strconv.Itoa(6000+step*10+i), "-mi", ip, "-mp", strconv.Itoa(17000+step*10+i*2),
							"-timeout", strconv.Itoa(secs+20)+"s", "-recv_timeout", "5000", "-default_behaviors", "-abortunexp", n+":5060"))
					}
					return ss
				})
			})
		}
		if !auth {
			continue
		}
		phone{user: "uas", ip: subnet + "101", port: "5070", ooc: "uas_ooc.xml", mediaPort: 16000, answerDelay: 1}.start(b, ips[0])
		waitBinding(b, c, names[0], "uas@"+domain, subnet+"101", 1)
		for _, entry := range []string{"one node", "all nodes"} {
			targets := ips[:1]
			if entry == "all nodes" {
				targets = ips
			}
			b.Run(fmt.Sprintf("calls auth=true %s", entry), func(b *testing.B) {
				ramp(b, c, secs, []int{100, 200, 300, 400, 500, 600, 800}, func(rate int, step int) []*sipp {
					var ss []*sipp
					for i, n := range targets {
						ip := fmt.Sprintf("%s%d", subnet, 160+i)
						ss = append(ss, startLoad(b, rate/len(targets)*secs, "-sf", scenario("uac_auth.xml"), "-s", "uas", "-au", "caller", "-ap", "caller-pw",
							"-key", "caller", "caller", "-key", "domain", domain, "-auth_uri", "uas@"+domain,
							"-r", strconv.Itoa(rate/len(targets)), "-m", strconv.Itoa(rate/len(targets)*secs), "-l", strconv.Itoa(rate*5),
							"-i", ip, "-p", strconv.Itoa(7000+step*10+i), "-mi", ip, "-mp", strconv.Itoa(18000+step*10+i*2),
							"-timeout", strconv.Itoa(secs+30)+"s", "-recv_timeout", "10000", n+":5060"))
					}
					return ss
				})
			})
		}
	}
}

// startLoad starts a SIPp client making calls calls.
func startLoad(b *testing.B, calls int, args ...string) *sipp {
	s := startSipp(b, args...)
	s.calls = calls
	return s
}

var (
	reSuccess = regexp.MustCompile(`Successful call\s*\|\s*\d+\s*\|\s*(\d+)`)
	reFailed  = regexp.MustCompile(`Failed call\s*\|\s*\d+\s*\|\s*(\d+)`)
)

// ramp runs run at each rate for secs and reports the highest rate with
// fewer than 1% failures.
func ramp(b *testing.B, c *proctest.Cluster, secs int, rates []int, run func(rate, step int) []*sipp) {
	best, bestCPU := 0, 0.0
	for step, rate := range rates {
		cpu0 := nodesCPU(c)
		start := time.Now()
		var ok, failed, want int
		for _, s := range run(rate, step) {
			want += s.calls
			s.wait(time.Duration(secs+60) * time.Second)
			out := s.out.String()
			if m := reSuccess.FindAllStringSubmatch(out, -1); len(m) > 0 {
				n, _ := strconv.Atoi(m[len(m)-1][1])
				ok += n
			}
			if m := reFailed.FindAllStringSubmatch(out, -1); len(m) > 0 {
				n, _ := strconv.Atoi(m[len(m)-1][1])
				failed += n
			}
		}
		took := time.Since(start)
		cpu := nodesCPU(c) - cpu0
		b.Logf("rate %d/s for %ds: %d ok, %d failed, in %v, nodes' CPU %.1fs (%.2fs per 1000)", rate, secs, ok, failed, took.Round(time.Millisecond), cpu, cpu*1000/float64(max(ok, 1)))
		// Passing: under 1% failed, and the rate was held (the run did
		// not stretch because the mesh or SIPp fell behind).
		if ok+failed == 0 || float64(failed) > 0.01*float64(want) || ok < want*99/100 || took > time.Duration(secs)*time.Second*13/10+2*time.Second {
			break
		}
		best, bestCPU = rate, cpu*1000/float64(ok)
	}
	b.ReportMetric(float64(best), "max/s")
	b.ReportMetric(bestCPU, "cpu-s/1000")
}

// nodesCPU is the user+system CPU seconds of the cluster's node processes.
func nodesCPU(c *proctest.Cluster) float64 {
	total := 0.0
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmd, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(cmd), c.Dir) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(fields) > 13 {
			ut, _ := strconv.ParseFloat(fields[11], 64)
			st, _ := strconv.ParseFloat(fields[12], 64)
			total += (ut + st) / 100 // USER_HZ
		}
	}
	return total
}
