package certs

import (
	"fmt"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"
)

func readCRL(t *testing.T, ca *CA) []byte {
	t.Helper()
	data, err := os.ReadFile(crlPath(ca))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRevoke(t *testing.T) {
	for _, tc := range []struct {
		name string
		// arg picks what to revoke given the certificates issued to n1
		// (twice), n2 and n3.
		arg         func(n1a, n1b, n2 *Issued) string
		wantRevoked func(n1a, n1b, n2 *Issued) []*big.Int
		wantErr     string
	}{
		{
			name:        "by name revokes every certificate of the name",
			arg:         func(_, _, _ *Issued) string { return "n1" },
			wantRevoked: func(a, b, _ *Issued) []*big.Int { return []*big.Int{a.Cert.SerialNumber, b.Cert.SerialNumber} },
		},
		{
			name:        "by decimal serial",
			arg:         func(_, _, n2 *Issued) string { return n2.Cert.SerialNumber.String() },
			wantRevoked: func(_, _, n2 *Issued) []*big.Int { return []*big.Int{n2.Cert.SerialNumber} },
		},
		{
			name:        "by hex serial",
			arg:         func(_, b, _ *Issued) string { return fmt.Sprintf("0x%x", b.Cert.SerialNumber) },
			wantRevoked: func(_, b, _ *Issued) []*big.Int { return []*big.Int{b.Cert.SerialNumber} },
		},
		{
			name:    "unknown name",
			arg:     func(_, _, _ *Issued) string { return "nobody" },
			wantErr: `"nobody" is neither a name this CA issued to nor a serial number`,
		},
		{
			name:    "negative serial",
			arg:     func(_, _, _ *Issued) string { return "-5" },
			wantErr: "serial numbers are positive",
		},
		{
			name:    "empty",
			arg:     func(_, _, _ *Issued) string { return "" },
			wantErr: "neither a name",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newTestCA(t, "example.test", "")
			n1a := issue(t, ca, IssueRequest{Name: "n1"})
			n1b := issue(t, ca, IssueRequest{Name: "n1"})
			n2 := issue(t, ca, IssueRequest{Name: "n2"})
			n3 := issue(t, ca, IssueRequest{Name: "n3"})
			m := loadNode(t, ca, IssueRequest{Name: "n9"}, "")
			before := readCRL(t, ca)

			added, err := ca.Revoke(tc.arg(n1a, n1b, n2))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Revoke = %v, %v; want error containing %q", added, err, tc.wantErr)
				}
				if string(readCRL(t, ca)) != string(before) {
					t.Error("ca.crl changed although Revoke failed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tc.wantRevoked(n1a, n1b, n2)
			if !sameSerials(added, want) {
				t.Errorf("Revoke added %v, want %v", added, want)
			}
			changed, err := m.UpdateCRL(readCRL(t, ca))
			if err != nil || !changed {
				t.Fatalf("UpdateCRL = %v, %v", changed, err)
			}
			for _, is := range []*Issued{n1a, n1b, n2, n3} {
				wantRev := containsSerial(want, is.Cert.SerialNumber)
				if got := m.Revoked(is.Cert.SerialNumber); got != wantRev {
					t.Errorf("Revoked(%s) = %v, want %v", is.Cert.Subject.CommonName, got, wantRev)
				}
			}
			// Revoking again adds nothing and leaves the list as it was.
			first := readCRL(t, ca)
			again, err := ca.Revoke(tc.arg(n1a, n1b, n2))
			if err != nil || len(again) != 0 {
				t.Errorf("second Revoke = %v, %v; want nothing added", again, err)
			}
			if string(readCRL(t, ca)) != string(first) {
				t.Error("a Revoke that added nothing rewrote ca.crl")
			}
			crl, err := ParseCRL(readCRL(t, ca))
			if err != nil {
				t.Fatal(err)
			}
			if len(crl.RevokedCertificateEntries) != len(want) {
				t.Errorf("CRL has %d entries, want %d", len(crl.RevokedCertificateEntries), len(want))
			}
		})
	}
}

func TestRevokeAccumulates(t *testing.T) {
	ca := newTestCA(t, "example.test", KeyEd25519)
	a := issue(t, ca, IssueRequest{Name: "a"})
	b := issue(t, ca, IssueRequest{Name: "b"})
	var numbers []*big.Int
	for _, name := range []string{"a", "b"} {
		if _, err := ca.Revoke(name); err != nil {
			t.Fatal(err)
		}
		crl, err := ParseCRL(readCRL(t, ca))
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
			t.Fatalf("CRL signature: %v", err)
		}
		if !crl.NextUpdate.After(time.Now().Add(24 * time.Hour)) {
			t.Errorf("CRL NextUpdate %v is too close", crl.NextUpdate)
		}
		numbers = append(numbers, crl.Number)
	}
	if numbers[1].Cmp(numbers[0]) <= 0 {
		t.Errorf("CRL numbers %v do not increase", numbers)
	}
	crl, _ := ParseCRL(readCRL(t, ca))
	var got []*big.Int
	for _, e := range crl.RevokedCertificateEntries {
		got = append(got, e.SerialNumber)
	}
	if !sameSerials(got, []*big.Int{a.Cert.SerialNumber, b.Cert.SerialNumber}) {
		t.Errorf("CRL entries %v, want both a and b", got)
	}
}

func TestUpdateCRL(t *testing.T) {
	ca := newTestCA(t, "example.test", "")
	other := newTestCA(t, "example.test", "")
	victim := issue(t, ca, IssueRequest{Name: "victim"})
	m := loadNode(t, ca, IssueRequest{Name: "n1"}, "")
	older := readCRL(t, ca)

	if _, err := ca.Revoke("victim"); err != nil {
		t.Fatal(err)
	}
	newer := readCRL(t, ca)

	// Another CA's list is rejected, even though it parses.
	if changed, err := m.UpdateCRL(readCRL(t, other)); err == nil || changed || !strings.Contains(err.Error(), "revocation list rejected") {
		t.Fatalf("UpdateCRL(other CA) = %v, %v", changed, err)
	}
	if changed, err := m.UpdateCRL([]byte("not a CRL")); err == nil || changed {
		t.Fatalf("UpdateCRL(garbage) = %v, %v", changed, err)
	}
	if m.Revoked(victim.Cert.SerialNumber) {
		t.Fatal("victim revoked before the newer list was installed")
	}
	if changed, err := m.UpdateCRL(newer); err != nil || !changed {
		t.Fatalf("UpdateCRL(newer) = %v, %v", changed, err)
	}
	if !m.Revoked(victim.Cert.SerialNumber) {
		t.Fatal("victim not revoked after the newer list")
	}
	if string(m.CRL()) != string(newer) {
		t.Error("CRL() does not return the installed list")
	}
	// The same or an older list changes nothing: a stale copy arriving late
	// must not un-revoke.
	for name, data := range map[string][]byte{"same": newer, "older": older} {
		if changed, err := m.UpdateCRL(data); err != nil || changed {
			t.Errorf("UpdateCRL(%s) = %v, %v; want false, nil", name, changed, err)
		}
	}
	if !m.Revoked(victim.Cert.SerialNumber) {
		t.Fatal("an older list un-revoked the victim")
	}
}

func TestWatchCRL(t *testing.T) {
	ca := newTestCA(t, "example.test", "")
	victim := issue(t, ca, IssueRequest{Name: "victim"})
	m := loadNode(t, ca, IssueRequest{Name: "n1"}, "")
	stop := make(chan struct{})
	changed := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.WatchCRL(crlPath(ca), 5*time.Millisecond, stop, func() { changed <- struct{}{} }, func(err error) { t.Errorf("WatchCRL: %v", err) })
	}()
	defer func() { close(stop); <-done }()

	if _, err := ca.Revoke("victim"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("WatchCRL did not install the rewritten list")
	}
	if !m.Revoked(victim.Cert.SerialNumber) {
		t.Fatal("victim not revoked after WatchCRL reported a change")
	}
}

func containsSerial(list []*big.Int, s *big.Int) bool {
	for _, x := range list {
		if x.Cmp(s) == 0 {
			return true
		}
	}
	return false
}

func sameSerials(a, b []*big.Int) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !containsSerial(b, x) {
			return false
		}
	}
	return true
}
