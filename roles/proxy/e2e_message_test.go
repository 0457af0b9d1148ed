package proxy_test

import (
	"fmt"
	"strings"

	"github.com/sipmesh/sipmesh/internal/proctest"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// TestMeshMessage sends a page-mode MESSAGE (RFC 3428) that enters the mesh
// at one node to a phone registered through another.
func TestMeshMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Skip("sipp is not installed")
	}
	c, names := startMeshOn(t, "127.0.45.", `users: users.yaml`)
	edge, entry := c.Node(names[0]), c.Node(names[2])
	ph := phone{user: "uas", ip: "127.0.45.101", port: "5070", ooc: "uas_message.xml", mediaPort: 16000}.start(t, edge.IP)
	waitBinding(t, c, entry.Name, "uas@"+domain, "127.0.45.101", 1, ph)

	for _, tr := range []string{"u1", "t1"} {
		s := startSipp(t, "-sf", scenario("uac_message.xml"), "-s", "uas", "-au", "caller", "-ap", "caller-pw",
			"-key", "caller", "caller", "-key", "domain", domain, "-auth_uri", "uas@"+domain,
			"-m", "5", "-r", "10", "-i", "127.0.45.102", "-p", strconv.Itoa(5080), "-t", tr,
			"-timeout", "30s", "-timeout_error", "-recv_timeout", "5000", "-trace_err", "-trace_msg",
			entry.IP+":5060")
		if code := s.wait(40 * time.Second); code != 0 {
			t.Fatalf("MESSAGE over %s through %s to a phone on %s: sipp exit %d\n%s\nphone:\n%s", tr, entry.Name, edge.Name, code, s.report(), ph.report())
		}
	}
	// The phone's trace shows each MESSAGE arriving; its out-of-call
	// scenario fails a message whose text is not the one sent.
	proctest.Eventually(t, 5*time.Second, "10 MESSAGEs at the phone", func() error {
		if n := strings.Count(ph.files("*_messages.log"), "MESSAGE sip:uas@"); n < 10 {
			return fmt.Errorf("the phone received %d MESSAGEs", n)
		}
		return nil
	})
}
