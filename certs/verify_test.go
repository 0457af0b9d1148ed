package certs

import (
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVerifyReasons(t *testing.T) {
	ca := newTestCA(t, "example.test", "")
	otherCA := newTestCA(t, "example.test", "")         // same cluster name, different key
	neighbour := newTestCA(t, "other.test", KeyEd25519) // trusted in the bundle, other cluster
	// n1 trusts its own CA and the neighbour's.
	m := loadNode(t, ca, IssueRequest{Name: "n1"}, bundle(t, ca, neighbour))

	chainOf := func(is *Issued) []*x509.Certificate { return []*x509.Certificate{is.Cert} }
	for _, tc := range []struct {
		name          string
		chain         func(t *testing.T) []*x509.Certificate
		allowOperator bool
		want          Reason // "" means accepted
		wantName      string
	}{
		{
			name: "node of the cluster",
			chain: func(t *testing.T) []*x509.Certificate {
				return chainOf(issue(t, ca, IssueRequest{Name: "n2", Roles: []string{RoleRelay}}))
			},
			wantName: "n2",
		},
		{
			name: "ed25519 node",
			chain: func(t *testing.T) []*x509.Certificate {
				return chainOf(issue(t, ca, IssueRequest{Name: "n3", KeyType: KeyEd25519}))
			},
			wantName: "n3",
		},
		{
			name:  "no certificate",
			chain: func(*testing.T) []*x509.Certificate { return nil },
			want:  ReasonNoCertificate,
		},
		{
			name:  "another CA",
			chain: func(t *testing.T) []*x509.Certificate { return chainOf(issue(t, otherCA, IssueRequest{Name: "n2"})) },
			want:  ReasonUnknownCA,
		},
		{
			name: "expired",
			chain: func(t *testing.T) []*x509.Certificate {
				return chainOf(issue(t, ca, IssueRequest{Name: "old", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}))
			},
			want: ReasonExpired,
		},
		{
			name: "not yet valid",
			chain: func(t *testing.T) []*x509.Certificate {
				return chainOf(issue(t, ca, IssueRequest{Name: "early", NotBefore: time.Now().Add(time.Hour)}))
			},
			want: ReasonExpired,
		},
		{
			name: "revoked",
			chain: func(t *testing.T) []*x509.Certificate {
				is := issue(t, ca, IssueRequest{Name: "gone"})
				if _, err := ca.Revoke("gone"); err != nil {
					t.Fatal(err)
				}
				if _, err := m.UpdateCRL(readCRL(t, ca)); err != nil {
					t.Fatal(err)
				}
				return chainOf(is)
			},
			want: ReasonRevoked,
		},
		{
			name:  "trusted CA of another cluster",
			chain: func(t *testing.T) []*x509.Certificate { return chainOf(issue(t, neighbour, IssueRequest{Name: "n2"})) },
			want:  ReasonWrongCluster,
		},
		{
			name: "another cluster's CA claiming our cluster",
			chain: func(t *testing.T) []*x509.Certificate {
				return []*x509.Certificate{signRaw(t, neighbour, "n2", []*url.URL{mustURL(t, "sipmesh://example.test/node/n2?dc=dc1&roles=proxy")})}
			},
			want: ReasonWrongCluster,
		},
		{
			name: "operator refused",
			chain: func(t *testing.T) []*x509.Certificate {
				return chainOf(issue(t, ca, IssueRequest{Name: "alice", Operator: true}))
			},
			want: ReasonOperator,
		},
		{
			name: "operator allowed",
			chain: func(t *testing.T) []*x509.Certificate {
				return chainOf(issue(t, ca, IssueRequest{Name: "bob", Operator: true}))
			},
			allowOperator: true,
			wantName:      "bob",
		},
		{
			name:  "plain certificate without identity",
			chain: func(t *testing.T) []*x509.Certificate { return []*x509.Certificate{signRaw(t, ca, "plain", nil)} },
			want:  ReasonNoIdentity,
		},
		{
			name:          "the CA certificate itself",
			chain:         func(*testing.T) []*x509.Certificate { return []*x509.Certificate{ca.Cert} },
			allowOperator: true,
			want:          ReasonNoIdentity,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := m.Verify(tc.chain(t), tc.allowOperator)
			if got := ReasonOf(err); got != tc.want {
				t.Fatalf("Verify: reason %q (err %v), want %q", got, err, tc.want)
			}
			if tc.want != "" {
				if !strings.Contains(err.Error(), string(tc.want)) {
					t.Errorf("error %q does not name the reason", err)
				}
				return
			}
			if id.Name != tc.wantName || id.Cluster != "example.test" {
				t.Errorf("identity %+v, want %s of example.test", id, tc.wantName)
			}
		})
	}
}

func TestVerifyClock(t *testing.T) {
	ca := newTestCA(t, "example.test", "")
	m := loadNode(t, ca, IssueRequest{Name: "n1"}, "")
	peer := issue(t, ca, IssueRequest{Name: "n2", Days: 10})
	if _, err := m.Verify([]*x509.Certificate{peer.Cert}, false); err != nil {
		t.Fatal(err)
	}
	m.SetClock(func() time.Time { return time.Now().AddDate(0, 0, 11) })
	if _, err := m.Verify([]*x509.Certificate{peer.Cert}, false); ReasonOf(err) != ReasonExpired {
		t.Fatalf("Verify 11 days later: %v, want %s", err, ReasonExpired)
	}
}

func TestLoad(t *testing.T) {
	ca := newTestCA(t, "example.test", "")
	other := newTestCA(t, "example.test", "")
	caPath := filepath.Join(ca.Dir, CACertFile)

	t.Run("ok", func(t *testing.T) {
		m := loadNode(t, ca, IssueRequest{Name: "n1", Datacenter: "ams", Roles: []string{RoleProxy}}, "")
		if m.Self.Name != "n1" || m.Self.Datacenter != "ams" || m.Cluster != "example.test" || !m.Self.HasRole(RoleProxy) || m.Self.HasRole(RoleRelay) {
			t.Errorf("Self %+v, Cluster %q", m.Self, m.Cluster)
		}
		if m.Certificate().Leaf == nil || m.Certificate().Leaf.Subject.CommonName != "n1" {
			t.Error("Certificate() has no leaf for n1")
		}
	})

	for _, tc := range []struct {
		name string
		// setup returns the four paths given to Load.
		setup func(t *testing.T) (caPath, certPath, keyPath, crl string)
		// want are substrings of the error; "CERT" and "KEY" stand for
		// the paths setup returned.
		want []string
	}{
		{
			name: "expired own certificate",
			setup: func(t *testing.T) (string, string, string, string) {
				c, k := writeIssued(t, issue(t, ca, IssueRequest{Name: "old", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}), "old")
				return caPath, c, k, crlPath(ca)
			},
			want: []string{"CERT", "expired", "sipmesh cert issue"},
		},
		{
			name: "revoked own certificate",
			setup: func(t *testing.T) (string, string, string, string) {
				c, k := writeIssued(t, issue(t, ca, IssueRequest{Name: "gone"}), "gone")
				if _, err := ca.Revoke("gone"); err != nil {
					t.Fatal(err)
				}
				return caPath, c, k, crlPath(ca)
			},
			want: []string{"CERT", "revoked"},
		},
		{
			name: "missing key",
			setup: func(t *testing.T) (string, string, string, string) {
				c, k := writeIssued(t, issue(t, ca, IssueRequest{Name: "n2"}), "n2")
				if err := os.Remove(k); err != nil {
					t.Fatal(err)
				}
				return caPath, c, k, ""
			},
			want: []string{"KEY", "no such file"},
		},
		{
			name: "key of another certificate",
			setup: func(t *testing.T) (string, string, string, string) {
				c, _ := writeIssued(t, issue(t, ca, IssueRequest{Name: "n2"}), "n2")
				_, k := writeIssued(t, issue(t, ca, IssueRequest{Name: "n3"}), "n3")
				return caPath, c, k, ""
			},
			want: []string{"CERT", "KEY"},
		},
		{
			name: "certificate of another CA",
			setup: func(t *testing.T) (string, string, string, string) {
				c, k := writeIssued(t, issue(t, other, IssueRequest{Name: "n2"}), "n2")
				return caPath, c, k, ""
			},
			want: []string{"CERT", "unknown_ca", "tls.ca must be the CA that issued it"},
		},
		{
			name: "missing CA",
			setup: func(t *testing.T) (string, string, string, string) {
				c, k := writeIssued(t, issue(t, ca, IssueRequest{Name: "n2"}), "n2")
				return filepath.Join(t.TempDir(), "nope.crt"), c, k, ""
			},
			want: []string{"tls.ca", "nope.crt"},
		},
		{
			name: "CRL of another CA",
			setup: func(t *testing.T) (string, string, string, string) {
				c, k := writeIssued(t, issue(t, ca, IssueRequest{Name: "n2"}), "n2")
				return caPath, c, k, crlPath(other)
			},
			want: []string{"tls.crl", crlPath(other), "rejected"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caP, certP, keyP, crlP := tc.setup(t)
			m, err := Load(caP, certP, keyP, crlP)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", m.Self)
			}
			for _, w := range tc.want {
				w = strings.NewReplacer("CERT", certP, "KEY", keyP).Replace(w)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
