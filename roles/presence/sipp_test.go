package presence_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func needSipp(t *testing.T) {
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Skip("sipp not installed (Debian package sip-tester)")
	}
}

type sippRun struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	errf string
	done chan error
}

// startSipp runs one call of scripts/sipp/<scenario> from 127.0.60.200
// against target.
func startSipp(t *testing.T, scenario, target string, args ...string) *sippRun {
	t.Helper()
	sf, err := filepath.Abs(filepath.Join("..", "..", "scripts", "sipp", scenario))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	dir := t.TempDir()
	r := &sippRun{out: &bytes.Buffer{}, errf: filepath.Join(dir, "err.log"), done: make(chan error, 1)}
	all := append([]string{"-sf", sf, "-m", "1", "-l", "1",
		"-i", "127.0.60.200", "-p", fmt.Sprint(freeUDPPort(t, "127.0.60.200")),
		"-key", "domain", "example.test",
		"-timeout", "20s", "-timeout_error", "-recv_timeout", "10s",
		"-default_behaviors", "abortunexp", "-nostdin", "-trace_err", "-error_file", r.errf},
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

// wait fails the test unless sipp completed its scenario (exit 0).
func (r *sippRun) wait(t *testing.T) {
	t.Helper()
	err := <-r.done
	if err != nil {
		errLog, _ := os.ReadFile(r.errf)
		t.Fatalf("sipp %s: %v\n%s\n%s", filepath.Base(r.cmd.Args[2]), err, errLog, lastLines(r.out.String(), 30))
	}
}

func lastLines(s string, n int) string {
	lines := bytes.Split([]byte(s), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

func freeUDPPort(t *testing.T, ip string) int {
	t.Helper()
	c, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// sipp watches alice through one node while sipp publishes for alice
// through another; the owner is a third: initial NOTIFY, NOTIFY on the
// change, terminated after unsubscribe, all checked by the scenario.
func TestSippWatcherAndPublisher(t *testing.T) {
	needSipp(t)
	c := newCluster(t, 3)
	key := "alice@example.test"
	owner := c.owner(key)
	via := c.other(owner)
	var pubVia *tnode
	for _, n := range c.nodes {
		if n != owner && n != via {
			pubVia = n
		}
	}
	w := startSipp(t, "presence_watcher.xml", via.sipAddr, "-s", "alice", "-key", "watcher", "bob")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, subs := c.records(key); len(subs) == 1 && subs[0].LocalCSeq >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sipp watcher's subscription never appeared in the store")
		}
		time.Sleep(20 * time.Millisecond)
	}
	startSipp(t, "presence_publish_open.xml", pubVia.sipAddr, "-s", "alice").wait(t)
	w.wait(t)
	if _, subs := c.records(key); len(subs) != 0 {
		t.Fatalf("subscription left after sipp unsubscribed: %+v", subs)
	}
}

func TestSippPublishLifecycle(t *testing.T) {
	needSipp(t)
	c := newCluster(t, 2)
	startSipp(t, "presence_publish.xml", c.nodes[0].sipAddr, "-s", "carol").wait(t)
	if pubs, _ := c.records("carol@example.test"); len(pubs) != 0 {
		t.Fatalf("publication left after sipp removed it: %+v", pubs)
	}
}

func TestSippPublishErrors(t *testing.T) {
	needSipp(t)
	c := newCluster(t, 1)
	startSipp(t, "presence_publish_errors.xml", c.nodes[0].sipAddr, "-s", "dave").wait(t)
}
