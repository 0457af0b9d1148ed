package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/proctest"
)

// Each test takes its own loopback /24 (127.0.2X.0) so a slow teardown of
// one never collides with the next.

func startThree(t *testing.T, subnet string) *proctest.Cluster {
	t.Helper()
	c := proctest.NewCluster(t, "example.test", subnet)
	first := c.NextIP()
	c.IssueNode("n1", certs.IssueRequest{})
	cfg := strings.Replace(proctest.DefaultConfig("n1", nil, `metrics: {listen: "%IP%:9100"}`), "log: {level: debug}", "log: {level: debug, format: json}", 1)
	c.Start("n1", first, c.WriteConfig("n1", first, cfg))
	c.StartNode("n2", certs.IssueRequest{}, []string{first})
	c.StartNode("n3", certs.IssueRequest{}, []string{first})
	return c
}

func TestThreeNodesFormMeshWithin5s(t *testing.T) {
	c := startThree(t, "127.0.21.")
	c.WaitAlive(5*time.Second, "n1,n2,n3", "n1", "n2", "n3")
	ms, err := c.Members("n2")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Datacenter != "dc1" || len(m.Roles) != 4 || !strings.HasPrefix(m.Address, "127.0.21.") {
			t.Errorf("member %+v: want datacenter dc1, 4 roles, a 127.0.21.x address", m)
		}
	}
	// Every node computes the same owner for the same key.
	owners := map[string]bool{}
	for _, n := range []string{"n1", "n2", "n3"} {
		out, err := c.CLI("lookup", "sip:alice@example.test", "--json", "--config", c.Node(n).Config)
		if err != nil {
			t.Fatal(err)
		}
		var lk struct{ Key, Owner string }
		if err := json.Unmarshal([]byte(out), &lk); err != nil {
			t.Fatal(err)
		}
		if lk.Key != "alice@example.test" || lk.Owner == "" {
			t.Fatalf("lookup on %s: %s", n, out)
		}
		owners[lk.Owner] = true
	}
	if len(owners) != 1 {
		t.Fatalf("nodes disagree on the owner: %v", owners)
	}
	// Metrics for scrapers on the plain listener; JSON logs by config.
	resp, err := http.Get("http://" + c.Subnet + "11:9100/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`sipmesh_overlay_members{state="alive"} 3`, "sipmesh_overlay_gossip_sent_bytes_total", "sipmesh_overlay_transport_connections"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if first := strings.SplitN(c.Node("n1").LogText(), "\n", 2)[0]; !strings.HasPrefix(first, "{") {
		t.Errorf("log.format json: first log line %q", first)
	}
	// The relay role runs: its session list answers (empty).
	if out, err := c.CLI("relay", "sessions", "--json", "--config", c.Node("n2").Config); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("relay sessions: %v %q", err, out)
	}
	// Human output is an aligned table.
	out, err := c.CLI("members", "--config", c.Node("n1").Config)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") || strings.Index(lines[1], "dc1") != strings.Index(lines[0], "DATACENTER") {
		t.Fatalf("members table not aligned:\n%s", out)
	}
}

func ringMembers(t *testing.T, c *proctest.Cluster, observer, role string) ([]string, error) {
	out, err := c.CLI("ring", "--role", role, "--json", "--config", c.Node(observer).Config)
	if err != nil {
		return nil, err
	}
	var rg struct {
		Partitions int
		Roles      map[string][]struct {
			Name       string
			Partitions int
			Share      float64
		}
	}
	if err := json.Unmarshal([]byte(out), &rg); err != nil {
		return nil, err
	}
	var names []string
	total := 0
	for _, m := range rg.Roles[role] {
		names = append(names, m.Name)
		total += m.Partitions
	}
	if len(names) > 0 && total != rg.Partitions {
		return nil, fmt.Errorf("ring partitions add up to %d, want %d", total, rg.Partitions)
	}
	return names, nil
}

func TestKilledNodeIsDeadLeavesRingsAndRejoins(t *testing.T) {
	c := startThree(t, "127.0.22.")
	c.WaitAlive(10*time.Second, "n1,n2,n3", "n1", "n2", "n3")
	killed := time.Now()
	c.Kill("n3")
	proctest.Eventually(t, 10*time.Second, "n3 dead and off the rings", func() error {
		for _, o := range []string{"n1", "n2"} {
			ms, err := c.Members(o)
			if err != nil {
				return err
			}
			for _, m := range ms {
				if m.Name == "n3" && m.State != "dead" {
					return fmt.Errorf("%s sees n3 %s", o, m.State)
				}
			}
			ring, err := ringMembers(t, c, o, "registrar")
			if err != nil {
				return err
			}
			if strings.Join(ring, ",") != "n1,n2" {
				return fmt.Errorf("%s's registrar ring: %v", o, ring)
			}
		}
		return nil
	})
	t.Logf("SIGKILLed node dead on both survivors and off the rings after %v", time.Since(killed).Round(100*time.Millisecond))
	c.Restart("n3")
	c.WaitAlive(10*time.Second, "n1,n2,n3", "n1", "n2", "n3")
}

func TestGracefulLeave(t *testing.T) {
	c := startThree(t, "127.0.23.")
	c.WaitAlive(10*time.Second, "n1,n2,n3", "n1", "n2", "n3")
	if err := c.Stop("n2"); err != nil {
		t.Fatal(err)
	}
	if code, _ := c.Node("n2").Wait(0); code != 0 {
		t.Fatalf("n2 exited with %d after SIGTERM, want 0", code)
	}
	proctest.Eventually(t, 5*time.Second, "n2 left", func() error {
		ms, err := c.Members("n1")
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Name == "n2" && m.State != "left" {
				return fmt.Errorf("n1 sees n2 %s", m.State)
			}
		}
		return nil
	})
}

// A revocation written to one node's CRL file reaches every node through
// the mesh and cuts the revoked node off, with no restart.
func TestRevocationRemovesRunningNode(t *testing.T) {
	c := proctest.NewCluster(t, "example.test", "127.0.24.")
	crl, err := os.ReadFile(filepath.Join(c.Dir, certs.CRLFile))
	if err != nil {
		t.Fatal(err)
	}
	var seeds []string
	for i, name := range []string{"n1", "n2", "n3"} {
		ip := c.NextIP()
		c.IssueNode(name, certs.IssueRequest{})
		// Each node watches its own copy of the CRL.
		if err := os.WriteFile(filepath.Join(c.Dir, name+".crl"), crl, 0o644); err != nil {
			t.Fatal(err)
		}
		body := strings.Replace(proctest.DefaultConfig(name, seeds, ""), "crl: ca.crl", "crl: "+name+".crl", 1)
		c.Start(name, ip, c.WriteConfig(name, ip, body))
		if i == 0 {
			seeds = []string{ip}
		}
	}
	c.WaitAlive(10*time.Second, "n1,n2,n3", "n1", "n2", "n3")
	if out, err := c.CLI("cert", "revoke", "--ca", c.Dir, "n3"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	newCRL, err := os.ReadFile(filepath.Join(c.Dir, certs.CRLFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "n1.crl"), newCRL, 0o644); err != nil {
		t.Fatal(err)
	}
	c.WaitAlive(15*time.Second, "n1,n2", "n1", "n2")
	if !strings.Contains(c.Node("n2").LogText(), "revoked") {
		t.Error("n2 did not log the revocation it learned from the mesh")
	}
	if c.Node("n1").Exited() || c.Node("n2").Exited() {
		t.Fatal("a node restarted or exited")
	}
}

// A node whose certificate comes from another CA never appears, and the
// refusing node says why.
func TestRogueFromAnotherCANeverAppears(t *testing.T) {
	c := proctest.NewCluster(t, "example.test", "127.0.25.")
	n1 := c.StartNode("n1", certs.IssueRequest{}, nil)
	c.StartNode("n2", certs.IssueRequest{}, []string{n1.IP})
	c.WaitAlive(10*time.Second, "n1,n2", "n1", "n2")

	rogueDir := t.TempDir()
	rca, err := certs.InitCA(rogueDir, "example.test", "")
	if err != nil {
		t.Fatal(err)
	}
	is, err := rca.Issue(certs.IssueRequest{Name: "rogue"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := is.WriteFiles(rogueDir, "rogue"); err != nil {
		t.Fatal(err)
	}
	// The rogue knows the cluster's (public) CA certificate, so it gets as
	// far as presenting its own certificate: n1 must refuse that.
	bundle(t, filepath.Join(rogueDir, "ca.crt"), filepath.Join(c.Dir, certs.CACertFile), filepath.Join(rogueDir, certs.CACertFile))
	ip := c.NextIP()
	cfg := filepath.Join(rogueDir, "rogue.yaml")
	os.WriteFile(cfg, []byte(strings.ReplaceAll(proctest.DefaultConfig("rogue", []string{n1.IP}, ""), "%IP%", ip)), 0o644)
	c.Start("rogue", ip, cfg)
	proctest.Eventually(t, 10*time.Second, "n1 logs the refusal", func() error {
		if !strings.Contains(c.Node("n1").LogText(), "reason=unknown_ca") {
			return fmt.Errorf("no reason=unknown_ca in n1's log yet")
		}
		return nil
	})
	for _, o := range []string{"n1", "n2"} {
		ms, err := c.Members(o)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Name == "rogue" {
				t.Fatalf("%s lists the rogue: %+v", o, m)
			}
		}
	}
}

func TestAdminAPIIdentities(t *testing.T) {
	c := proctest.NewCluster(t, "example.test", "127.0.26.")
	n1 := c.StartNode("n1", certs.IssueRequest{}, nil)
	is, err := c.CA.Issue(certs.IssueRequest{Name: "ops", Operator: true})
	if err != nil {
		t.Fatal(err)
	}
	is.WriteFiles(c.Dir, "ops")
	ca := filepath.Join(c.Dir, certs.CACertFile)
	op := func(name string) []string {
		return []string{"--node", n1.IP, "--ca", ca, "--cert", filepath.Join(c.Dir, name+".crt"), "--key", filepath.Join(c.Dir, name+".key")}
	}
	proctest.Eventually(t, 10*time.Second, "operator lists members", func() error {
		out, err := c.CLI(append([]string{"members", "--json"}, op("ops")...)...)
		if err == nil && !strings.Contains(out, `"name": "n1"`) {
			err = fmt.Errorf("unexpected: %s", out)
		}
		return err
	})
	// An operator certificate cannot run a node.
	cfg := c.WriteConfig("ops", c.NextIP(), proctest.DefaultConfig("ops", nil, ""))
	out, err := exec.Command(proctest.Binary(t), "run", "--config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "operator certificate") {
		t.Fatalf("run with an operator certificate: err=%v, output %q", err, out)
	}
	// A certificate of another CA is refused by the admin API.
	other := t.TempDir()
	oca, _ := certs.InitCA(other, "example.test", "")
	ois, _ := oca.Issue(certs.IssueRequest{Name: "ops", Operator: true})
	ois.WriteFiles(other, "ops")
	both := filepath.Join(other, "both.crt")
	bundle(t, both, ca, filepath.Join(other, certs.CACertFile))
	_, err = c.CLI("members", "--node", n1.IP, "--ca", both, "--cert", filepath.Join(other, "ops.crt"), "--key", filepath.Join(other, "ops.key"))
	if err == nil {
		t.Fatal("admin API accepted a certificate from another CA")
	}
	proctest.Eventually(t, 5*time.Second, "admin refusal logged", func() error {
		if log := n1.LogText(); !strings.Contains(log, "admin: refused client") || !strings.Contains(log, "reason=unknown_ca") {
			return fmt.Errorf("not logged yet")
		}
		return nil
	})
}

func TestBadConfigStopsWithMessage(t *testing.T) {
	c := proctest.NewCluster(t, "example.test", "127.0.27.")
	c.IssueNode("n1", certs.IssueRequest{Roles: []string{"proxy"}})
	good := proctest.DefaultConfig("n1", nil, "")
	for _, tc := range []struct {
		name, body, want string
	}{
		{"unknown key", good + "bogus: 1\n", `unknown key "bogus"`},
		{"nested unknown key", strings.Replace(good, "timing: lan", "timing: lan, jion: []", 1), `unknown key "jion"`},
		{"bad timing", strings.Replace(good, "timing: lan", "timing: fast", 1), `"overlay.timing"`},
		{"no address", strings.Replace(good, `node: {address: "%IP%"}`, "node: {}", 1), `"node.address" is required`},
		{"role not in certificate", strings.Replace(good, `node: {address: "%IP%"}`, `node: {address: "%IP%", roles: [registrar]}`, 1), `does not allow`},
		{"missing key file", strings.Replace(good, "key: n1.key", "key: nope.key", 1), "nope.key"},
		{"bad join", strings.Replace(good, `join: ["%IP%:7946"]`, `join: ["1.2.3.4:x"]`, 1), `"overlay.join[0]"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := c.WriteConfig("n1", c.Subnet+"11", tc.body)
			cmd := exec.Command(proctest.Binary(t), "run", "--config", cfg)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("node started with a bad config")
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Fatal("node kept running with a bad config")
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q does not contain %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestDevStartsClusterAndStopsOnCtrlC(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(proctest.Binary(t), "dev", "--nodes", "3", "--dir", dir, "--first-ip", "127.0.28.11")
	var out proctest.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()
	proctest.Eventually(t, 30*time.Second, "dev prints the members table", func() error {
		if strings.Count(out.String(), " alive ") == 3 && strings.Contains(out.String(), "Ctrl-C") {
			return nil
		}
		select {
		case err := <-done:
			t.Fatalf("dev exited early: %v\n%s", err, out.String())
		default:
		}
		return fmt.Errorf("output so far: %q", out.String())
	})
	for _, want := range []string{"sipmesh members --node 127.0.28.11", "admin.crt"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dev output lacks %q:\n%s", want, out.String())
		}
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev exited with %v after Ctrl-C\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dev did not stop within 20 s of Ctrl-C")
	}
	for i := 1; i <= 3; i++ {
		log, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("n%d.log", i)))
		if !strings.Contains(string(log), "leaving the mesh") {
			t.Errorf("n%d did not leave gracefully:\n%s", i, log)
		}
	}
}

// bundle concatenates PEM files into dst.
func bundle(t *testing.T, dst string, srcs ...string) {
	t.Helper()
	var all []byte
	for _, s := range srcs {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if err := os.WriteFile(dst, all, 0o644); err != nil {
		t.Fatal(err)
	}
}
