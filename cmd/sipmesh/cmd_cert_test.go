package main

import (
	"bytes"
	"context"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sipmesh/sipmesh/certs"
)

// certRun runs the CLI in-process and returns its exit code and output.
func certRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runCLI(context.Background(), &cliEnv{stdout: &out, stderr: &errOut}, args)
	return code, out.String(), errOut.String()
}

// certMustRun runs the CLI and fails the test unless it exits 0.
func certMustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := certRun(t, args...)
	if code != 0 {
		t.Fatalf("sipmesh %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func certFileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func certRead(t *testing.T, path string) certs.Identity {
	t.Helper()
	cs, err := certs.ReadCertificates(path)
	if err != nil {
		t.Fatal(err)
	}
	id, err := certs.IdentityOf(cs[0])
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestCAInit(t *testing.T) {
	for _, kt := range []string{"", "ecdsa", "ed25519"} {
		t.Run(kt, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			args := []string{"ca", "init", "--cluster", "example.test", "--out", dir}
			if kt != "" {
				args = append(args, "--key-type", kt)
			}
			out := certMustRun(t, args...)
			for file, mode := range map[string]os.FileMode{"ca.crt": 0o644, "ca.key": 0o600, "ca.crl": 0o644} {
				path := filepath.Join(dir, file)
				if got := certFileMode(t, path); got != mode {
					t.Errorf("%s mode %v, want %v", file, got, mode)
				}
				if !strings.Contains(out, path) {
					t.Errorf("output does not mention %s:\n%s", path, out)
				}
			}
			if !strings.Contains(out, "sipmesh cert issue --ca "+shellQuote(dir)) {
				t.Errorf("output does not give the next command:\n%s", out)
			}
			ca, err := certs.LoadCA(dir)
			if err != nil {
				t.Fatal(err)
			}
			if ca.Cluster != "example.test" {
				t.Errorf("cluster %q", ca.Cluster)
			}
			wantAlgo := "ECDSA"
			if kt == "ed25519" {
				wantAlgo = "Ed25519"
			}
			if got := ca.Cert.PublicKeyAlgorithm.String(); got != wantAlgo {
				t.Errorf("key algorithm %s, want %s", got, wantAlgo)
			}
		})
	}
}

func TestCAInitRefusesOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	certMustRun(t, "ca", "init", "--cluster", "example.test", "--out", dir)
	before, _ := os.ReadFile(filepath.Join(dir, "ca.key"))
	code, _, errOut := certRun(t, "ca", "init", "--cluster", "example.test", "--out", dir)
	if code != 1 || !strings.Contains(errOut, "refusing to overwrite") || !strings.Contains(errOut, "--out") {
		t.Fatalf("second ca init: exit %d, stderr %q", code, errOut)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "ca.key"))
	if !bytes.Equal(before, after) {
		t.Fatal("ca.key was replaced")
	}
}

// certNewCADir runs ca init in a temporary directory.
func certNewCADir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	certMustRun(t, "ca", "init", "--cluster", "example.test", "--out", dir)
	return dir
}

func TestCertIssue(t *testing.T) {
	caDir := certNewCADir(t)
	for _, tc := range []struct {
		name     string
		args     []string
		want     certs.Identity
		wantIPs  []string
		wantDNS  []string
		keyAlgo  string
		wantText []string
	}{
		{
			name:     "defaults",
			args:     []string{"--name", "n1"},
			want:     certs.Identity{Name: "n1", Datacenter: "dc1", Roles: certs.AllRoles, Kind: certs.KindNode},
			keyAlgo:  "ECDSA",
			wantText: []string{`node certificate "n1"`, "dc1", "proxy, registrar, relay, presence"},
		},
		{
			name: "dc roles addresses",
			args: []string{"--name", "edge-1", "--dc", "fra", "--roles", "proxy,relay", "--ip", "127.0.0.11", "--ip", "::1,10.0.0.1", "--dns", "edge-1.example.test", "--key-type", "ed25519", "--days", "30"},
			want: certs.Identity{Name: "edge-1", Datacenter: "fra", Roles: []string{"proxy", "relay"}, Kind: certs.KindNode},
			// Repeated and comma-separated --ip both count.
			wantIPs:  []string{"127.0.0.11", "::1", "10.0.0.1"},
			wantDNS:  []string{"edge-1.example.test"},
			keyAlgo:  "Ed25519",
			wantText: []string{"fra", "proxy, relay", "127.0.0.11, ::1, 10.0.0.1", "edge-1.example.test"},
		},
		{
			name:     "operator",
			args:     []string{"--name", "alice", "--operator"},
			want:     certs.Identity{Name: "alice", Kind: certs.KindOperator},
			keyAlgo:  "ECDSA",
			wantText: []string{`operator certificate "alice"`, "admin API"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			stdout := certMustRun(t, append([]string{"cert", "issue", "--ca", caDir, "--out", out}, tc.args...)...)
			certPath := filepath.Join(out, tc.want.Name+".crt")
			keyPath := filepath.Join(out, tc.want.Name+".key")
			if m := certFileMode(t, keyPath); m != 0o600 {
				t.Errorf("key mode %v, want 0600", m)
			}
			id := certRead(t, certPath)
			if id.Cluster != "example.test" || id.Name != tc.want.Name || id.Datacenter != tc.want.Datacenter ||
				id.Kind != tc.want.Kind || !slices.Equal(id.Roles, tc.want.Roles) {
				t.Errorf("identity %+v, want %+v", id, tc.want)
			}
			cs, _ := certs.ReadCertificates(certPath)
			var ips []string
			for _, ip := range cs[0].IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tc.wantIPs) || !slices.Equal(cs[0].DNSNames, tc.wantDNS) {
				t.Errorf("SANs %v %v, want %v %v", ips, cs[0].DNSNames, tc.wantIPs, tc.wantDNS)
			}
			if got := cs[0].PublicKeyAlgorithm.String(); got != tc.keyAlgo {
				t.Errorf("key algorithm %s, want %s", got, tc.keyAlgo)
			}
			// The printed identity is the one issued.
			for _, w := range append(tc.wantText, id.Serial.String(), certPath, keyPath) {
				if !strings.Contains(stdout, w) {
					t.Errorf("output does not contain %q:\n%s", w, stdout)
				}
			}
			// What was written loads as a usable identity.
			m, err := certs.Load(filepath.Join(caDir, "ca.crt"), certPath, keyPath, filepath.Join(caDir, "ca.crl"))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if m.Self.Name != tc.want.Name {
				t.Errorf("loaded %+v", m.Self)
			}
		})
	}
}

func TestCertIssueDays(t *testing.T) {
	caDir := certNewCADir(t)
	out := t.TempDir()
	certMustRun(t, "cert", "issue", "--ca", caDir, "--name", "short", "--days", "2", "--out", out)
	certMustRun(t, "cert", "issue", "--ca", caDir, "--name", "long", "--out", out)
	short, long := certRead(t, filepath.Join(out, "short.crt")), certRead(t, filepath.Join(out, "long.crt"))
	if d := long.NotAfter.Sub(short.NotAfter).Hours() / 24; d < float64(certs.DefaultDays-2)-1 || d > float64(certs.DefaultDays-2)+1 {
		t.Errorf("default validity is %.1f days longer than --days 2, want %d", d, certs.DefaultDays-2)
	}
}

func TestCertRevoke(t *testing.T) {
	caDir := certNewCADir(t)
	out := t.TempDir()
	certMustRun(t, "cert", "issue", "--ca", caDir, "--name", "n1", "--out", out)
	certMustRun(t, "cert", "issue", "--ca", caDir, "--name", "n2", "--out", out)
	certMustRun(t, "cert", "issue", "--ca", caDir, "--name", "n3", "--out", out)
	n1, n2, n3 := certRead(t, filepath.Join(out, "n1.crt")), certRead(t, filepath.Join(out, "n2.crt")), certRead(t, filepath.Join(out, "n3.crt"))

	crlFile := filepath.Join(caDir, "ca.crl")
	revokedNow := func() map[string]bool {
		data, err := os.ReadFile(crlFile)
		if err != nil {
			t.Fatal(err)
		}
		crl, err := certs.ParseCRL(data)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, e := range crl.RevokedCertificateEntries {
			got[e.SerialNumber.String()] = true
		}
		return got
	}

	for _, step := range []struct {
		arg    string
		serial *big.Int
	}{
		{"n1", n1.Serial},
		{n2.Serial.String(), n2.Serial},
		{fmt.Sprintf("0x%x", n3.Serial), n3.Serial},
	} {
		stdout := certMustRun(t, "cert", "revoke", "--ca", caDir, step.arg)
		if !strings.Contains(stdout, step.serial.String()) || !strings.Contains(stdout, crlFile) || !strings.Contains(stdout, "Copy") {
			t.Errorf("revoke %s output lacks the serial, the CRL path or the copy advice:\n%s", step.arg, stdout)
		}
		if !revokedNow()[step.serial.String()] {
			t.Errorf("after revoke %s, serial %s is not on %s", step.arg, step.serial, crlFile)
		}
	}
	if got := revokedNow(); len(got) != 3 {
		t.Errorf("CRL holds %d serials, want 3", len(got))
	}
	// A node holding the CRL refuses to start with the revoked certificate.
	_, err := certs.Load(filepath.Join(caDir, "ca.crt"), filepath.Join(out, "n1.crt"), filepath.Join(out, "n1.key"), crlFile)
	if certs.ReasonOf(err) != certs.ReasonRevoked {
		t.Errorf("Load of revoked n1: %v", err)
	}
	// Revoking again says so and leaves the list alone.
	before, _ := os.ReadFile(crlFile)
	stdout := certMustRun(t, "cert", "revoke", "--ca", caDir, "n1")
	if !strings.Contains(stdout, "already revoked") {
		t.Errorf("second revoke output:\n%s", stdout)
	}
	if after, _ := os.ReadFile(crlFile); !bytes.Equal(before, after) {
		t.Error("second revoke rewrote ca.crl")
	}
}

func TestCertCommandErrors(t *testing.T) {
	caDir := certNewCADir(t)
	out := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // substrings of stderr
	}{
		{"ca init without cluster", []string{"ca", "init", "--out", filepath.Join(out, "x")}, 2, []string{"--cluster is required", "example.test"}},
		{"ca init without out", []string{"ca", "init", "--cluster", "example.test"}, 2, []string{"--out is required"}},
		{"ca init bad cluster", []string{"ca", "init", "--cluster", "Not A Domain", "--out", filepath.Join(out, "y")}, 1, []string{`"Not A Domain" is not a valid domain`}},
		{"ca init bad key type", []string{"ca", "init", "--cluster", "example.test", "--out", filepath.Join(out, "z"), "--key-type", "rsa"}, 1, []string{`unknown key type "rsa"`, "ecdsa or ed25519"}},
		{"ca init stray argument", []string{"ca", "init", "--cluster", "example.test", "--out", filepath.Join(out, "w"), "extra"}, 2, []string{`unexpected argument "extra"`}},
		{"ca init unknown flag", []string{"ca", "init", "--bogus"}, 2, []string{"-bogus", "usage: sipmesh ca init"}},
		{"issue without ca", []string{"cert", "issue", "--name", "n1", "--out", out}, 2, []string{"--ca is required", "sipmesh ca init"}},
		{"issue without name", []string{"cert", "issue", "--ca", caDir, "--out", out}, 2, []string{"--name is required"}},
		{"issue without out", []string{"cert", "issue", "--ca", caDir, "--name", "n1"}, 2, []string{"--out is required", "n1.crt"}},
		{"issue bad ip", []string{"cert", "issue", "--ca", caDir, "--name", "n1", "--ip", "10.0.0.300", "--out", out}, 2, []string{`--ip "10.0.0.300" is not an IP address`}},
		{"issue zero days", []string{"cert", "issue", "--ca", caDir, "--name", "n1", "--days", "0", "--out", out}, 2, []string{"--days 0"}},
		{"issue bad name", []string{"cert", "issue", "--ca", caDir, "--name", "Node_1", "--out", out}, 1, []string{`name "Node_1" is not valid`}},
		{"issue bad dc", []string{"cert", "issue", "--ca", caDir, "--name", "n1", "--dc", "-x", "--out", out}, 1, []string{`datacenter "-x" is not valid`}},
		{"issue bad role", []string{"cert", "issue", "--ca", caDir, "--name", "n1", "--roles", "proxy,pbx", "--out", out}, 1, []string{`unknown role "pbx"`, "valid roles are"}},
		{"issue operator with roles", []string{"cert", "issue", "--ca", caDir, "--name", "op", "--operator", "--roles", "proxy", "--out", out}, 1, []string{"operator certificate takes neither"}},
		{"issue from missing ca", []string{"cert", "issue", "--ca", filepath.Join(out, "nope"), "--name", "n1", "--out", out}, 1, []string{filepath.Join(out, "nope"), "sipmesh ca init"}},
		{"revoke without ca", []string{"cert", "revoke", "n1"}, 2, []string{"--ca is required"}},
		{"revoke without target", []string{"cert", "revoke", "--ca", caDir}, 2, []string{"a name", "serial"}},
		{"revoke unknown", []string{"cert", "revoke", "--ca", caDir, "nobody"}, 1, []string{`"nobody" is neither a name`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := certRun(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not contain %q", stderr, w)
				}
			}
			if stdout != "" {
				t.Errorf("stdout on error: %q", stdout)
			}
		})
	}
	// Nothing was issued or written by the failed commands.
	entries, _ := os.ReadDir(out)
	if len(entries) != 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("failed commands left files in --out: %v", names)
	}
}
