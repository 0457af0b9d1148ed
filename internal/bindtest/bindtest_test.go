package bindtest

import (
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// nsupdate sends script with BIND's own update client, signed with the
// key in keyFile, and returns its error (nil when the server accepted).
func nsupdate(t *testing.T, n *Named, keyFile, script string) (string, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(n.Addr)
	cmd := exec.Command(Bin(t, "nsupdate"), "-k", keyFile, "-t", "5")
	cmd.Stdin = strings.NewReader("server " + host + " " + port + "\nzone " + n.Zone + "\n" + script + "\nsend\n")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The harness is only useful if its server behaves as the tests assume:
// the key file grants updates, another secret under the same name does
// not, and nothing but the zone is answered.
func TestNamedGrantsTheKeyFileAndNothingElse(t *testing.T) {
	n := Start(t, Options{Zone: "example.test", Records: []string{`n1 IN TXT "operator"`}})

	if got := n.Query(t, "n1.example.test", "TXT").Data("TXT"); !slices.Equal(got, []string{`"operator"`}) {
		t.Fatalf("zone-file record: %q", got)
	}
	before := n.Serial(t)
	if out, err := nsupdate(t, n, n.KeyFile, "update add n2.example.test. 30 IN A 127.0.30.12"); err != nil {
		t.Fatalf("nsupdate with the harness's key file: %v\n%s", err, out)
	}
	if got := n.Query(t, "n2.example.test", "A").Data("A"); !slices.Equal(got, []string{"127.0.30.12"}) {
		t.Fatalf("A after a signed update: %q", got)
	}
	if after := n.Serial(t); after <= before {
		t.Errorf("serial %d after an update, was %d", after, before)
	}

	wrong := filepath.Join(t.TempDir(), "wrong.key")
	if secret := n.WriteKeyFile(t, wrong); secret == n.Secret {
		t.Fatal("a second key file got the same secret")
	}
	out, err := nsupdate(t, n, wrong, "update add n3.example.test. 30 IN A 127.0.30.13")
	if err == nil || !strings.Contains(out, "BADSIG") {
		t.Fatalf("nsupdate with another secret: err %v, want a BADSIG refusal\n%s", err, out)
	}
	if r := n.Query(t, "n3.example.test", "A"); r.Status != "NXDOMAIN" {
		t.Fatalf("refused update changed the zone: %s %v", r.Status, r.Answer)
	}

	// The transfer shows exactly the zone file plus the accepted update.
	var names []string
	for _, rr := range n.Transfer(t) {
		names = append(names, rr.Name+" "+rr.Type)
	}
	slices.Sort(names)
	want := []string{"example.test. NS", "example.test. SOA", "n1.example.test. TXT", "n2.example.test. A", "ns.example.test. A"}
	if !slices.Equal(names, want) {
		t.Errorf("AXFR = %q, want %q", names, want)
	}
	// Unsigned transfers are refused.
	if r := Dig(t, n.Addr, "AXFR", n.Zone); !strings.Contains(r.Raw, "Transfer failed") {
		t.Errorf("unsigned AXFR was not refused:\n%s", r.Raw)
	}
	// No recursion: a name outside the zone is refused, never looked up.
	if r := Dig(t, n.Addr, "example.org", "A"); r.Status != "REFUSED" || r.Has("ra") {
		t.Errorf("outside the zone: status %s flags %v, want REFUSED without ra", r.Status, r.Flags)
	}
}
