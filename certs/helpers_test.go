package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// newTestCA creates a CA in a fresh temporary directory.
func newTestCA(t *testing.T, cluster string, kt KeyType) *CA {
	t.Helper()
	ca, err := InitCA(filepath.Join(t.TempDir(), "ca"), cluster, kt)
	if err != nil {
		t.Fatalf("InitCA(%q): %v", cluster, err)
	}
	return ca
}

// issue issues a certificate and fails the test on error.
func issue(t *testing.T, ca *CA, req IssueRequest) *Issued {
	t.Helper()
	is, err := ca.Issue(req)
	if err != nil {
		t.Fatalf("Issue(%+v): %v", req, err)
	}
	return is
}

// writeIssued writes a certificate and key into a fresh directory.
func writeIssued(t *testing.T, is *Issued, name string) (certPath, keyPath string) {
	t.Helper()
	certPath, keyPath, err := is.WriteFiles(t.TempDir(), name)
	if err != nil {
		t.Fatalf("WriteFiles(%s): %v", name, err)
	}
	return certPath, keyPath
}

// crlPath returns the CA's CRL file.
func crlPath(ca *CA) string { return filepath.Join(ca.Dir, CRLFile) }

// loadNode issues a node certificate for name and loads it with the CA's
// certificate (or caPath when given) and CRL.
func loadNode(t *testing.T, ca *CA, req IssueRequest, caPath string) *Material {
	t.Helper()
	is := issue(t, ca, req)
	certPath, keyPath := writeIssued(t, is, req.Name)
	if caPath == "" {
		caPath = filepath.Join(ca.Dir, CACertFile)
	}
	m, err := Load(caPath, certPath, keyPath, crlPath(ca))
	if err != nil {
		t.Fatalf("Load(%s): %v", req.Name, err)
	}
	return m
}

// bundle writes the CA certificates of cas into one PEM file.
func bundle(t *testing.T, cas ...*CA) string {
	t.Helper()
	var data []byte
	for _, ca := range cas {
		b, err := os.ReadFile(filepath.Join(ca.Dir, CACertFile))
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, b...)
	}
	p := filepath.Join(t.TempDir(), "bundle.crt")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// signRaw signs a hand-made leaf with the CA's key, bypassing Issue, for
// certificates Issue refuses to make.
func signRaw(t *testing.T, ca *CA, cn string, uris []*url.URL) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         uris,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
