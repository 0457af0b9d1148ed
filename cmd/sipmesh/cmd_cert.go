package main

import (
	"context"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sipmesh/sipmesh/certs"
)

// usageErr prints what is wrong with the command line and how to see the
// flags, and returns errUsage (exit status 2).
func usageErr(env *cliEnv, name, format string, args ...any) error {
	fmt.Fprintf(env.stderr, "sipmesh %s: %s\n", name, fmt.Sprintf(format, args...))
	fmt.Fprintf(env.stderr, "Run 'sipmesh %s -h' for its flags.\n", name)
	return errUsage
}

// noArgs refuses positional arguments of a command that takes none: a typo
// such as "--out" without a value must not be silently ignored.
func noArgs(env *cliEnv, name string, pos []string) error {
	if len(pos) > 0 {
		return usageErr(env, name, "unexpected argument %q", pos[0])
	}
	return nil
}

// shellQuote quotes a path for the commands we print, so that they can be
// pasted as they are.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == ':' ||
			r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func serialText(n *big.Int) string { return fmt.Sprintf("%s (0x%x)", n, n) }

func cmdCAInit(_ context.Context, env *cliEnv, args []string) error {
	const name, synopsis = "ca init", "--cluster DOMAIN --out DIR [--key-type ecdsa|ed25519]"
	fs := newFlags(env, name, synopsis)
	cluster := fs.String("cluster", "", "the cluster's SIP domain, e.g. example.test (required)")
	out := fs.String("out", "", "directory to write ca.crt, ca.key and ca.crl into (required)")
	keyType := fs.String("key-type", string(certs.KeyECDSA), "key algorithm: ecdsa (P-256) or ed25519")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(env, name, pos); err != nil {
		return err
	}
	if *cluster == "" {
		return usageErr(env, name, "--cluster is required: the cluster's SIP domain, e.g. --cluster example.test")
	}
	if *out == "" {
		return usageErr(env, name, "--out is required: the directory to create the CA in, e.g. --out ./ca")
	}
	ca, err := certs.InitCA(*out, *cluster, certs.KeyType(*keyType))
	if err != nil {
		return err
	}
	w := env.stdout
	fmt.Fprintf(w, "Created the CA of cluster %q (%s key, valid until %s):\n", ca.Cluster, ca.Cert.PublicKeyAlgorithm, ca.Cert.NotAfter.Format(time.DateOnly))
	fmt.Fprintf(w, "  %-24s CA certificate: every node's tls.ca\n", filepath.Join(*out, certs.CACertFile))
	fmt.Fprintf(w, "  %-24s CA private key (mode 0600): keep it off the nodes, it signs certificates\n", filepath.Join(*out, certs.CAKeyFile))
	fmt.Fprintf(w, "  %-24s revocation list: every node's tls.crl\n", filepath.Join(*out, certs.CRLFile))
	fmt.Fprintln(w, "Next, issue a certificate for each node, e.g.:")
	fmt.Fprintf(w, "  sipmesh cert issue --ca %s --name n1 --dc dc1 --ip 127.0.0.11 --out n1\n", shellQuote(*out))
	return nil
}

func cmdCertIssue(_ context.Context, env *cliEnv, args []string) error {
	const name = "cert issue"
	const synopsis = "--ca DIR --name NAME [--dc DC] [--roles r1,r2] [--ip IP]... [--dns NAME]... [--operator] [--days N] [--key-type ecdsa|ed25519] --out DIR"
	fs := newFlags(env, name, synopsis)
	caDir := fs.String("ca", "", "directory of the CA (made by 'sipmesh ca init') (required)")
	certName := fs.String("name", "", "node or operator name: a DNS label such as n1 (required)")
	dc := fs.String("dc", "", "datacenter of a node (default dc1)")
	var roles, ips, dnsNames listFlag
	fs.Var(&roles, "roles", "roles the node may run, comma separated: "+strings.Join(certs.AllRoles, ",")+" (default all)")
	fs.Var(&ips, "ip", "IP address the node serves on; repeat or comma-separate for several")
	fs.Var(&dnsNames, "dns", "DNS name the node serves as; repeat or comma-separate for several")
	operator := fs.Bool("operator", false, "issue an operator certificate, which may only use the admin API")
	days := fs.Int("days", certs.DefaultDays, "validity in days")
	keyType := fs.String("key-type", string(certs.KeyECDSA), "key algorithm: ecdsa (P-256) or ed25519")
	out := fs.String("out", "", "directory to write NAME.crt and NAME.key into (required)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(env, name, pos); err != nil {
		return err
	}
	switch {
	case *caDir == "":
		return usageErr(env, name, "--ca is required: the directory holding ca.crt and ca.key (made by 'sipmesh ca init')")
	case *certName == "":
		return usageErr(env, name, "--name is required: the node's (or operator's) name, e.g. --name n1")
	case *out == "":
		return usageErr(env, name, "--out is required: the directory to write %s.crt and %s.key into", *certName, *certName)
	case *days <= 0:
		return usageErr(env, name, "--days %d: the validity must be at least one day", *days)
	}
	req := certs.IssueRequest{
		Name:       *certName,
		Datacenter: *dc,
		Roles:      roles,
		Operator:   *operator,
		Days:       *days,
		KeyType:    certs.KeyType(*keyType),
		DNSNames:   dnsNames,
	}
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return usageErr(env, name, "--ip %q is not an IP address: give one address per --ip, e.g. --ip 192.0.2.10", s)
		}
		req.IPs = append(req.IPs, ip)
	}
	ca, err := certs.LoadCA(*caDir)
	if err != nil {
		return err
	}
	is, err := ca.Issue(req)
	if err != nil {
		return err
	}
	certPath, keyPath, err := is.WriteFiles(*out, *certName)
	if err != nil {
		return err
	}
	id, err := certs.IdentityOf(is.Cert)
	if err != nil {
		return err
	}
	w := env.stdout
	fmt.Fprintf(w, "Issued %s certificate %q of cluster %q:\n", id.Kind, id.Name, id.Cluster)
	if id.Kind == certs.KindNode {
		fmt.Fprintf(w, "  datacenter  %s\n", id.Datacenter)
		fmt.Fprintf(w, "  roles       %s\n", strings.Join(id.Roles, ", "))
	} else {
		fmt.Fprintf(w, "  may only use the admin API (sipmesh members, ring, lookup)\n")
	}
	if len(is.Cert.IPAddresses) > 0 {
		addrs := make([]string, len(is.Cert.IPAddresses))
		for i, ip := range is.Cert.IPAddresses {
			addrs[i] = ip.String()
		}
		fmt.Fprintf(w, "  addresses   %s\n", strings.Join(addrs, ", "))
	}
	if len(is.Cert.DNSNames) > 0 {
		fmt.Fprintf(w, "  dns names   %s\n", strings.Join(is.Cert.DNSNames, ", "))
	}
	fmt.Fprintf(w, "  serial      %s\n", serialText(id.Serial))
	fmt.Fprintf(w, "  valid until %s\n", id.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "Wrote %s and %s (the key with mode 0600).\n", certPath, keyPath)
	if id.Kind == certs.KindNode {
		fmt.Fprintf(w, "Copy %s and %s next to the node's config, which then says:\n  tls: {ca: %s, cert: %s, key: %s, crl: %s}\n",
			filepath.Join(*caDir, certs.CACertFile), filepath.Join(*caDir, certs.CRLFile),
			certs.CACertFile, filepath.Base(certPath), filepath.Base(keyPath), certs.CRLFile)
	} else {
		fmt.Fprintf(w, "Use it with: sipmesh members --node HOST --ca %s --cert %s --key %s\n",
			shellQuote(filepath.Join(*caDir, certs.CACertFile)), shellQuote(certPath), shellQuote(keyPath))
	}
	return nil
}

func cmdCertRevoke(_ context.Context, env *cliEnv, args []string) error {
	const name, synopsis = "cert revoke", "--ca DIR NAME|SERIAL..."
	fs := newFlags(env, name, synopsis)
	caDir := fs.String("ca", "", "directory of the CA (made by 'sipmesh ca init') (required)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *caDir == "" {
		return usageErr(env, name, "--ca is required: the directory holding ca.crt, ca.key and ca.crl")
	}
	if len(pos) == 0 {
		return usageErr(env, name, "say what to revoke: a name (every certificate issued to it) or a serial number (decimal or 0x hex)")
	}
	ca, err := certs.LoadCA(*caDir)
	if err != nil {
		return err
	}
	w := env.stdout
	total := 0
	for _, what := range pos {
		added, err := ca.Revoke(what)
		if err != nil {
			return err
		}
		if len(added) == 0 {
			fmt.Fprintf(w, "%s: already revoked, nothing added\n", what)
			continue
		}
		total += len(added)
		for _, s := range added {
			fmt.Fprintf(w, "%s: revoked serial %s\n", what, serialText(s))
		}
	}
	crlPath := filepath.Join(*caDir, certs.CRLFile)
	data, err := os.ReadFile(crlPath)
	if err != nil {
		return fmt.Errorf("read back %s: %w", crlPath, err)
	}
	crl, err := certs.ParseCRL(data)
	if err != nil {
		return fmt.Errorf("read back %s: %w", crlPath, err)
	}
	if total == 0 {
		fmt.Fprintf(w, "%s is unchanged (number %s, %d revoked in all).\n", crlPath, crl.Number, len(crl.RevokedCertificateEntries))
		return nil
	}
	fmt.Fprintf(w, "Rewrote %s (number %s, %d revoked in all).\n", crlPath, crl.Number, len(crl.RevokedCertificateEntries))
	fmt.Fprintf(w, "Copy %s to any node's tls.crl: nodes reload it when it changes and spread it across the mesh.\n", crlPath)
	return nil
}
