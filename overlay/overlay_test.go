package overlay

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/retry"
)

func TestThreeNodesFormMesh(t *testing.T) {
	ca := newTestCA(t, "example.test")
	var logs [3]logBuf
	var nodes [3]*Overlay
	reg := prometheus.NewRegistry()
	for i := range nodes {
		name := fmt.Sprintf("n%d", i+1)
		cfg := testConfig(ca.material(name, fmt.Sprintf("dc%d", i%2+1)), &logs[i])
		cfg.Services = map[string]string{ServiceRPC: fmt.Sprintf("127.0.0.1:%d", 7000+i)}
		if i == 0 {
			cfg.Registerer = reg
		}
		nodes[i] = start(t, cfg)
	}
	for _, o := range nodes[1:] {
		if n, err := o.Join([]string{nodes[0].GossipAddr()}); err != nil || n != 1 {
			t.Fatalf("join: %d %v", n, err)
		}
	}
	for _, o := range nodes {
		retry.Eventually(t, 10*time.Second, func() error { return seesAlive(o, "n1", "n2", "n3") })
	}
	for _, o := range nodes {
		m, ok := o.Member("n3")
		if !ok || m.Datacenter != "dc1" || m.Services[ServiceRPC] != "127.0.0.1:7002" || m.Address != nodes[2].GossipAddr() {
			t.Fatalf("%s sees n3 as %+v", o.Name(), m)
		}
	}
	// n1's metrics, read as a scraper would.
	retry.Eventually(t, 5*time.Second, func() error {
		got := gather(t, reg)
		for name, ok := range map[string]bool{
			`sipmesh_overlay_members{state="alive"}`: got[`sipmesh_overlay_members{state="alive"}`] == 3,
			`sipmesh_overlay_members{state="dead"}`:  got[`sipmesh_overlay_members{state="dead"}`] == 0,
			`sipmesh_overlay_ring_rebuilds_total`:    got[`sipmesh_overlay_ring_rebuilds_total`] >= 1,
			// One connection per pair, dialled by either side: n1 has one
			// with each of the two others, whichever way it was opened.
			`sipmesh_overlay_transport_connections`:            got[`sipmesh_overlay_transport_connections{direction="inbound"}`]+got[`sipmesh_overlay_transport_connections{direction="outbound"}`] >= 2,
			`sipmesh_overlay_gossip_sent_bytes_total`:          got[`sipmesh_overlay_gossip_sent_bytes_total`] > 0,
			`sipmesh_overlay_gossip_received_bytes_total`:      got[`sipmesh_overlay_gossip_received_bytes_total`] > 0,
			`sipmesh_overlay_refusals_total{reason="revoked"}`: got[`sipmesh_overlay_refusals_total{reason="revoked"}`] == 0,
		} {
			if !ok {
				return fmt.Errorf("metric %s = %v", name, got[name])
			}
		}
		return nil
	})
	for _, key := range []string{"alice@example.test", "bob@example.test", "carol@example.test"} {
		for _, o := range nodes {
			if r := o.Ring("registrar"); r.Len() != 3 {
				t.Fatalf("%s: registrar ring of %d nodes while it lists 3 alive", o.Name(), r.Len())
			}
		}
		want, _ := nodes[0].Ring("registrar").Owner(key)
		for _, o := range nodes[1:] {
			if got, _ := o.Ring("registrar").Owner(key); got != want {
				t.Fatalf("%s: owner of %s is %v, n1 says %v", o.Name(), key, got, want)
			}
		}
	}
}

// meshOf starts nodes named n1..nN with tune applied (nil: the pure LAN
// preset) and joins them to n1.
func meshOf(t *testing.T, ca *testCA, n int, tune func(*memberlist.Config)) ([]*Overlay, []*logBuf) {
	t.Helper()
	nodes := make([]*Overlay, n)
	logs := make([]*logBuf, n)
	names := make([]string, n)
	for i := range nodes {
		names[i] = fmt.Sprintf("n%d", i+1)
		logs[i] = &logBuf{}
		cfg := testConfig(ca.material(names[i], fmt.Sprintf("dc%d", i%2+1)), logs[i])
		cfg.Tune = tune
		nodes[i] = start(t, cfg)
		if i > 0 {
			if _, err := nodes[i].Join([]string{nodes[0].GossipAddr()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, o := range nodes {
		retry.Eventually(t, 10*time.Second, func() error { return seesAlive(o, names...) })
	}
	return nodes, logs
}

func onRings(o *Overlay, name string) bool {
	for _, r := range certs.AllRoles {
		if o.Ring(r).Has(name) {
			return true
		}
	}
	return false
}

// A node that crashes is found dead and taken off the rings within 10 s
// with the LAN preset; restarted with its certificate on another port, it
// comes back under its name.
func TestCrashedNodeDetectedAndRejoins(t *testing.T) {
	ca := newTestCA(t, "example.test")
	nodes, _ := meshOf(t, ca, 3, nil)
	if !onRings(nodes[0], "n3") {
		t.Fatal("n3 not on n1's rings")
	}
	killed := time.Now()
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	sawSuspect := map[string]bool{}
	for _, o := range nodes[:2] {
		retry.Eventually(t, 10*time.Second-time.Since(killed), func() error {
			m, _ := o.Member("n3")
			if m.State == StateSuspect {
				sawSuspect[o.Name()] = true
				if !onRings(o, "n3") {
					return fmt.Errorf("%s took suspect n3 off the rings; only gossip may", o.Name())
				}
			}
			if m.State != StateDead || onRings(o, "n3") {
				return fmt.Errorf("%s sees n3 %s, on rings: %v", o.Name(), m.State, onRings(o, "n3"))
			}
			return nil
		})
	}
	t.Logf("crash detected by both survivors after %s", time.Since(killed).Round(time.Millisecond))
	// The first survivor polled from the kill on: it must have seen n3
	// unreachable (suspect) before memberlist declared it dead.
	if !sawSuspect["n1"] {
		t.Errorf("n1 never reported n3 suspect between the crash and its death")
	}

	cp := filepath.Join(ca.dir, "issued", "n3.crt")
	m, err := certs.Load(ca.caPath(), cp, strings.TrimSuffix(cp, ".crt")+".key", ca.crlPath())
	if err != nil {
		t.Fatal(err)
	}
	var l logBuf
	cfg := testConfig(m, &l)
	cfg.Tune = nil
	again := start(t, cfg)
	if again.GossipAddr() == nodes[2].GossipAddr() {
		t.Fatal("restarted on the same address; the test wants another port")
	}
	if _, err := again.Join([]string{nodes[1].GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []*Overlay{nodes[0], nodes[1], again} {
		retry.Eventually(t, 10*time.Second, func() error {
			if err := seesAlive(o, "n1", "n2", "n3"); err != nil {
				return err
			}
			if m, _ := o.Member("n3"); m.Address != again.GossipAddr() {
				return fmt.Errorf("%s has n3 at %s, want %s", o.Name(), m.Address, again.GossipAddr())
			}
			if !onRings(o, "n3") {
				return fmt.Errorf("%s: n3 not back on the rings", o.Name())
			}
			return nil
		})
	}
}

// Revoking a running node's certificate in the file ONE node watches takes
// it out of every good node's alive set and rings; nobody restarts.
func TestRevocationSpreadsFromOneNode(t *testing.T) {
	ca := newTestCA(t, "example.test")
	names := []string{"n1", "n2", "n3", "n4"}
	nodes := make([]*Overlay, len(names))
	logs := make([]*logBuf, len(names))
	watched := filepath.Join(t.TempDir(), "watched.crl")
	copyFile(t, ca.crlPath(), watched)
	for i, name := range names {
		logs[i] = &logBuf{}
		cp, kp := ca.issue(certs.IssueRequest{Name: name})
		// Each loads its own copy of today's list; only n1 watches a file.
		own := filepath.Join(t.TempDir(), "ca.crl")
		copyFile(t, ca.crlPath(), own)
		m, err := certs.Load(ca.caPath(), cp, kp, own)
		if err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(m, logs[i])
		if i == 0 {
			cfg.CRLPath = watched
		}
		nodes[i] = start(t, cfg)
		if i > 0 {
			if _, err := nodes[i].Join([]string{nodes[0].GossipAddr()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, o := range nodes {
		retry.Eventually(t, 10*time.Second, func() error { return seesAlive(o, names...) })
	}
	if _, err := ca.ca.Revoke("n4"); err != nil {
		t.Fatal(err)
	}
	copyFile(t, ca.crlPath(), watched)
	for _, o := range nodes[:3] {
		retry.Eventually(t, 10*time.Second, func() error {
			if err := seesAlive(o, "n1", "n2", "n3"); err != nil {
				return err
			}
			if onRings(o, "n4") {
				return fmt.Errorf("%s still has n4 on a ring", o.Name())
			}
			return nil
		})
	}
	// The watcher spread it; the others installed it from gossip.
	mustContain(t, logs[0].String(), "n1 installs", "installed a newer revocation list", "source=\"file ")
	for i := 1; i < 3; i++ {
		mustContain(t, logs[i].String(), nodes[i].Name()+" installs", "installed a newer revocation list")
	}
	// memberlist itself gives up on n4 too: its probes are refused.
	for _, o := range nodes[:3] {
		retry.Eventually(t, 15*time.Second, func() error {
			for _, n := range o.ml.Load().Members() {
				if n.Name == "n4" {
					return fmt.Errorf("%s: memberlist still lists n4", o.Name())
				}
			}
			return nil
		})
	}
}

// copyFile replaces dst with src's content the way an operator's tool
// would: write a temporary file and rename it over.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// gather scrapes reg into "name{label="value"}" -> value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			if lp := m.GetLabel(); len(lp) > 0 {
				var parts []string
				for _, l := range lp {
					parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				key += "{" + strings.Join(parts, ",") + "}"
			}
			switch {
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// A node that leaves on purpose is listed as left, not dead, and leaves the
// rings; subscribers hear of it, and cancelling closes their channel.
func TestLeaveIsReportedAsLeft(t *testing.T) {
	ca := newTestCA(t, "example.test")
	nodes, _ := meshOf(t, ca, 3, fastTune)
	ch, cancel := nodes[0].Subscribe()
	// Drain what the mesh's forming left behind.
	select {
	case <-ch:
	default:
	}
	if err := nodes[2].Leave(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification after a member left")
	}
	for _, o := range nodes[:2] {
		retry.Eventually(t, 10*time.Second, func() error {
			m, ok := o.Member("n3")
			if !ok || m.State != StateLeft {
				return fmt.Errorf("%s sees n3 as %q (known %v), want left", o.Name(), m.State, ok)
			}
			if onRings(o, "n3") {
				return fmt.Errorf("%s still has n3 on a ring", o.Name())
			}
			return nil
		})
	}
	if err := nodes[2].Leave(time.Second); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
	cancel()
	if !closedAfterBuffer(ch) {
		t.Fatal("channel still open after cancel")
	}
	cancel() // idempotent
	// A subscription after shutdown is closed at once.
	late, _ := nodes[2].Subscribe()
	if _, open := <-late; open {
		t.Fatal("subscription to a stopped overlay is open")
	}
}

func TestConfigValidation(t *testing.T) {
	ca := newTestCA(t, "example.test")
	m := ca.material("v1", "dc1", certs.RoleProxy, certs.RoleRegistrar)
	cp, kp := ca.issue(certs.IssueRequest{Name: "op", Operator: true})
	op, err := certs.Load(ca.caPath(), cp, kp, "")
	if err != nil {
		t.Fatal(err)
	}
	var l logBuf
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no material", func(c *Config) { c.Material = nil }, "no TLS material"},
		{"operator", func(c *Config) { c.Material = op }, "cannot join the mesh"},
		{"role not allowed", func(c *Config) { c.Roles = []string{certs.RoleRelay} }, `role "relay" is not allowed`},
		{"timing", func(c *Config) { c.Timing = "fast" }, `timing "fast"`},
		{"service", func(c *Config) { c.Services = map[string]string{ServiceRPC: "nowhere"} }, `"nowhere" is not host:port`},
		{"metadata too large", func(c *Config) {
			c.Services = map[string]string{}
			for i := 0; i < 20; i++ {
				c.Services[fmt.Sprintf("svc-%02d", i)] = fmt.Sprintf("127.0.0.1:%d", 10000+i)
			}
		}, "node metadata is"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(m, &l)
			tc.mod(&cfg)
			o, err := New(cfg)
			if err == nil {
				o.Shutdown()
				t.Fatal("New accepted the config")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "overlay: ") {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// A busy port says so, and the metrics it registered are taken back,
	// so that the same registry serves a second attempt.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	reg := prometheus.NewRegistry()
	cfg := testConfig(m, &l)
	cfg.Port = busy.Addr().(*net.TCPAddr).Port
	cfg.Registerer = reg
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "gossip listener") {
		t.Fatalf("New on a busy port: %v", err)
	}

	// Narrowed roles are what the node gossips and where it sits on rings.
	cfg.Port = 0
	cfg.Roles = []string{certs.RoleRegistrar}
	o := start(t, cfg)
	retry.Eventually(t, 5*time.Second, func() error {
		if got := gather(t, reg); got[`sipmesh_overlay_members{state="alive"}`] != 1 {
			return fmt.Errorf("metrics after a retry: %v", got)
		}
		return nil
	})
	if s := o.Self(); !slices.Equal(s.Roles, []string{certs.RoleRegistrar}) || s.Address != o.GossipAddr() {
		t.Fatalf("self %+v", s)
	}
	retry.Eventually(t, 5*time.Second, func() error {
		if !o.Ring(certs.RoleRegistrar).Has("v1") || o.Ring(certs.RoleProxy).Has("v1") {
			return fmt.Errorf("v1 on registrar ring: %v, on proxy ring: %v", o.Ring(certs.RoleRegistrar).Has("v1"), o.Ring(certs.RoleProxy).Has("v1"))
		}
		return nil
	})
	if o.Ring("no-such-role") == nil || o.Ring("no-such-role").Len() != 0 {
		t.Fatal("ring of an unknown role is not an empty ring")
	}
}

func TestSeedAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.12":      "127.0.0.12:7946",
		"127.0.0.12:8000": "127.0.0.12:8000",
		"node1.example":   "node1.example:7946",
		"::1":             "[::1]:7946",
		"[::1]":           "[::1]:7946",
		"[::1]:7000":      "[::1]:7000",
	} {
		if got, err := seedAddr(in); err != nil || got != want {
			t.Errorf("seedAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "host:0", "host:http"} {
		if _, err := seedAddr(bad); err == nil {
			t.Errorf("seedAddr(%q) accepted", bad)
		}
	}
}

// Subscribers are told about joins; cancel closes the channel; Shutdown
// closes the others.
func TestSubscribe(t *testing.T) {
	ca := newTestCA(t, "example.test")
	var l1, l2, l3 logBuf
	n1 := start(t, testConfig(ca.material("n1", "dc1"), &l1))
	a, cancelA := n1.Subscribe()
	b, _ := n1.Subscribe()
	n2 := start(t, testConfig(ca.material("n2", "dc1"), &l2))
	if _, err := n2.Join([]string{n1.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan struct{}{a, b} {
		retry.Eventually(t, 5*time.Second, func() error {
			select {
			case <-ch:
			case <-time.After(50 * time.Millisecond):
				return fmt.Errorf("no notification")
			}
			if !known(n1, "n2") {
				return fmt.Errorf("notified, but n2 not listed yet")
			}
			return nil
		})
	}
	cancelA()
	cancelA() // idempotent
	if !closedAfterBuffer(a) {
		t.Fatal("cancelled channel still open")
	}
	n3 := start(t, testConfig(ca.material("n3", "dc1"), &l3))
	if _, err := n3.Join([]string{n1.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	retry.Eventually(t, 5*time.Second, func() error { return seesAlive(n1, "n1", "n2", "n3") })
	if err := n1.Shutdown(); err != nil {
		t.Fatal(err)
	}
	retry.Eventually(t, 5*time.Second, func() error {
		select {
		case _, open := <-b:
			if !open {
				return nil
			}
			return fmt.Errorf("still open")
		default:
			return fmt.Errorf("still open")
		}
	})
}

// A node whose own certificate gets revoked says so as an ERROR.
func TestOwnRevocationIsAnError(t *testing.T) {
	ca := newTestCA(t, "example.test")
	var l logBuf
	cfg := testConfig(ca.material("n1", "dc1"), &l)
	cfg.CRLPath = filepath.Join(t.TempDir(), "ca.crl")
	copyFile(t, ca.crlPath(), cfg.CRLPath)
	start(t, cfg)
	if _, err := ca.ca.Revoke("n1"); err != nil {
		t.Fatal(err)
	}
	copyFile(t, ca.crlPath(), cfg.CRLPath)
	retry.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(l.String(), "own certificate is revoked") {
			return fmt.Errorf("no error logged yet")
		}
		return nil
	})
	mustContain(t, l.String(), "own revocation", "level=ERROR", "own certificate is revoked", "node=n1")
}

// closedAfterBuffer reports whether ch is closed once the one notification
// its buffer may still hold is read.
func closedAfterBuffer(ch <-chan struct{}) bool {
	for i := 0; i < 2; i++ {
		select {
		case _, open := <-ch:
			if !open {
				return true
			}
		default:
			return false
		}
	}
	return false
}
