package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestInitCAWritesFiles(t *testing.T) {
	for _, tc := range []struct {
		keyType KeyType
		algo    x509.PublicKeyAlgorithm
	}{
		{"", x509.ECDSA},
		{KeyECDSA, x509.ECDSA},
		{KeyEd25519, x509.Ed25519},
	} {
		t.Run(string(tc.keyType), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			ca, err := InitCA(dir, "example.test", tc.keyType)
			if err != nil {
				t.Fatal(err)
			}
			if ca.Cert.PublicKeyAlgorithm != tc.algo {
				t.Errorf("CA key algorithm %v, want %v", ca.Cert.PublicKeyAlgorithm, tc.algo)
			}
			if !ca.Cert.IsCA {
				t.Error("CA certificate is not a CA")
			}
			for file, mode := range map[string]os.FileMode{CAKeyFile: 0o600, CACertFile: 0o644, CRLFile: 0o644} {
				st, err := os.Stat(filepath.Join(dir, file))
				if err != nil {
					t.Fatalf("%s: %v", file, err)
				}
				if st.Mode().Perm() != mode {
					t.Errorf("%s mode %v, want %v", file, st.Mode().Perm(), mode)
				}
			}
			loaded, err := LoadCA(dir)
			if err != nil {
				t.Fatal(err)
			}
			if loaded.Cluster != "example.test" || !loaded.Cert.Equal(ca.Cert) {
				t.Errorf("LoadCA: cluster %q, same cert %v", loaded.Cluster, loaded.Cert.Equal(ca.Cert))
			}
			data, err := os.ReadFile(filepath.Join(dir, CRLFile))
			if err != nil {
				t.Fatal(err)
			}
			crl, err := ParseCRL(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("initial CRL not signed by the CA: %v", err)
			}
			if len(crl.RevokedCertificateEntries) != 0 {
				t.Errorf("initial CRL has %d entries", len(crl.RevokedCertificateEntries))
			}
		})
	}
}

func TestInitCARefusesOverwrite(t *testing.T) {
	for _, existing := range []string{CAKeyFile, CACertFile} {
		t.Run(existing, func(t *testing.T) {
			dir := t.TempDir()
			if existing == CAKeyFile {
				// A complete CA.
				if _, err := InitCA(dir, "example.test", ""); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(filepath.Join(dir, CACertFile), []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(filepath.Join(dir, CACertFile))
			_, err := InitCA(dir, "other.test", "")
			if err == nil {
				t.Fatal("InitCA over an existing CA succeeded")
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, existing)) || !strings.Contains(err.Error(), "--out") {
				t.Errorf("error %q should name %s and say to use another --out", err, existing)
			}
			after, _ := os.ReadFile(filepath.Join(dir, CACertFile))
			if !bytes.Equal(before, after) {
				t.Error("ca.crt changed although InitCA refused")
			}
		})
	}
}

func TestInitCAInvalid(t *testing.T) {
	for _, tc := range []struct {
		cluster string
		keyType KeyType
		want    string
	}{
		{"", "", "--cluster is required"},
		{"Example.Test", "", `cluster "Example.Test" is not a valid domain`},
		{"a..test", "", "not a valid domain"},
		{"-a.test", "", "not a valid domain"},
		{"a/b", "", "not a valid domain"},
		{"example.test", "rsa", `unknown key type "rsa"`},
	} {
		t.Run(tc.cluster+"/"+string(tc.keyType), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			_, err := InitCA(dir, tc.cluster, tc.keyType)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("InitCA(%q, %q) = %v, want error containing %q", tc.cluster, tc.keyType, err, tc.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Error("the CA directory was created despite the error")
			}
		})
	}
}

func TestIssueIdentityRoundTrip(t *testing.T) {
	ca := newTestCA(t, "example.test", "")
	for _, tc := range []struct {
		name string
		req  IssueRequest
		want Identity
		algo x509.PublicKeyAlgorithm
		eku  []x509.ExtKeyUsage
	}{
		{
			name: "defaults",
			req:  IssueRequest{Name: "n1"},
			want: Identity{Cluster: "example.test", Name: "n1", Datacenter: "dc1", Roles: AllRoles, Kind: KindNode},
			algo: x509.ECDSA,
			eku:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		},
		{
			name: "dc and roles",
			req:  IssueRequest{Name: "edge-7", Datacenter: "fra", Roles: []string{RoleProxy, RoleRelay}},
			want: Identity{Cluster: "example.test", Name: "edge-7", Datacenter: "fra", Roles: []string{RoleProxy, RoleRelay}, Kind: KindNode},
			algo: x509.ECDSA,
			eku:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		},
		{
			name: "ed25519",
			req:  IssueRequest{Name: "n2", Roles: []string{RoleRegistrar}, KeyType: KeyEd25519},
			want: Identity{Cluster: "example.test", Name: "n2", Datacenter: "dc1", Roles: []string{RoleRegistrar}, Kind: KindNode},
			algo: x509.Ed25519,
			eku:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		},
		{
			name: "operator",
			req:  IssueRequest{Name: "alice", Operator: true},
			want: Identity{Cluster: "example.test", Name: "alice", Kind: KindOperator},
			algo: x509.ECDSA,
			eku:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := issue(t, ca, tc.req)
			id, err := IdentityOf(is.Cert)
			if err != nil {
				t.Fatal(err)
			}
			if id.Cluster != tc.want.Cluster || id.Name != tc.want.Name || id.Datacenter != tc.want.Datacenter ||
				id.Kind != tc.want.Kind || !slices.Equal(id.Roles, tc.want.Roles) {
				t.Errorf("identity %+v, want %+v", id, tc.want)
			}
			if id.Serial.Cmp(is.Cert.SerialNumber) != 0 || !id.NotAfter.Equal(is.Cert.NotAfter) {
				t.Errorf("identity serial/expiry %s/%v, cert %s/%v", id.Serial, id.NotAfter, is.Cert.SerialNumber, is.Cert.NotAfter)
			}
			for _, r := range AllRoles {
				if id.HasRole(r) != slices.Contains(tc.want.Roles, r) {
					t.Errorf("HasRole(%s) = %v", r, id.HasRole(r))
				}
			}
			if is.Cert.PublicKeyAlgorithm != tc.algo {
				t.Errorf("key algorithm %v, want %v", is.Cert.PublicKeyAlgorithm, tc.algo)
			}
			if k, ok := is.Cert.PublicKey.(*ecdsa.PublicKey); ok && k.Curve != elliptic.P256() {
				t.Errorf("ECDSA curve %s, want P-256", k.Curve.Params().Name)
			}
			if _, ok := is.Cert.PublicKey.(ed25519.PublicKey); ok != (tc.algo == x509.Ed25519) {
				t.Errorf("Ed25519 public key: %v", ok)
			}
			if !slices.Equal(is.Cert.ExtKeyUsage, tc.eku) {
				t.Errorf("extended key usage %v, want %v", is.Cert.ExtKeyUsage, tc.eku)
			}
			if err := is.Cert.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("not signed by the CA: %v", err)
			}
			// The PEM pair is a usable TLS key pair.
			if _, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM); err != nil {
				t.Errorf("PEM pair: %v", err)
			}
		})
	}
}

func TestIssueValidityAndSANs(t *testing.T) {
	ca := newTestCA(t, "example.test", "")
	is := issue(t, ca, IssueRequest{
		Name:     "n1",
		Days:     30,
		IPs:      []net.IP{net.ParseIP("127.0.0.11"), net.ParseIP("::1")},
		DNSNames: []string{"n1.example.test"},
	})
	want := time.Now().AddDate(0, 0, 30)
	if d := is.Cert.NotAfter.Sub(want); d < -time.Minute || d > time.Minute {
		t.Errorf("NotAfter %v, want about %v", is.Cert.NotAfter, want)
	}
	if len(is.Cert.IPAddresses) != 2 || !is.Cert.IPAddresses[0].Equal(net.ParseIP("127.0.0.11")) || !is.Cert.IPAddresses[1].Equal(net.ParseIP("::1")) {
		t.Errorf("IP SANs %v", is.Cert.IPAddresses)
	}
	if !slices.Equal(is.Cert.DNSNames, []string{"n1.example.test"}) {
		t.Errorf("DNS SANs %v", is.Cert.DNSNames)
	}
	def := issue(t, ca, IssueRequest{Name: "n2"})
	want = time.Now().AddDate(0, 0, DefaultDays)
	if d := def.Cert.NotAfter.Sub(want); d < -time.Minute || d > time.Minute {
		t.Errorf("default NotAfter %v, want about %v", def.Cert.NotAfter, want)
	}
	// Far beyond what a time.Duration holds: must not wrap into the past.
	long := issue(t, ca, IssueRequest{Name: "n3", Days: 200 * 365})
	if !long.Cert.NotAfter.After(time.Now().AddDate(199, 0, 0)) {
		t.Errorf("200-year certificate expires %v", long.Cert.NotAfter)
	}
}

func TestIssueWritesFilesWithModes(t *testing.T) {
	ca := newTestCA(t, "example.test", "")
	is := issue(t, ca, IssueRequest{Name: "n1"})
	dir := filepath.Join(t.TempDir(), "out")
	certPath, keyPath, err := is.WriteFiles(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if certPath != filepath.Join(dir, "n1.crt") || keyPath != filepath.Join(dir, "n1.key") {
		t.Errorf("paths %s %s", certPath, keyPath)
	}
	for path, mode := range map[string]os.FileMode{
		certPath:                             0o644,
		keyPath:                              0o600,
		filepath.Join(ca.Dir, CAKeyFile):     0o600,
		filepath.Join(ca.Dir, "issued.json"): 0o600,
	} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", path, st.Mode().Perm(), mode)
		}
	}
	certs, err := ReadCertificates(certPath)
	if err != nil || len(certs) != 1 || !certs[0].Equal(is.Cert) {
		t.Fatalf("ReadCertificates: %v, %d certs", err, len(certs))
	}
	key, err := ReadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(is.Cert.PublicKey) {
		t.Error("written key does not match the certificate")
	}
	// No temporary files are left behind by the atomic writes.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("out dir holds %d entries, want 2", len(entries))
	}
}

func TestIssueInvalid(t *testing.T) {
	ca := newTestCA(t, "example.test", "")
	for _, tc := range []struct {
		name string
		req  IssueRequest
		want string
	}{
		{"empty name", IssueRequest{}, `name "" is not valid`},
		{"upper case", IssueRequest{Name: "N1"}, `name "N1" is not valid`},
		{"leading dash", IssueRequest{Name: "-n1"}, `name "-n1" is not valid`},
		{"underscore", IssueRequest{Name: "n_1"}, `name "n_1" is not valid`},
		{"too long", IssueRequest{Name: strings.Repeat("a", 64)}, "is not valid: use 1-63"},
		{"bad dc", IssueRequest{Name: "n1", Datacenter: "DC 1"}, `datacenter "DC 1" is not valid`},
		{"unknown role", IssueRequest{Name: "n1", Roles: []string{RoleProxy, "bogus"}}, `unknown role "bogus": valid roles are proxy, registrar, relay, presence`},
		{"operator with dc", IssueRequest{Name: "op", Operator: true, Datacenter: "dc1"}, "operator certificate takes neither --dc nor --roles"},
		{"operator with roles", IssueRequest{Name: "op", Operator: true, Roles: []string{RoleProxy}}, "operator certificate takes neither --dc nor --roles"},
		{"key type", IssueRequest{Name: "n1", KeyType: "rsa"}, `unknown key type "rsa": use ecdsa or ed25519`},
		{"negative days", IssueRequest{Name: "n1", Days: -1}, "--days -1 must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is, err := ca.Issue(tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Issue(%+v) = %v, %v; want error containing %q", tc.req, is, err, tc.want)
			}
		})
	}
}

func TestLoadCAErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadCA(dir)
	if err == nil || !strings.Contains(err.Error(), "sipmesh ca init") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("LoadCA(empty dir) = %v, want error naming the dir and 'sipmesh ca init'", err)
	}
	// A node certificate in place of the CA's is refused.
	ca := newTestCA(t, "example.test", "")
	is := issue(t, ca, IssueRequest{Name: "n1"})
	fake := t.TempDir()
	if err := os.WriteFile(filepath.Join(fake, CACertFile), is.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fake, CAKeyFile), is.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(fake); err == nil || !strings.Contains(err.Error(), "is not a sipmesh CA certificate") {
		t.Fatalf("LoadCA(node cert) = %v", err)
	}
}
