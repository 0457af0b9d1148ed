package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/node"
)

// devCluster is the domain of the local development cluster.
const devCluster = "sipmesh.test"

func cmdDev(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "dev", "[--nodes N] [--dir DIR] [--first-ip IP]")
	nodes := fs.Int("nodes", 3, "number of nodes")
	dir := fs.String("dir", ".sipmesh-dev", "folder for the CA, certificates, configs and logs (kept between runs)")
	firstIP := fs.String("first-ip", "127.0.0.11", "loopback IP of the first node; the next nodes take the following IPs")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *nodes < 1 || *nodes > 50 {
		return fmt.Errorf("--nodes %d: give 1 to 50", *nodes)
	}
	ip, err := netip.ParseAddr(*firstIP)
	if err != nil || !ip.IsLoopback() || !ip.Is4() {
		return fmt.Errorf("--first-ip %q: give an IPv4 loopback address such as 127.0.0.11", *firstIP)
	}
	absDir, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	configs, err := prepareDev(absDir, ip, *nodes)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find the sipmesh binary to start nodes: %w", err)
	}
	procs := make([]*devProc, 0, len(configs))
	defer func() { stopDev(env, procs) }()
	exited := make(chan *devProc, len(configs))
	for i, cfg := range configs {
		p, err := startDevNode(exe, fmt.Sprintf("n%d", i+1), cfg, absDir, exited)
		if err != nil {
			return err
		}
		procs = append(procs, p)
	}
	first := filepath.Join(absDir, "n1.yaml")
	ms, err := waitMembers(ctx, first, len(configs), exited)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "sipmesh dev cluster %q: %d nodes up (logs in %s/*.log)\n\n", devCluster, len(configs), *dir)
	printMembers(env.stdout, ms)
	admin := filepath.Join(*dir, "admin")
	conn := fmt.Sprintf("--node %s --ca %s --cert %s.crt --key %s.key", ip, filepath.Join(*dir, certs.CACertFile), admin, admin)
	fmt.Fprintf(env.stdout, `
Inspect the mesh (as the operator "admin"):
  sipmesh members %[1]s
  sipmesh ring %[1]s
  sipmesh lookup sip:alice@%[2]s %[1]s
or with a node's own identity:
  sipmesh members --config %[3]s --json

Subscribers (domain %[2]s, any node's SIP address as outbound proxy, UDP or TCP port 5060):
%[7]s
Register bob with sipp and answer calls, then call him from another node:
  sipp -sf scripts/sipp/reg_then_uas.xml -oocsf scripts/sipp/uas_ooc.xml -m 1 -s bob -au bob -ap bob-secret \
       -key domain %[2]s -key contact_host 127.0.0.1 -key contact_port 5070 -key expires 3600 -key tag bob \
       -auth_uri %[2]s -i 127.0.0.1 -p 5070 %[6]s:5060
  sipp -sf scripts/sipp/uac_auth.xml -s bob -au alice -ap alice-secret -key caller alice -key domain %[2]s \
       -auth_uri bob@%[2]s -m 10 -i 127.0.0.1 -p 5071 %[8]s:5060

Ask the mesh's DNS what phones see (RFC 3263):
  dig @%[6]s -p 5353 NAPTR %[2]s
  dig @%[6]s -p 5353 SRV _sipmesh._tcp.%[2]s
  sipmesh dns records %[1]s

Kill a node and watch the others notice:  kill -9 %[4]d   (n%[5]d)
Press Ctrl-C to stop the cluster.
`, conn, devCluster, filepath.Join(*dir, "n1.yaml"), procs[len(procs)-1].cmd.Process.Pid, len(procs), ip, devUserLines(), lastIP(ip, len(procs)))
	select {
	case <-ctx.Done():
		fmt.Fprintln(env.stdout, "\nstopping the cluster…")
		return nil
	case p := <-exited:
		return fmt.Errorf("node %s exited: %v; see %s", p.name, p.err, p.log)
	}
}

// prepareDev writes (or keeps) the CA, certificates and configs.
func prepareDev(dir string, first netip.Addr, n int) ([]string, error) {
	ca, err := certs.LoadCA(dir)
	if err != nil {
		if ca, err = certs.InitCA(dir, devCluster, ""); err != nil {
			return nil, err
		}
	}
	if ca.Cluster != devCluster {
		return nil, fmt.Errorf("%s holds a CA of cluster %q, not %q: use another --dir", dir, ca.Cluster, devCluster)
	}
	if _, err := os.Stat(filepath.Join(dir, "admin.crt")); err != nil {
		is, err := ca.Issue(certs.IssueRequest{Name: "admin", Operator: true})
		if err != nil {
			return nil, err
		}
		if _, _, err := is.WriteFiles(dir, "admin"); err != nil {
			return nil, err
		}
	}
	if err := writeDevUsers(dir); err != nil {
		return nil, err
	}
	addrs := make([]string, n)
	ip := first
	for i := range addrs {
		addrs[i] = ip.String()
		ip = ip.Next()
	}
	var configs []string
	for i, addr := range addrs {
		name := fmt.Sprintf("n%d", i+1)
		if _, err := os.Stat(filepath.Join(dir, name+".crt")); err != nil {
			is, err := ca.Issue(certs.IssueRequest{Name: name, IPs: []net.IP{net.ParseIP(addr)}})
			if err != nil {
				return nil, err
			}
			if _, _, err := is.WriteFiles(dir, name); err != nil {
				return nil, err
			}
		}
		// A lone node names itself rather than asking DNS for seeds.
		join := []string{fmt.Sprintf("%q", addr+":7946")}
		if len(addrs) > 1 {
			join = nil
		}
		for j, a := range addrs {
			if j != i && j < 3 {
				join = append(join, fmt.Sprintf("%q", a+":7946"))
			}
		}
		cfg := fmt.Sprintf(`# written by 'sipmesh dev'
node:
  address: %s
tls: {ca: ca.crt, cert: %s.crt, key: %s.key, crl: ca.crl}
overlay:
  join: [%s]
  timing: lan
  replicas: 2
dns:
  listen: "%s:5353"            # embedded authoritative server for %s
sip:
  listen: ["udp://%s:5060", "tcp://%s:5060"]
  users: users.yaml
`, addr, name, name, strings.Join(join, ", "), addr, devCluster, addr, addr)
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		configs = append(configs, path)
	}
	return configs, nil
}

// devUsers are the dev cluster's subscribers: user, password.
var devUsers = [][2]string{{"alice", "alice-secret"}, {"bob", "bob-secret"}, {"carol", "carol-secret"}}

// writeDevUsers writes users.yaml (sip.users) unless it exists, so that an
// operator's edits survive a restart of the dev cluster.
func writeDevUsers(dir string) error {
	path := filepath.Join(dir, "users.yaml")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	var b strings.Builder
	b.WriteString("# subscribers of the dev cluster; nodes reload this file on change\nusers:\n")
	for _, u := range devUsers {
		fmt.Fprintf(&b, "  - {user: %s, domain: %s, password: %s}\n", u[0], devCluster, u[1])
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

type devProc struct {
	name, log string
	cmd       *exec.Cmd
	err       error
	done      chan struct{}
}

func startDevNode(exe, name, cfg, dir string, exited chan<- *devProc) (*devProc, error) {
	logPath := filepath.Join(dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "run", "--config", cfg)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Own process group: the terminal's Ctrl-C reaches only dev, which then
	// stops the nodes in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &devProc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
		exited <- p
	}()
	return p, nil
}

// waitMembers polls the first node until it sees want alive members.
func waitMembers(ctx context.Context, config string, want int, exited <-chan *devProc) ([]node.MemberJSON, error) {
	t, err := node.TargetFromConfig(config)
	if err != nil {
		return nil, err
	}
	t.RequestTimeout = time.Second
	cl, err := node.NewAdminClient(t)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ms, err := cl.Members(ctx)
		alive := 0
		for _, m := range ms {
			if m.State == "alive" {
				alive++
			}
		}
		if err == nil && alive == want {
			return ms, nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("%d of %d members alive", alive, want)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case p := <-exited:
			return nil, fmt.Errorf("node %s exited: %v; see %s", p.name, p.err, p.log)
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("the cluster did not form within 30 s: %v", last)
}

// stopDev sends SIGTERM to every node (they leave the mesh gracefully) and
// kills those still running after 10 s.
func stopDev(env *cliEnv, procs []*devProc) {
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			fmt.Fprintf(env.stderr, "node %s did not stop in 10 s; killing it\n", p.name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

func devUserLines() string {
	var b strings.Builder
	for _, u := range devUsers {
		fmt.Fprintf(&b, "  %-6s password %s\n", u[0], u[1])
	}
	return b.String()
}

// lastIP is the address of the last of n nodes starting at first.
func lastIP(first netip.Addr, n int) netip.Addr {
	for i := 1; i < n; i++ {
		first = first.Next()
	}
	return first
}
