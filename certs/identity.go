package certs

import (
	"crypto/x509"
	"fmt"
	"math/big"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Roles a node certificate may allow.
const (
	RoleProxy     = "proxy"
	RoleRegistrar = "registrar"
	RoleRelay     = "relay"
	RolePresence  = "presence"
)

// AllRoles lists every role in a stable order.
var AllRoles = []string{RoleProxy, RoleRegistrar, RoleRelay, RolePresence}

// Kind says what a certificate may do.
type Kind string

const (
	KindNode     Kind = "node"     // joins the mesh and runs roles
	KindOperator Kind = "operator" // may only use the admin API
	kindCA       Kind = "ca"
)

const uriScheme = "sipmesh"

// Identity is what a certificate says about its holder.
type Identity struct {
	Cluster    string
	Name       string
	Datacenter string
	Roles      []string
	Kind       Kind
	Serial     *big.Int
	NotAfter   time.Time
}

// HasRole reports whether the identity allows role.
func (id Identity) HasRole(role string) bool { return slices.Contains(id.Roles, role) }

func (id Identity) String() string {
	return fmt.Sprintf("%s %q of cluster %q (serial %s)", id.Kind, id.Name, id.Cluster, id.Serial)
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidName checks a node, operator or datacenter name: a DNS label, because
// node names become DNS records.
func ValidName(what, s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("certs: %s %q is not valid: use 1-63 lower-case letters, digits and '-', not starting or ending with '-'", what, s)
	}
	return nil
}

// ValidDomain checks a cluster name: a lower-case DNS domain, because it is
// the SIP domain phones use and the host part of every identity URI.
func ValidDomain(s string) error {
	labels := strings.Split(s, ".")
	ok := len(s) <= 253
	for _, l := range labels {
		ok = ok && nameRE.MatchString(l)
	}
	if !ok {
		return fmt.Errorf("certs: cluster %q is not a valid domain: use lower-case DNS labels separated by dots, e.g. example.test", s)
	}
	return nil
}

// ValidRoles checks that every role is known.
func ValidRoles(roles []string) error {
	for _, r := range roles {
		if !slices.Contains(AllRoles, r) {
			return fmt.Errorf("certs: unknown role %q: valid roles are %s", r, strings.Join(AllRoles, ", "))
		}
	}
	return nil
}

func (id Identity) uri() *url.URL {
	u := &url.URL{Scheme: uriScheme, Host: id.Cluster, Path: "/" + string(id.Kind)}
	if id.Kind != kindCA { // a CA has no name: sipmesh://<cluster>/ca
		u.Path += "/" + id.Name
	}
	if id.Kind == KindNode {
		q := url.Values{}
		q.Set("dc", id.Datacenter)
		q.Set("roles", strings.Join(id.Roles, ","))
		u.RawQuery = q.Encode()
	}
	return u
}

// IdentityOf reads the identity a certificate carries.
func IdentityOf(c *x509.Certificate) (Identity, error) {
	for _, u := range c.URIs {
		if u.Scheme != uriScheme {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
		id := Identity{Cluster: u.Host, Serial: c.SerialNumber, NotAfter: c.NotAfter}
		switch {
		case len(parts) == 1 && parts[0] == string(kindCA):
			id.Kind = kindCA
		case len(parts) == 2 && (parts[0] == string(KindNode) || parts[0] == string(KindOperator)):
			id.Kind, id.Name = Kind(parts[0]), parts[1]
		default:
			return Identity{}, fmt.Errorf("certs: certificate %s has a malformed sipmesh URI %q", c.SerialNumber, u)
		}
		if id.Kind == KindNode {
			q := u.Query()
			id.Datacenter = q.Get("dc")
			if r := q.Get("roles"); r != "" {
				id.Roles = strings.Split(r, ",")
			}
		}
		return id, nil
	}
	return Identity{}, fmt.Errorf("certs: certificate %q (serial %s) carries no sipmesh identity", c.Subject.CommonName, c.SerialNumber)
}
