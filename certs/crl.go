package certs

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// crlValidity is how long a CRL is valid before a new one must be written.
// Nodes keep using an outdated CRL (refusing more is safer than refusing
// less) but log it.
const crlValidity = 365 * 24 * time.Hour

// Revoke revokes every certificate issued to a name, or the one with a serial
// number (decimal or hex with 0x), and rewrites ca.crl. It returns the serials
// it added; when there are none, ca.crl is left as it was.
func (ca *CA) Revoke(nameOrSerial string) ([]*big.Int, error) {
	idx, err := ca.readIssued()
	if err != nil {
		return nil, err
	}
	var serials []*big.Int
	if names, ok := idx[nameOrSerial]; ok {
		for _, s := range names {
			n, ok := new(big.Int).SetString(s, 10)
			if !ok {
				return nil, fmt.Errorf("certs: %s is corrupt: serial %q of %q", filepath.Join(ca.Dir, issuedFile), s, nameOrSerial)
			}
			serials = append(serials, n)
		}
	} else if n, ok := new(big.Int).SetString(nameOrSerial, 0); ok {
		if n.Sign() <= 0 {
			return nil, fmt.Errorf("certs: serial %s is not valid: serial numbers are positive", nameOrSerial)
		}
		serials = append(serials, n)
	} else {
		return nil, fmt.Errorf("certs: %q is neither a name this CA issued to nor a serial number: give a name listed in %s or a serial (decimal, or hex with 0x)",
			nameOrSerial, filepath.Join(ca.Dir, issuedFile))
	}
	current, err := ca.currentCRL()
	if err != nil {
		return nil, err
	}
	entries := []x509.RevocationListEntry{}
	seen := map[string]bool{}
	if current != nil {
		for _, e := range current.RevokedCertificateEntries {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: e.SerialNumber, RevocationTime: e.RevocationTime})
			seen[e.SerialNumber.String()] = true
		}
	}
	var added []*big.Int
	for _, s := range serials {
		if seen[s.String()] {
			continue
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now()})
		added = append(added, s)
	}
	// Nothing new: keep the list and its number, so that nodes do not
	// reload and re-spread an identical list.
	if len(added) == 0 && current != nil {
		return nil, nil
	}
	if _, err := ca.writeCRLEntries(current, entries); err != nil {
		return nil, err
	}
	return added, nil
}

func (ca *CA) currentCRL() (*x509.RevocationList, error) {
	data, err := os.ReadFile(filepath.Join(ca.Dir, CRLFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	return ParseCRL(data)
}

func (ca *CA) writeCRL() (*x509.RevocationList, error) {
	current, err := ca.currentCRL()
	if err != nil {
		return nil, err
	}
	var entries []x509.RevocationListEntry
	if current != nil {
		entries = current.RevokedCertificateEntries
	}
	return ca.writeCRLEntries(current, entries)
}

func (ca *CA) writeCRLEntries(current *x509.RevocationList, entries []x509.RevocationListEntry) (*x509.RevocationList, error) {
	number := big.NewInt(1)
	if current != nil && current.Number != nil {
		number = new(big.Int).Add(current.Number, big.NewInt(1))
	}
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now,
		NextUpdate:                now.Add(crlValidity),
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: sign CRL: %w", err)
	}
	if err := writeFile(filepath.Join(ca.Dir, CRLFile), pemBlock("X509 CRL", der), 0o644); err != nil {
		return nil, err
	}
	return x509.ParseRevocationList(der)
}

// ParseCRL parses a PEM or DER revocation list.
func ParseCRL(data []byte) (*x509.RevocationList, error) {
	if b, _ := pem.Decode(data); b != nil {
		data = b.Bytes
	}
	crl, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("certs: parse CRL: %w", err)
	}
	return crl, nil
}
