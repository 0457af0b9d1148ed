package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sync/atomic"
	"time"
)

// Reason classifies why a peer was refused. The values are metric labels.
type Reason string

const (
	ReasonNoCertificate Reason = "no_certificate"
	ReasonUnknownCA     Reason = "unknown_ca"
	ReasonExpired       Reason = "expired"
	ReasonRevoked       Reason = "revoked"
	ReasonNoIdentity    Reason = "no_identity"
	ReasonWrongCluster  Reason = "wrong_cluster"
	ReasonOperator      Reason = "operator_certificate"
	ReasonNameMismatch  Reason = "name_mismatch"
)

// RefusalError is returned when a peer's certificate is not accepted.
type RefusalError struct {
	Reason Reason
	Peer   string // what the certificate claims, when it could be read
	Detail string
}

func (e *RefusalError) Error() string {
	if e.Peer != "" {
		return fmt.Sprintf("certs: refused %s: %s: %s", e.Peer, e.Reason, e.Detail)
	}
	return fmt.Sprintf("certs: refused peer: %s: %s", e.Reason, e.Detail)
}

// Refusal builds a RefusalError.
func Refusal(reason Reason, peer, format string, args ...any) *RefusalError {
	return &RefusalError{Reason: reason, Peer: peer, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the refusal reason in err's chain, or "".
func ReasonOf(err error) Reason {
	var re *RefusalError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

type revocations struct {
	number  *big.Int
	raw     []byte
	revoked map[string]bool // serial (decimal) -> revoked
}

// Material is a node's (or operator's) loaded TLS identity: the trusted CA
// certificates, its own certificate and key, and the current revocation list.
// It is safe for concurrent use; the CRL may be replaced at any time.
type Material struct {
	Self    Identity
	Cluster string

	roots   *x509.CertPool
	caCerts []*x509.Certificate
	cert    tls.Certificate
	crl     atomic.Pointer[revocations]
	now     func() time.Time
}

// Load reads the CA bundle, the certificate and key, and the optional CRL
// (crlPath may be ""). It fails, saying what to fix, when the certificate is
// not one the CA signed, has expired, or is revoked.
func Load(caPath, certPath, keyPath, crlPath string) (*Material, error) {
	cas, err := ReadCertificates(caPath)
	if err != nil {
		return nil, fmt.Errorf("certs: tls.ca: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("certs: tls.cert/tls.key (%s, %s): %w", certPath, keyPath, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", certPath, err)
	}
	pair.Leaf = leaf
	m := &Material{roots: x509.NewCertPool(), caCerts: cas, cert: pair, now: time.Now}
	for _, c := range cas {
		m.roots.AddCert(c)
	}
	self, err := IdentityOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w (issue one with 'sipmesh cert issue')", certPath, err)
	}
	m.Self, m.Cluster = self, self.Cluster
	m.crl.Store(&revocations{revoked: map[string]bool{}})
	if crlPath != "" {
		data, err := os.ReadFile(crlPath)
		if err != nil {
			return nil, fmt.Errorf("certs: tls.crl: %w", err)
		}
		if _, err := m.UpdateCRL(data); err != nil {
			return nil, fmt.Errorf("certs: tls.crl %s: %w", crlPath, err)
		}
	}
	if _, err := m.verify([]*x509.Certificate{leaf}, true); err != nil {
		return nil, fmt.Errorf("certs: own certificate %s cannot be used (%s): %w", certPath, ownCertAdvice(ReasonOf(err)), err)
	}
	return m, nil
}

// ownCertAdvice says what an operator does about a refused own certificate.
func ownCertAdvice(r Reason) string {
	switch r {
	case ReasonUnknownCA, ReasonWrongCluster:
		return "tls.ca must be the CA that issued it"
	case ReasonNoIdentity:
		return "issue one with 'sipmesh cert issue'"
	default:
		return "issue a new one with 'sipmesh cert issue'"
	}
}

// SetClock replaces the clock used for expiry checks (tests).
func (m *Material) SetClock(now func() time.Time) { m.now = now }

// Certificate returns the holder's own certificate.
func (m *Material) Certificate() *tls.Certificate { return &m.cert }

// CRL returns the current revocation list as loaded (nil when none).
func (m *Material) CRL() []byte { return m.crl.Load().raw }

// Revoked reports whether serial is on the current revocation list.
func (m *Material) Revoked(serial *big.Int) bool {
	return serial != nil && m.crl.Load().revoked[serial.String()]
}

// UpdateCRL installs a revocation list if it is signed by a trusted CA and
// newer (by CRL number) than the current one. It reports whether it changed.
func (m *Material) UpdateCRL(data []byte) (bool, error) {
	crl, err := ParseCRL(data)
	if err != nil {
		return false, err
	}
	var sigErr error = errors.New("signed by no trusted CA")
	for _, ca := range m.caCerts {
		if sigErr = crl.CheckSignatureFrom(ca); sigErr == nil {
			break
		}
	}
	if sigErr != nil {
		return false, fmt.Errorf("certs: revocation list rejected: %w", sigErr)
	}
	number := crl.Number
	if number == nil {
		number = big.NewInt(0)
	}
	for {
		cur := m.crl.Load()
		if cur.number != nil && number.Cmp(cur.number) <= 0 {
			return false, nil
		}
		next := &revocations{number: number, raw: bytes.Clone(data), revoked: map[string]bool{}}
		for _, e := range crl.RevokedCertificateEntries {
			next.revoked[e.SerialNumber.String()] = true
		}
		if m.crl.CompareAndSwap(cur, next) {
			return true, nil
		}
	}
}

// Verify checks a peer's certificate chain (leaf first) and returns its
// identity. Operator certificates are accepted only when allowOperator.
func (m *Material) Verify(chain []*x509.Certificate, allowOperator bool) (Identity, error) {
	return m.verify(chain, allowOperator)
}

func (m *Material) verify(chain []*x509.Certificate, allowOperator bool) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, Refusal(ReasonNoCertificate, "", "the peer presented no certificate")
	}
	leaf := chain[0]
	claim, idErr := IdentityOf(leaf)
	peer := fmt.Sprintf("%q (serial %s)", leaf.Subject.CommonName, leaf.SerialNumber)
	if idErr == nil {
		peer = claim.String()
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         m.roots,
		Intermediates: inter,
		CurrentTime:   m.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return Identity{}, Refusal(ReasonExpired, peer, "certificate valid %s to %s", leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339))
		}
		return Identity{}, Refusal(ReasonUnknownCA, peer, "not signed by the cluster CA: %v", err)
	}
	if idErr != nil {
		return Identity{}, Refusal(ReasonNoIdentity, peer, "%v", idErr)
	}
	if m.Revoked(leaf.SerialNumber) {
		return Identity{}, Refusal(ReasonRevoked, peer, "serial %s is on the revocation list", leaf.SerialNumber)
	}
	if claim.Cluster != m.Cluster {
		return Identity{}, Refusal(ReasonWrongCluster, peer, "certificate is for cluster %q, this is %q", claim.Cluster, m.Cluster)
	}
	// With several CAs in the bundle (a migration, a neighbour cluster), a
	// CA only vouches for its own cluster: another cluster's CA must not be
	// able to mint identities of ours.
	if !signedForCluster(chains, claim.Cluster) {
		return Identity{}, Refusal(ReasonWrongCluster, peer, "certificate claims cluster %q but was signed by another cluster's CA", claim.Cluster)
	}
	switch claim.Kind {
	case KindNode:
	case KindOperator:
		if !allowOperator {
			return Identity{}, Refusal(ReasonOperator, peer, "operator certificates may only use the admin API")
		}
	default:
		return Identity{}, Refusal(ReasonNoIdentity, peer, "a %s certificate cannot be used by a peer", claim.Kind)
	}
	return claim, nil
}

// signedForCluster reports whether one of the verified chains ends in a CA
// that may sign for cluster: a sipmesh CA of that cluster, or a CA without a
// sipmesh identity, which the operator chose to trust for everything.
func signedForCluster(chains [][]*x509.Certificate, cluster string) bool {
	for _, ch := range chains {
		root := ch[len(ch)-1]
		id, err := IdentityOf(root)
		if err != nil || id.Kind != kindCA || id.Cluster == cluster {
			return true
		}
	}
	return false
}

// ServerConfig is the tls.Config of a listener that requires a client
// certificate from this cluster. onRefuse (may be nil) sees every refusal,
// including a client that sent no certificate at all.
//
// Verification runs in VerifyConnection, which, unlike VerifyPeerCertificate,
// also runs on resumed sessions: a certificate revoked after its first
// handshake must not come back through a session ticket.
func (m *Material) ServerConfig(allowOperator bool, onRefuse func(err error)) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.cert},
		// Request rather than require, so that a missing certificate reaches
		// VerifyConnection and is reported with its reason.
		ClientAuth: tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := m.verify(cs.PeerCertificates, allowOperator)
			if err != nil && onRefuse != nil {
				onRefuse(err)
			}
			return err
		},
	}
}

// ClientConfig is the tls.Config of a dialer. When expectName is not empty
// the server's certificate must name that node.
func (m *Material) ClientConfig(expectName string, onRefuse func(err error)) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{m.cert},
		InsecureSkipVerify: true, // verified below: identity is the sipmesh URI, not a host name
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := m.verify(cs.PeerCertificates, false)
			if err == nil && expectName != "" && id.Name != expectName {
				err = Refusal(ReasonNameMismatch, id.String(), "expected node %q", expectName)
			}
			if err != nil && onRefuse != nil {
				onRefuse(err)
			}
			return err
		},
	}
}

// PeerIdentity reads the verified identity of a completed TLS connection.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, Refusal(ReasonNoCertificate, "", "no peer certificate")
	}
	return IdentityOf(cs.PeerCertificates[0])
}

// WatchCRL polls path and installs a changed CRL; it returns when stop is
// closed. onChange is called after a newer list was installed, onError when a
// changed file could not be used.
func (m *Material) WatchCRL(path string, every time.Duration, stop <-chan struct{}, onChange func(), onError func(error)) {
	var lastMod time.Time
	var lastSize int64
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		st, err := os.Stat(path)
		if err != nil {
			if onError != nil {
				onError(fmt.Errorf("certs: tls.crl: %w", err))
			}
			continue
		}
		if st.ModTime().Equal(lastMod) && st.Size() == lastSize {
			continue
		}
		lastMod, lastSize = st.ModTime(), st.Size()
		data, err := os.ReadFile(path)
		if err == nil {
			var changed bool
			changed, err = m.UpdateCRL(data)
			if changed && onChange != nil {
				onChange()
			}
		}
		if err != nil && onError != nil {
			onError(err)
		}
	}
}
