package overlay

import (
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	dto "github.com/prometheus/client_model/go"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/retry"
)

// goodMesh starts n joined nodes of ca whose certificates are loaded with
// caPath as the trusted bundle; mod may adjust each node's material.
func goodMesh(t *testing.T, ca *testCA, caPath string, n int, mod func(*certs.Material)) ([]*Overlay, []*logBuf) {
	t.Helper()
	nodes := make([]*Overlay, n)
	logs := make([]*logBuf, n)
	names := make([]string, n)
	for i := range nodes {
		names[i] = fmt.Sprintf("g%d", i+1)
		cp, kp := ca.issue(certs.IssueRequest{Name: names[i]})
		m, err := certs.Load(caPath, cp, kp, ca.crlPath())
		if err != nil {
			t.Fatal(err)
		}
		if mod != nil {
			mod(m)
		}
		logs[i] = &logBuf{}
		nodes[i] = start(t, testConfig(m, logs[i]))
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

// TestRefusals has a rogue try to join a healthy mesh in every way the
// mesh must refuse, and checks that no good node ever lists it and that the
// refusing node logs why.
func TestRefusals(t *testing.T) {
	type rogue struct {
		cfg  Config
		name string // the name it would appear under
	}
	cases := []struct {
		reason string
		setup  func(t *testing.T) (good *testCA, goodCAPath string, mod func(*certs.Material), r rogue)
	}{
		{string(certs.ReasonUnknownCA), func(t *testing.T) (*testCA, string, func(*certs.Material), rogue) {
			ca, other := newTestCA(t, "example.test"), newTestCA(t, "example.test")
			cp, kp := other.issue(certs.IssueRequest{Name: "rogue"})
			// The rogue trusts the mesh's CA so that it gets as far as
			// showing its own certificate.
			m, err := certs.Load(bundle(t, other, ca), cp, kp, "")
			if err != nil {
				t.Fatal(err)
			}
			return ca, ca.caPath(), nil, rogue{cfg: Config{Material: m}, name: "rogue"}
		}},
		{string(certs.ReasonExpired), func(t *testing.T) (*testCA, string, func(*certs.Material), rogue) {
			ca := newTestCA(t, "example.test")
			now := time.Now()
			cp, kp := ca.issue(certs.IssueRequest{Name: "rogue", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
			m, err := certs.Load(ca.caPath(), cp, kp, "")
			if err != nil {
				t.Fatal(err)
			}
			// The mesh lives two days later, when the rogue's certificate
			// has expired and theirs have not.
			later := func(m *certs.Material) { m.SetClock(func() time.Time { return time.Now().Add(48 * time.Hour) }) }
			return ca, ca.caPath(), later, rogue{cfg: Config{Material: m}, name: "rogue"}
		}},
		{string(certs.ReasonRevoked), func(t *testing.T) (*testCA, string, func(*certs.Material), rogue) {
			ca := newTestCA(t, "example.test")
			cp, kp := ca.issue(certs.IssueRequest{Name: "rogue"})
			m, err := certs.Load(ca.caPath(), cp, kp, "") // before the revocation
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ca.ca.Revoke("rogue"); err != nil {
				t.Fatal(err)
			}
			return ca, ca.caPath(), nil, rogue{cfg: Config{Material: m}, name: "rogue"}
		}},
		{string(certs.ReasonWrongCluster), func(t *testing.T) (*testCA, string, func(*certs.Material), rogue) {
			ca, other := newTestCA(t, "example.test"), newTestCA(t, "other.test")
			both := bundle(t, ca, other) // the mesh trusts both CAs, but each only for its cluster
			cp, kp := other.issue(certs.IssueRequest{Name: "rogue"})
			m, err := certs.Load(both, cp, kp, "")
			if err != nil {
				t.Fatal(err)
			}
			return ca, both, nil, rogue{cfg: Config{Material: m, hooks: &testHooks{trustAnyServer: true}}, name: "rogue"}
		}},
		{string(certs.ReasonOperator), func(t *testing.T) (*testCA, string, func(*certs.Material), rogue) {
			ca := newTestCA(t, "example.test")
			cp, kp := ca.issue(certs.IssueRequest{Name: "admin", Operator: true})
			m, err := certs.Load(ca.caPath(), cp, kp, "")
			if err != nil {
				t.Fatal(err)
			}
			return ca, ca.caPath(), nil, rogue{cfg: Config{Material: m, hooks: &testHooks{allowOperator: true}}, name: "admin"}
		}},
		{string(certs.ReasonNameMismatch), func(t *testing.T) (*testCA, string, func(*certs.Material), rogue) {
			ca := newTestCA(t, "example.test")
			cp, kp := ca.issue(certs.IssueRequest{Name: "honest"})
			m, err := certs.Load(ca.caPath(), cp, kp, "")
			if err != nil {
				t.Fatal(err)
			}
			return ca, ca.caPath(), nil, rogue{cfg: Config{Material: m, hooks: &testHooks{name: "impostor"}}, name: "impostor"}
		}},
		{reasonBadMetadata, func(t *testing.T) (*testCA, string, func(*certs.Material), rogue) {
			// A valid certificate, but metadata no sipmesh node writes:
			// the handshake passes and gossip must refuse it.
			ca := newTestCA(t, "example.test")
			cp, kp := ca.issue(certs.IssueRequest{Name: "garbled"})
			m, err := certs.Load(ca.caPath(), cp, kp, "")
			if err != nil {
				t.Fatal(err)
			}
			return ca, ca.caPath(), nil, rogue{cfg: Config{Material: m, hooks: &testHooks{meta: []byte(`{"v":1,"dc":"Not A Label"}`)}}, name: "garbled"}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			ca, caPath, mod, r := tc.setup(t)
			good, logs := goodMesh(t, ca, caPath, 2, mod)
			var rlog logBuf
			cfg := testConfig(r.cfg.Material, &rlog)
			cfg.hooks = r.cfg.hooks
			rg := start(t, cfg)
			_, joinErr := rg.Join([]string{good[0].GossipAddr(), good[1].GossipAddr()})
			if tc.reason != reasonBadMetadata && joinErr == nil {
				t.Errorf("rogue joined without error")
			}
			// The refusing node says why, naming the reason and the peer.
			retry.Eventually(t, 5*time.Second, func() error {
				if !strings.Contains(logs[0].String(), "reason="+tc.reason) {
					return fmt.Errorf("g1 has not logged reason %s; g1 log:\n%s\nrogue log:\n%s", tc.reason, logs[0].String(), rlog.String())
				}
				return nil
			})
			mustContain(t, logs[0].String(), "refusal log", "level=WARN", "reason="+tc.reason, "remote=127.0.0.1:", "peer=")
			if n := counterValue(t, good[0].met.refusals.WithLabelValues(tc.reason)); n < 1 {
				t.Errorf("g1 counted %v refusals for %s", n, tc.reason)
			}
			// Give the rogue time to gossip (it knows the mesh when only
			// gossip refused it) and check it never got in.
			deadline := time.Now().Add(1500 * time.Millisecond)
			for time.Now().Before(deadline) {
				for _, o := range good {
					if known(o, r.name) {
						t.Fatalf("%s lists the rogue %q: %+v", o.Name(), r.name, o.Members())
					}
					if o.Ring("registrar").Has(r.name) {
						t.Fatalf("%s has the rogue on a ring", o.Name())
					}
				}
				time.Sleep(50 * time.Millisecond)
			}
			for _, o := range good {
				if err := seesAlive(o, "g1", "g2"); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// A node with a good certificate that gossips roles its certificate does
// not allow is refused, and so is a gossiped node whose address belongs,
// by the certificate that answers there, to another node.
func TestGossipMustMatchCertificates(t *testing.T) {
	ca := newTestCA(t, "example.test")
	good, logs := goodMesh(t, ca, ca.caPath(), 2, nil)

	cp, kp := ca.issue(certs.IssueRequest{Name: "boaster", Roles: []string{certs.RoleProxy}})
	m, err := certs.Load(ca.caPath(), cp, kp, ca.crlPath())
	if err != nil {
		t.Fatal(err)
	}
	meta, err := encodeMeta("dc1", []string{certs.RoleProxy, certs.RoleRegistrar}, nil, m.Self.Serial)
	if err != nil {
		t.Fatal(err)
	}
	var rlog logBuf
	cfg := testConfig(m, &rlog)
	cfg.hooks = &testHooks{meta: meta}
	rg := start(t, cfg)
	_, _ = rg.Join([]string{good[0].GossipAddr()})
	retry.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(logs[0].String(), "which its certificate does not allow") {
			return fmt.Errorf("g1 has not refused the boaster")
		}
		return nil
	})
	mustContain(t, logs[0].String(), "boaster refusal", "level=WARN", "reason=bad_metadata", `peer="node \"boaster\"`)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		for _, o := range good {
			if known(o, "boaster") || o.Ring(certs.RoleRegistrar).Has("boaster") {
				t.Fatalf("%s lists the boaster", o.Name())
			}
		}
		time.Sleep(50 * time.Millisecond)
	}

	// g1 talks to g2 at g2's address, so it knows who answers there: an
	// alive message putting a "g3" at that address is an impersonation,
	// however good its metadata.
	g2 := good[1]
	host, port := splitHostPort(t, g2.GossipAddr())
	g2meta, err := encodeMeta("dc1", nil, nil, big.NewInt(12345))
	if err != nil {
		t.Fatal(err)
	}
	fake := &memberlist.Node{Name: "g3", Addr: net.ParseIP(host), Port: uint16(port), Meta: g2meta}
	retry.Eventually(t, 5*time.Second, func() error {
		if _, ok := good[0].tr.nameAt(g2.GossipAddr()); !ok {
			return fmt.Errorf("g1 has no connection to g2 yet")
		}
		return nil
	})
	d := &delegate{o: good[0]}
	if err := d.NotifyAlive(fake); err == nil || !strings.Contains(err.Error(), string(certs.ReasonNameMismatch)) {
		t.Fatalf("alive for g3 at g2's address: %v, want a name_mismatch refusal", err)
	}
	if err := d.NotifyMerge([]*memberlist.Node{fake}); err == nil {
		t.Fatal("merge with g3 at g2's address accepted")
	}
	// The same message at a fresh address is fine: that is how nodes move.
	fake.Port++
	if err := d.NotifyAlive(fake); err != nil {
		t.Fatalf("alive for g3 at an unclaimed address: %v", err)
	}
	mustContain(t, logs[0].String(), "impersonation refusal", "level=WARN", "reason=name_mismatch", `peer="node \"g3\"`, "remote="+g2.GossipAddr())
}

func splitHostPort(t *testing.T, hp string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, n
}

func counterValue(t testing.TB, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
