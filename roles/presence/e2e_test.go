package presence_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/proctest"
	"github.com/sipmesh/sipmesh/roles/presence"
)

const meshDomain = "presence.test"

// startMeshSipp runs one call of scripts/sipp/<scenario> from
// 127.0.61.200 against target (a node's SIP address) in meshDomain.
func startMeshSipp(t *testing.T, scenario, target string, args ...string) *sippRun {
	t.Helper()
	sf, err := filepath.Abs(filepath.Join("..", "..", "scripts", "sipp", scenario))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	dir := t.TempDir()
	r := &sippRun{out: &bytes.Buffer{}, errf: filepath.Join(dir, "err.log"), done: make(chan error, 1)}
	all := append([]string{"-sf", sf, "-m", "1", "-l", "1",
		"-i", "127.0.61.200", "-p", fmt.Sprint(freeUDPPort(t, "127.0.61.200")),
		"-key", "domain", meshDomain,
		"-timeout", "50s", "-timeout_error", "-recv_timeout", "40s",
		"-default_behaviors", "abortunexp", "-nostdin", "-trace_err", "-trace_msg", "-error_file", r.errf},
		args...)
	all = append(all, target)
	r.cmd = exec.CommandContext(ctx, "sipp", all...)
	r.cmd.Dir = dir
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	return r
}

// startPresenceMesh starts n1-n3 with every role and a UDP SIP listener,
// without subscribers file (no digest challenge).
func startPresenceMesh(t *testing.T) *proctest.Cluster {
	c := proctest.NewCluster(t, meshDomain, "127.0.61.")
	var names, ips []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("n%d", i)
		ip := c.NextIP()
		c.IssueNode(name, certs.IssueRequest{IPs: []net.IP{net.ParseIP(ip)}})
		var seeds []string
		if i > 1 {
			seeds = ips[:1]
		}
		cfg := proctest.DefaultConfig(name, seeds, `sip: {listen: ["udp://%IP%:5060"]}`)
		c.Start(name, ip, c.WriteConfig(name, ip, cfg))
		names, ips = append(names, name), append(ips, ip)
	}
	c.WaitAlive(40*time.Second, "n1,n2,n3", names...)
	proctest.Eventually(t, 10*time.Second, "SIP edges started", func() error {
		for _, n := range names {
			if !strings.Contains(c.Node(n).LogText(), "SIP edge started") {
				return fmt.Errorf("%s has not started its SIP edge", n)
			}
		}
		return nil
	})
	return c
}

// presentityOwnedBy returns a presentity (user part) whose owner on the
// presence ring is node.
func presentityOwnedBy(t *testing.T, c *proctest.Cluster, node string) string {
	t.Helper()
	for i := 0; i < 64; i++ {
		user := fmt.Sprintf("buddy%d", i)
		if presenceLookup(t, c, "n1", user).Owner == node {
			return user
		}
	}
	t.Fatalf("no presentity owned by %s among 64 tries", node)
	return ""
}

type presenceLookupJSON struct {
	Owner      string            `json:"owner"`
	Records    []map[string]any  `json:"records"`
	Presentity *presence.Summary `json:"presentity"`
}

func presenceLookup(t *testing.T, c *proctest.Cluster, via, user string) presenceLookupJSON {
	t.Helper()
	l, err := tryPresenceLookup(c, via, user)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func tryPresenceLookup(c *proctest.Cluster, via, user string) (presenceLookupJSON, error) {
	var l presenceLookupJSON
	out, err := c.CLI("lookup", user+"@"+meshDomain, "--role", "presence", "--json", "--config", c.Node(via).Config)
	if err != nil {
		return l, fmt.Errorf("sipmesh lookup: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		return l, fmt.Errorf("sipmesh lookup: %v\n%s", err, out)
	}
	return l, nil
}

// waitSubscription waits until the presentity has a record in the store
// (the watcher's subscription).
func waitSubscription(t *testing.T, c *proctest.Cluster, via, user string) {
	t.Helper()
	proctest.Eventually(t, 15*time.Second, "subscription stored", func() error {
		if l := presenceLookup(t, c, via, user); len(l.Records) == 0 {
			return fmt.Errorf("no record for %s yet", user)
		}
		return nil
	})
}

// A watcher subscribes through n1 to a presentity that publishes through
// n3 and is owned by n2: initial NOTIFY, NOTIFY on the change, NOTIFY
// "terminated" after the unsubscribe, all checked by the sipp scenario;
// then the same with n2 SIGKILLed mid-subscription; and the ETag
// negatives (412, 489) through the mesh.
func TestMeshPresence(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	needSipp(t)
	c := startPresenceMesh(t)
	n1, n3 := c.Node("n1"), c.Node("n3")
	user := presentityOwnedBy(t, c, "n2")
	t.Logf("presentity %s@%s is owned by n2", user, meshDomain)

	t.Run("subscribe notify change terminated", func(t *testing.T) {
		w := startMeshSipp(t, "presence_watcher.xml", n1.IP+":5060", "-s", user, "-key", "watcher", "bob")
		waitSubscription(t, c, "n1", user)
		if p := presenceLookup(t, c, "n3", user).Presentity; p == nil || len(p.Watchers) != 1 ||
			p.Watchers[0].Watcher != "bob@"+meshDomain || p.Watchers[0].State != presence.StateActive {
			t.Errorf("lookup on n3 shows watchers %+v; want bob@%s, active", p, meshDomain)
		}
		time.Sleep(500 * time.Millisecond) // the initial NOTIFY completes
		startMeshSipp(t, "presence_publish_open.xml", n3.IP+":5060", "-s", user).wait(t)
		w.wait(t)
		// The publication outlives the subscription; the operator's view
		// shows it with its tuple's status, and no watcher left.
		proctest.Eventually(t, 10*time.Second, "presentity view", func() error {
			out, err := c.CLI("lookup", user+"@"+meshDomain, "--role", "presence", "--config", c.Node("n1").Config)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if !strings.Contains(out, "sipp=open") || strings.Contains(out, "watcher 1") {
				return fmt.Errorf("want the publication sipp=open and no watcher:\n%s", out)
			}
			return nil
		})
	})

	t.Run("ETag negatives", func(t *testing.T) {
		startMeshSipp(t, "presence_publish_errors.xml", n3.IP+":5060", "-s", "dave").wait(t)
	})

	t.Run("owner killed mid-subscription", func(t *testing.T) {
		// A fresh presentity owned by n2, with no publication yet.
		killed := presentityOwnedBy(t, c, "n2") + "x"
		for presenceLookup(t, c, "n1", killed).Owner != "n2" {
			killed += "x"
		}
		w := startMeshSipp(t, "presence_watcher.xml", n1.IP+":5060", "-s", killed, "-key", "watcher", "carol")
		waitSubscription(t, c, "n1", killed)
		time.Sleep(500 * time.Millisecond)
		c.Kill("n2")
		c.WaitAlive(30*time.Second, "n1,n3", "n1", "n3")
		proctest.Eventually(t, 30*time.Second, "presence ring without n2", func() error {
			for _, via := range []string{"n1", "n3"} {
				l, err := tryPresenceLookup(c, via, killed)
				if err != nil {
					return err
				}
				if l.Owner == "n2" || l.Owner == "" {
					return fmt.Errorf("%s still sees owner %q", via, l.Owner)
				}
			}
			return nil
		})
		startMeshSipp(t, "presence_publish_open.xml", n3.IP+":5060", "-s", killed).wait(t)
		w.wait(t)
	})
}
