// Package proctest runs real sipmesh processes on loopback for tests: it
// builds the binary once, issues certificates, writes configs, starts, stops
// and SIGKILLs nodes, and runs CLI commands against them.
//
// Each test package gives its clusters their own loopback /24 (127.0.X.0) so
// that packages running in parallel never share an address.
package proctest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/retry"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/sipmesh once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "sipmesh-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "sipmesh")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/sipmesh")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Eventually is retry.Eventually with what is being waited for in the
// failure message.
func Eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	retry.Eventually(t, timeout, func() error {
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// Cluster is a CA and the nodes started under it.
type Cluster struct {
	t      testing.TB
	Dir    string
	Domain string
	CA     *certs.CA
	Subnet string // "127.0.X."
	bin    string
	mu     sync.Mutex
	nodes  map[string]*Node
	nextIP int
}

// Node is one sipmesh process.
type Node struct {
	Name, IP, Config, Log string
	cmd                   *exec.Cmd
	done                  chan struct{}
}

// NewCluster creates a CA for domain in a temp dir. subnet is the test's own
// "127.0.X." prefix.
func NewCluster(t testing.TB, domain, subnet string) *Cluster {
	t.Helper()
	dir := t.TempDir()
	ca, err := certs.InitCA(dir, domain, "")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, Dir: dir, Domain: domain, CA: ca, Subnet: subnet, bin: Binary(t), nodes: map[string]*Node{}, nextIP: 11}
	t.Cleanup(c.killAll)
	return c
}

// IssueNode issues a node certificate NAME.crt/NAME.key into the cluster dir.
func (c *Cluster) IssueNode(name string, req certs.IssueRequest) {
	c.t.Helper()
	req.Name = name
	is, err := c.CA.Issue(req)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, _, err := is.WriteFiles(c.Dir, name); err != nil {
		c.t.Fatal(err)
	}
}

// NextIP hands out the subnet's next loopback address.
func (c *Cluster) NextIP() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ip := fmt.Sprintf("%s%d", c.Subnet, c.nextIP)
	c.nextIP++
	return ip
}

// WriteConfig writes NAME.yaml from a YAML body; %IP% is replaced by ip.
func (c *Cluster) WriteConfig(name, ip, body string) string {
	c.t.Helper()
	path := filepath.Join(c.Dir, name+".yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(body, "%IP%", ip)), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// DefaultConfig is a node config joining the given seeds (IPs). A node
// without seeds names itself: with no overlay.join at all it would ask the
// machine's resolver for _sipmesh._tcp, and tests stay on loopback.
func DefaultConfig(name string, seeds []string, extra string) string {
	join := []string{`"%IP%:7946"`}
	if len(seeds) > 0 {
		join = nil
	}
	for _, s := range seeds {
		join = append(join, fmt.Sprintf("%q", s+":7946"))
	}
	return fmt.Sprintf(`node: {address: "%%IP%%"}
tls: {ca: ca.crt, cert: %s.crt, key: %s.key, crl: ca.crl}
overlay: {join: [%s], timing: lan}
log: {level: debug}
%s`, name, name, strings.Join(join, ", "), extra)
}

// Start starts `sipmesh run --config NAME.yaml`.
func (c *Cluster) Start(name, ip, config string) *Node {
	c.t.Helper()
	n := &Node{Name: name, IP: ip, Config: config, Log: filepath.Join(c.Dir, name+".log")}
	c.start(n)
	c.mu.Lock()
	c.nodes[name] = n
	c.mu.Unlock()
	return n
}

func (c *Cluster) start(n *Node) {
	c.t.Helper()
	lf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	n.cmd = exec.Command(c.bin, "run", "--config", n.Config)
	n.cmd.Stdout, n.cmd.Stderr = lf, lf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func() { n.cmd.Wait(); lf.Close(); close(n.done) }()
}

// StartNode issues a certificate (all roles, dc1 unless req says otherwise),
// writes a default config joining seeds, and starts it.
func (c *Cluster) StartNode(name string, req certs.IssueRequest, seeds []string) *Node {
	c.t.Helper()
	ip := c.NextIP()
	req.IPs = append(req.IPs, net.ParseIP(ip))
	c.IssueNode(name, req)
	return c.Start(name, ip, c.WriteConfig(name, ip, DefaultConfig(name, seeds, "")))
}

// Node returns a started node.
func (c *Cluster) Node(name string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[name]
}

// Kill sends SIGKILL and waits for the process to die.
func (c *Cluster) Kill(name string) {
	n := c.Node(name)
	_ = n.cmd.Process.Kill()
	<-n.done
}

// Stop sends SIGTERM and waits up to 30 s (a node hands off for up to 20 s).
func (c *Cluster) Stop(name string) error {
	n := c.Node(name)
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
		return fmt.Errorf("%s did not stop on SIGTERM within 30 s", name)
	}
}

// Restart starts a stopped node again with the same config.
func (c *Cluster) Restart(name string) {
	c.t.Helper()
	c.start(c.Node(name))
}

// Exited reports whether the node's process has ended.
func (n *Node) Exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// Wait waits up to d for the process to end and returns its exit code.
func (n *Node) Wait(d time.Duration) (int, error) {
	select {
	case <-n.done:
		return n.cmd.ProcessState.ExitCode(), nil
	case <-time.After(d):
		return 0, fmt.Errorf("%s still running after %v", n.Name, d)
	}
}

// LogText returns what the node has logged so far.
func (n *Node) LogText() string {
	b, _ := os.ReadFile(n.Log)
	return string(b)
}

func (c *Cluster) killAll() {
	c.mu.Lock()
	nodes := make([]*Node, 0, len(c.nodes))
	for _, n := range c.nodes {
		nodes = append(nodes, n)
	}
	c.mu.Unlock()
	for _, n := range nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
	if c.t.Failed() {
		for _, n := range nodes {
			c.t.Logf("---- log of %s ----\n%s", n.Name, tail(n.LogText(), 60))
		}
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// CLI runs the sipmesh binary with args and returns stdout; stderr goes into
// the error.
func (c *Cluster) CLI(args ...string) (string, error) {
	cmd := exec.Command(c.bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("sipmesh %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// Member is what `sipmesh members --json` prints per member.
type Member struct {
	Name       string   `json:"name"`
	Datacenter string   `json:"datacenter"`
	Roles      []string `json:"roles"`
	State      string   `json:"state"`
	Address    string   `json:"address"`
}

// Members asks a node through `sipmesh members --json --config`.
func (c *Cluster) Members(name string) ([]Member, error) {
	out, err := c.CLI("members", "--json", "--config", c.Node(name).Config)
	if err != nil {
		return nil, err
	}
	var ms []Member
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		return nil, fmt.Errorf("members --json: %v: %q", err, out)
	}
	return ms, nil
}

// AliveSet returns the names of members the node sees alive, comma-joined
// in name order.
func (c *Cluster) AliveSet(name string) (string, error) {
	ms, err := c.Members(name)
	if err != nil {
		return "", err
	}
	var alive []string
	for _, m := range ms {
		if m.State == "alive" {
			alive = append(alive, m.Name)
		}
	}
	return strings.Join(alive, ","), nil
}

// WaitAlive waits until every listed observer sees exactly want alive.
func (c *Cluster) WaitAlive(timeout time.Duration, want string, observers ...string) {
	c.t.Helper()
	Eventually(c.t, timeout, "members alive = "+want, func() error {
		for _, o := range observers {
			got, err := c.AliveSet(o)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s sees alive %q", o, got)
			}
		}
		return nil
	})
}

// Buffer is a bytes.Buffer safe for a process writing while a test reads.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
