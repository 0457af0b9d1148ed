package bench

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/proctest"
	"github.com/sipmesh/sipmesh/node"
)

const (
	domain   = "example.test"
	subnet   = "127.0.70."
	kamIP    = subnet + "2"
	workers  = 2 // Kamailio children and sipmesh GOMAXPROCS
	loadUsrs = 2000
)

// server is one system under test.
type server struct {
	name    string   // "kamailio", "sipmesh", "sipmesh-3"
	targets []string // where load enters, "IP:5060"
	uasPort int      // the callee's SIPp port on uasIP
	cpu     func() float64
	mem     func() int64 // bytes: RSS (sipmesh node) or summed PSS (Kamailio)
	check   func() error // nil while the server's processes are up
	// profile writes a CPU profile of the first node over secs seconds to
	// path (nil: the server has none).
	profile func(secs int, path string) error
}

func here() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// user is a subscriber known to both servers.
type user struct{ name, password string }

func subscribers() []user {
	us := []user{{"uas", "uas-pw"}, {"caller", "caller-pw"}}
	for i := 0; i < loadUsrs; i++ {
		us = append(us, user{fmt.Sprintf("load%d", i), fmt.Sprintf("load%d-pw", i)})
	}
	return us
}

// startKamailio starts Kamailio in the foreground with its own run
// folder; it is stopped when t ends.
func startKamailio(t testing.TB, auth bool) server {
	t.Helper()
	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatal(err)
	}
	var sub strings.Builder
	sub.WriteString("id(int,auto) username(string) domain(string) password(string)\n")
	for i, u := range subscribers() {
		fmt.Fprintf(&sub, "%d:%s:%s:%s\n", i+1, u.name, domain, u.password)
	}
	must(t, os.WriteFile(filepath.Join(db, "subscriber"), []byte(sub.String()), 0o644))
	must(t, os.WriteFile(filepath.Join(db, "version"), []byte("table_name(string) table_version(int)\nsubscriber:7\n"), 0o644))
	tmpl, err := os.ReadFile(filepath.Join(here(), "kamailio.cfg"))
	must(t, err)
	cfg := strings.NewReplacer("@IP@", kamIP, "@PORT@", "5060", "@DB@", db, "@CHILDREN@", strconv.Itoa(workers)).Replace(string(tmpl))
	cfgPath := filepath.Join(dir, "kamailio.cfg")
	must(t, os.WriteFile(cfgPath, []byte(cfg), 0o644))

	args := []string{"-DD", "-E", "-m", "512", "-M", "8", "-f", cfgPath, "-P", filepath.Join(dir, "kamailio.pid"), "-Y", dir}
	if auth {
		args = append(args, "-A", "WITH_AUTH")
	}
	logPath := filepath.Join(dir, "kamailio.log")
	lf, err := os.Create(logPath)
	must(t, err)
	cmd := exec.Command("kamailio", args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	must(t, cmd.Start())
	done := make(chan struct{})
	go func() { cmd.Wait(); lf.Close(); close(done) }()
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		// SIGTERM makes the main process stop its children; the process
		// group (ours: Setpgid) is SIGKILLed if that takes too long.
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		syscall.Kill(-pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("kamailio log:\n%s", tail(string(data), 40))
		}
	})
	if err := waitSIP(kamIP+":5060", 10*time.Second, done); err != nil {
		data, _ := os.ReadFile(logPath)
		t.Fatalf("kamailio: %v\n%s", err, tail(string(data), 40))
	}
	tree := func() []int { return append([]int{pid}, childrenOf(pid)...) }
	return server{
		name:    "kamailio",
		targets: []string{kamIP + ":5060"},
		uasPort: 5070,
		cpu:     func() float64 { return cpuOf(tree()) },
		mem:     func() int64 { return pssOf(tree()) },
		check: func() error {
			select {
			case <-done:
				data, _ := os.ReadFile(logPath)
				return fmt.Errorf("kamailio exited (%v); its log ends:\n%s", cmd.ProcessState, tail(string(data), 30))
			default:
				return nil
			}
		},
	}
}

// startSipmesh starts n sipmesh nodes (proxy + registrar) on 127.0.70.11…;
// they are killed when t ends.
func startSipmesh(t testing.TB, n int, auth bool) (server, *proctest.Cluster) {
	t.Helper()
	c := proctest.NewCluster(t, domain, subnet)
	// The same retransmission window as Kamailio's wt_timer (kamailio.cfg).
	sipKeys := `sip: {listen: ["udp://%IP%:5060"], transaction_wait: 5`
	if auth {
		var u strings.Builder
		u.WriteString("users:\n")
		for _, s := range subscribers() {
			fmt.Fprintf(&u, "  - {user: %s, domain: %s, password: %s}\n", s.name, domain, s.password)
		}
		must(t, os.WriteFile(filepath.Join(c.Dir, "users.yaml"), []byte(u.String()), 0o644))
		// The same auth mode as Kamailio's, whose auth_challenge offers
		// MD5 alone (the auth module's default algorithm). With the
		// node's default second challenge, SHA-256, each 401 was 165
		// bytes longer and SIPp spent some 10% more CPU per
		// REGISTER-auth against sipmesh than against Kamailio.
		sipKeys += ", users: users.yaml, digest_algorithms: [MD5]"
	}
	sipKeys += "}"
	var names, ips []string
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("n%d", i)
		ip := c.NextIP()
		c.IssueNode(name, certs.IssueRequest{IPs: []net.IP{net.ParseIP(ip)}})
		body := proctest.DefaultConfig(name, ips[:min(len(ips), 1)], sipKeys)
		body = strings.Replace(body, "log: {level: debug}", "log: {level: info}", 1)
		body = strings.Replace(body, `node: {address: "%IP%"}`, `node: {address: "%IP%", roles: [proxy, registrar]}`, 1)
		c.Start(name, ip, c.WriteConfig(name, ip, body))
		names, ips = append(names, name), append(ips, ip)
	}
	if n > 1 {
		c.WaitAlive(40*time.Second, strings.Join(names, ","), names...)
	}
	var targets []string
	for _, ip := range ips {
		if err := waitSIP(ip+":5060", 20*time.Second, nil); err != nil {
			t.Fatalf("sipmesh %s: %v\n%s", ip, err, tail(c.Node(names[0]).LogText(), 40))
		}
		targets = append(targets, ip+":5060")
	}
	name := "sipmesh"
	if n > 1 {
		name = fmt.Sprintf("sipmesh-%d", n)
	}
	first := c.Node(names[0])
	return server{
		name:    name,
		targets: targets,
		uasPort: 5071 + n,
		cpu:     func() float64 { return cpuOf(pidsWith(c.Dir)) },
		mem: func() int64 {
			return rssOf(pidsWith(first.Config))
		},
		profile: func(secs int, path string) error { return fetchProfile(c, first, secs, path) },
		check: func() error {
			for _, name := range names {
				if n := c.Node(name); n.Exited() {
					return fmt.Errorf("sipmesh node %s exited; its log ends:\n%s", name, tail(n.LogText(), 30))
				}
			}
			return nil
		},
	}, c
}

// waitSIP sends OPTIONS to addr until anything answers.
func waitSIP(addr string, d time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(d)
	var last error
	for i := 0; time.Now().Before(deadline); i++ {
		select {
		case <-exited:
			return fmt.Errorf("exited before answering SIP on %s", addr)
		default:
		}
		conn, err := net.ListenPacket("udp", subnet+"100:0")
		if err != nil {
			return err
		}
		local := conn.LocalAddr().String()
		msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKprobe%d%d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:probe@%s>;tag=p%d\r\nTo: <sip:%s>\r\nCall-ID: probe-%d-%d@bench\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			domain, local, time.Now().UnixNano(), i, domain, i, domain, time.Now().UnixNano(), i)
		raddr, _ := net.ResolveUDPAddr("udp", addr)
		conn.WriteTo([]byte(msg), raddr)
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 4096)
		nr, _, err := conn.ReadFrom(buf)
		conn.Close()
		if err == nil && bytes.HasPrefix(buf[:nr], []byte("SIP/2.0 ")) {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no answer to OPTIONS from %s within %v: %v", addr, d, last)
}

// procStat returns the fields of /proc/PID/stat after the command name.
func procStat(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return nil
	}
	return strings.Fields(s[i+2:])
}

func allPids() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func childrenOf(parent int) []int {
	var out []int
	for _, pid := range allPids() {
		if f := procStat(pid); len(f) > 1 && f[1] == strconv.Itoa(parent) {
			out = append(out, pid)
		}
	}
	return out
}

// pidsWith returns the processes whose command line contains s.
func pidsWith(s string) []int {
	var out []int
	for _, pid := range allPids() {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && bytes.Contains(cmd, []byte(s)) && !bytes.Contains(cmd, []byte("sipp")) {
			out = append(out, pid)
		}
	}
	return out
}

// cpuOf sums utime+stime (all threads) of pids, in seconds.
func cpuOf(pids []int) float64 {
	total := 0.0
	for _, pid := range pids {
		if f := procStat(pid); len(f) > 12 {
			ut, _ := strconv.ParseFloat(f[11], 64)
			st, _ := strconv.ParseFloat(f[12], 64)
			total += (ut + st) / 100 // USER_HZ
		}
	}
	return total
}

// machineBusy returns the CPU time the machine spent busy and in total
// (all CPUs, USER_HZ ticks) from /proc/stat; steal, other guests' time,
// counts as neither.
func machineBusy() (busy, total float64) {
	data, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:8] { // user nice system idle iowait irq softirq
		n, _ := strconv.ParseFloat(v, 64)
		total += n
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, total
}

// settle waits, up to limit, until the machine is nearly idle (under 15% of
// its CPUs busy over 300 ms), and reports how long it waited and whether
// it got there. A run that follows a saturated one would otherwise share
// the CPUs with the previous server still answering retransmissions, or a
// mesh still replicating what the last run registered.
func settle(limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	for {
		b0, t0 := machineBusy()
		time.Sleep(300 * time.Millisecond)
		b1, t1 := machineBusy()
		if t1 <= t0 || (b1-b0)/(t1-t0) < 0.15 {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
	}
}

func statusKB(pid int, key string) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, key+":") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v
			}
		}
	}
	return 0
}

func rssOf(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		total += statusKB(pid, "VmRSS") * 1024
	}
	return total
}

// pssOf sums the proportional set size of pids, which counts Kamailio's
// shared memory once across its processes.
func pssOf(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "Pss:") {
				f := strings.Fields(l)
				v, _ := strconv.ParseInt(f[1], 10, 64)
				total += v * 1024
			}
		}
	}
	return total
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// fetchProfile saves the CPU profile of node n over secs seconds to path,
// and its allocation profile (since the start) next to it, asked over the
// admin API with the node's own certificate.
func fetchProfile(c *proctest.Cluster, n *proctest.Node, secs int, path string) error {
	mat, err := certs.Load(filepath.Join(c.Dir, "ca.crt"), filepath.Join(c.Dir, n.Name+".crt"), filepath.Join(c.Dir, n.Name+".key"), "")
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: mat.ClientConfig("", nil)}, Timeout: time.Duration(secs+10) * time.Second}
	base := fmt.Sprintf("https://%s:%d/debug/pprof/", n.IP, node.DefaultAdminPort)
	if err := saveURL(hc, fmt.Sprintf("%sprofile?seconds=%d", base, secs), path); err != nil {
		return err
	}
	return saveURL(hc, base+"allocs", strings.TrimSuffix(path, ".pprof")+".allocs.pprof")
}

func saveURL(hc *http.Client, url, path string) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
