package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// File names inside a CA directory.
const (
	CACertFile   = "ca.crt"
	CAKeyFile    = "ca.key"
	CRLFile      = "ca.crl"
	issuedFile   = "issued.json" // name -> serials, so that revoke can take a name
	caValidYears = 10
)

// DefaultDays is how long a certificate is valid when the request says nothing.
const DefaultDays = 825

// KeyType selects the algorithm of a new key.
type KeyType string

const (
	KeyECDSA   KeyType = "ecdsa"   // ECDSA P-256 (default)
	KeyEd25519 KeyType = "ed25519" // Ed25519
)

func newKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case "", KeyECDSA:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyEd25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("certs: unknown key type %q: use ecdsa or ed25519", t)
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// CA is a loaded certificate authority.
type CA struct {
	Dir     string
	Cert    *x509.Certificate
	Key     crypto.Signer
	Cluster string
}

// InitCA creates a new CA for cluster in dir. It refuses to overwrite an
// existing CA, because every certificate it signed would stop working.
func InitCA(dir, cluster string, keyType KeyType) (*CA, error) {
	if cluster == "" {
		return nil, errors.New("certs: --cluster is required (the cluster's SIP domain, e.g. example.test)")
	}
	if err := ValidDomain(cluster); err != nil {
		return nil, err
	}
	// Either file alone is enough to refuse: a stray ca.crt still has nodes
	// trusting it, and replacing it would lock them out.
	for _, f := range []string{CAKeyFile, CACertFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("certs: %s already exists; refusing to overwrite a CA (use another --out)", filepath.Join(dir, f))
		}
	}
	// The key first: a bad --key-type must not leave an empty directory.
	key, err := newKey(keyType)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	id := Identity{Cluster: cluster, Kind: kindCA}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "sipmesh CA " + cluster, Organization: []string{cluster}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(caValidYears, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		URIs:                  []*url.URL{id.uri()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certs: create CA: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, CACertFile), pemBlock("CERTIFICATE", der), 0o644); err != nil {
		return nil, err
	}
	ca, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	// An empty CRL from the start means nodes can point tls.crl at it now.
	if _, err := ca.writeCRL(); err != nil {
		return nil, err
	}
	return ca, nil
}

// LoadCA loads the CA in dir.
func LoadCA(dir string) (*CA, error) {
	certs, err := ReadCertificates(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("certs: load CA from %s (create one with 'sipmesh ca init'): %w", dir, err)
	}
	key, err := ReadKey(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("certs: load CA key from %s: %w", dir, err)
	}
	id, err := IdentityOf(certs[0])
	if err != nil || id.Kind != kindCA {
		return nil, fmt.Errorf("certs: %s is not a sipmesh CA certificate", filepath.Join(dir, CACertFile))
	}
	return &CA{Dir: dir, Cert: certs[0], Key: key, Cluster: id.Cluster}, nil
}

// IssueRequest describes a certificate to issue.
type IssueRequest struct {
	Name       string
	Datacenter string   // node certificates; default "dc1"
	Roles      []string // node certificates; default all roles
	IPs        []net.IP
	DNSNames   []string
	Operator   bool
	Days       int // default DefaultDays
	KeyType    KeyType
	// NotBefore and NotAfter, when set, override Days: for certificates
	// that must already be expired or not yet valid (tests, rotations).
	NotBefore, NotAfter time.Time
}

// Issued is a newly issued certificate and its key, PEM encoded.
type Issued struct {
	CertPEM, KeyPEM []byte
	Cert            *x509.Certificate
}

// Issue signs a new node or operator certificate.
func (ca *CA) Issue(req IssueRequest) (*Issued, error) {
	if err := ValidName("name", req.Name); err != nil {
		return nil, err
	}
	id := Identity{Cluster: ca.Cluster, Name: req.Name, Kind: KindNode}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if req.Operator {
		id.Kind = KindOperator
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if req.Datacenter != "" || len(req.Roles) > 0 {
			return nil, errors.New("certs: an operator certificate takes neither --dc nor --roles")
		}
	} else {
		id.Datacenter = req.Datacenter
		if id.Datacenter == "" {
			id.Datacenter = "dc1"
		}
		if err := ValidName("datacenter", id.Datacenter); err != nil {
			return nil, err
		}
		id.Roles = req.Roles
		if len(id.Roles) == 0 {
			id.Roles = AllRoles
		}
		if err := ValidRoles(id.Roles); err != nil {
			return nil, err
		}
	}
	days := req.Days
	if days == 0 {
		days = DefaultDays
	}
	if days < 0 {
		return nil, fmt.Errorf("certs: --days %d must be positive", days)
	}
	key, err := newKey(req.KeyType)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	// AddDate, not a Duration: days*24h overflows a Duration past ~292 years.
	notBefore, notAfter := now.Add(-time.Hour), now.AddDate(0, 0, days)
	if !req.NotBefore.IsZero() {
		notBefore = req.NotBefore
	}
	if !req.NotAfter.IsZero() {
		notAfter = req.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.Name, Organization: []string{ca.Cluster}, OrganizationalUnit: []string{string(id.Kind)}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
		URIs:         []*url.URL{id.uri()},
		IPAddresses:  req.IPs,
		DNSNames:     req.DNSNames,
	}
	return ca.sign(tmpl, key)
}

// sign creates the certificate, records it for revocation by name, and
// returns it with its key.
func (ca *CA) sign(tmpl *x509.Certificate, key crypto.Signer) (*Issued, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: sign %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	idx, err := ca.readIssued()
	if err != nil {
		return nil, err
	}
	idx[tmpl.Subject.CommonName] = append(idx[tmpl.Subject.CommonName], cert.SerialNumber.String())
	if err := ca.writeIssued(idx); err != nil {
		return nil, err
	}
	return &Issued{CertPEM: pemBlock("CERTIFICATE", der), KeyPEM: keyPEM, Cert: cert}, nil
}

// WriteFiles writes NAME.crt and NAME.key (0600) into dir.
func (is *Issued) WriteFiles(dir, name string) (certPath, keyPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("certs: %w", err)
	}
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := writeFile(keyPath, is.KeyPEM, 0o600); err != nil {
		return "", "", err
	}
	return certPath, keyPath, writeFile(certPath, is.CertPEM, 0o644)
}

func (ca *CA) readIssued() (map[string][]string, error) {
	idx := map[string][]string{}
	data, err := os.ReadFile(filepath.Join(ca.Dir, issuedFile))
	if errors.Is(err, os.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("certs: %s is corrupt: %w", filepath.Join(ca.Dir, issuedFile), err)
	}
	return idx, nil
}

func (ca *CA) writeIssued(idx map[string][]string) error {
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return writeFile(filepath.Join(ca.Dir, issuedFile), data, 0o600)
}
